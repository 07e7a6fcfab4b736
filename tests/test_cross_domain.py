"""benchmarks/cross_domain.py end to end on tiny settings: procedural training, photograph scoring, report."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from firereg.pipelines.demo.run import demo_train_config

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cross_domain.py"


def _module():
    spec = importlib.util.spec_from_file_location("cross_domain_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


cd = _module()


def _tiny(out: Path, **changes) -> object:
    return cd.CrossDomainConfig(
        out=out, budget_steps=20, benchmark_size=256, train_pairs={"S": 3, "P": 3, "A": 3}, train_size=128,
        score_pairs={"S": 2, "P": 1, "A": 1}, score_size=256, baselines=("identity", "sift"),
        deep_forms=("cascade", "no-such-form"), train=dataclasses.replace(demo_train_config(20), size=64),
        progress=False, command="tiny test", **changes)


def _report_rows(path: Path) -> dict[str, list[str]]:
    rows = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] != "method":
            rows[cells[0]] = cells
    return rows


@pytest.mark.slow
def test_cross_domain_end_to_end_and_reuse(tmp_path, one_torch_thread):
    out = tmp_path / "cd"
    table = cd.run_cross_domain(_tiny(out))
    assert list(table["method"]) == ["identity", "sift", "procedural-cascade"]
    assert list(table["trained on"]) == ["–", "–", "procedural"]
    errors = dict(zip(table["method"], table["mean error (px)"]))
    assert errors["identity"] > 1.0 and errors["sift"] < errors["identity"] / 2
    assert (table["failed"] == 0).all() and table["mAUC"].between(0, 1).all()
    # every row in the report, with the numbers of the returned table
    rows = _report_rows(out / "cross_domain.md")
    assert set(rows) == {"identity", "sift", "procedural-cascade"}
    assert float(rows["identity"][6]) == pytest.approx(errors["identity"], abs=1e-3)
    text = (out / "cross_domain.md").read_text()
    assert "procedural retinas only" in text and "skimage.data.retina()" in text and "4 pairs" in text
    assert "budget 20 optimiser steps" in text and "Command: `tiny test`" in text and "load average" in text
    assert "no-such-form" in text  # the form this firereg does not know is named, not silently dropped
    assert (out / "cross_domain.png").stat().st_size > 1000
    # the model trained on procedural retinas only; the benchmark scored all the photograph pairs
    assert '"retina": "procedural"' in (out / "train-data" / "generator.json").read_text()
    assert '"retina": "photograph"' in (out / "score-data" / "generator.json").read_text()
    pairs = pd.read_csv(out / "benchmark" / "pairs.csv")
    assert len(pairs) == 3 * 4
    # a re-run reuses the data, the training run and every benchmark record
    best = out / "run-procedural" / "best.pt"
    stamp = best.stat().st_mtime_ns
    again = cd.run_cross_domain(_tiny(out))
    assert best.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again.drop(columns="s/pair"), table.drop(columns="s/pair"))


def test_cross_domain_refuses_bad_settings(tmp_path, capsys):
    with pytest.raises(ValueError, match="photograph_seed"):
        cd.run_cross_domain(_tiny(tmp_path / "a", photograph_model=True, score_seed=0, photograph_seed=0))
    with pytest.raises(SystemExit, match="budget_steps = 0"):
        cd.main(["--out", str(tmp_path / "b"), "--budget-steps", "0"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_timings_keep_each_step_when_computed(tmp_path):
    log = cd._Log(tmp_path, progress=False)
    log.done("training procedural", 60.0, fresh=True)
    log.done("training procedural", 1.0, fresh=False)  # reused: keeps the time it took then
    log.done("benchmark", 10.0, fresh=True, methods=["identity"])
    log.done("benchmark", 0.5, fresh=False, methods=["identity", "photograph-cascade:run"])
    assert log.steps["benchmark"]["seconds"] == 10.0 and log.steps["training procedural"]["seconds"] == 60.0
    log.done("benchmark", 4.0, fresh=True, methods=["identity", "photograph-cascade:run"])  # more methods: adds
    assert log.steps["benchmark"]["seconds"] == 14.0
    log.done("benchmark", 3.0, fresh=True, methods=["identity", "photograph-cascade:run"])  # the same, recomputed
    assert cd._Log(tmp_path, progress=False).steps["benchmark"]["seconds"] == 3.0  # read back from timings.json
    assert len(cd._Log(tmp_path, progress=False).steps["benchmark"]["load_average"]) == 3
