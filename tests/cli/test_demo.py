"""``firereg demo`` (firereg.pipelines.cli.demo) end to end.

The test runs the whole demo (``run_demo``) on 9 generated pairs at 128 px (3 per category, so
the validation split holds one S, one P and one A pair) with a 0.1-minute budget at a 64 px
network size, then runs it again through the CLI (typer's CliRunner) and checks that nothing
finished is redone (another benchmark size is not refused any more: the benchmark's record
fingerprints recompute what it changes, tests/evaluation/test_benchmark_reuse.py).
"""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from firereg.pipelines.cli.app import app
from firereg.pipelines.demo.run import DemoConfig, demo_train_config, run_demo
from firereg.transforms.fire_generator import GeneratorConfig, make_fire_dataset

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _report_table(text: str) -> pd.DataFrame:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| method | n_pairs |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return pd.DataFrame(rows, columns=[c.strip() for c in lines[start].strip("|").split("|")])


def _same_number(cell: str, value) -> bool:
    if cell == "–":
        return bool(pd.isna(value))
    if cell == "inf":
        return math.isinf(float(value))
    try:
        return abs(float(cell) - float(value)) <= 5e-4
    except ValueError:
        return cell == str(value)


@pytest.mark.slow
def test_demo_end_to_end_and_rerun_reuses_everything(tmp_path):
    data = make_fire_dataset(tmp_path / "fire", GeneratorConfig(size=128, pairs={"S": 3, "P": 3, "A": 3}, seed=0,
                                                                 n_points=5), progress=False)
    out = tmp_path / "demo"
    train = dataclasses.replace(demo_train_config(0.1), size=64, kernel_size=5)
    config = DemoConfig(budget_minutes=0.1, benchmark_size=128, train=train, num_threads=1, gallery_side=128)
    report = run_demo(config, data, out, progress=False)

    folder = out / "report"
    assert report == folder / "report.md"
    methods = ["identity", "elastix-rigid", "elastix-affine", "elastix-bspline", "sift", "cascade", "cascade+tto"]
    promised = [
        "report.md", "summary.csv", "summary.md", "pairs.csv", "points.csv", "split.csv", "training_log.csv",
        "success_rate.png", "error_boxplot.png", "gallery/index.csv", "deformation/cascade.png",
        "deformation/cascade+tto.png", *(f"gallery/{m}.png" for m in methods),
    ]
    for name in promised:
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    for path in (out / "split.csv", out / "run" / "best.pt", out / "run" / "demo_training.json"):
        assert path.is_file(), path

    text = report.read_text()
    summary = pd.read_csv(folder / "summary.csv")
    assert list(summary["method"]) == methods
    table = _report_table(text)
    assert list(table.columns) == list(summary.columns) and len(table) == len(summary)
    for (_, shown), (_, row) in zip(table.iterrows(), summary.iterrows()):
        for column in summary.columns:
            assert _same_number(shown[column], row[column]), (column, shown[column], row[column])
    validation = pd.read_csv(folder / "split.csv").query("split == 'validation'")
    assert sorted(validation["category"]) == ["A", "P", "S"] and (summary["n_pairs"] == 3).all()
    for needle in ("skimage.data.retina()", "P37", "S 1, P 1, A 1", "Best method by mAUC", "elastix-bspline overall",
                   "Test-time refinement", "Training: ", "64 x 64 px", "128 px", "**0.1 min** of wall time"):
        assert needle in text, needle

    # a second run (through the CLI) reuses the data, split, training and every benchmarked pair
    records = {p: p.stat().st_mtime_ns for p in (out / "benchmark" / "records").rglob("*.json")}
    assert len(records) == len(methods) * 3
    training = (out / "run" / "demo_training.json").read_text()
    last = (out / "run" / "last.pt").stat().st_mtime_ns
    gallery = (folder / "gallery" / "cascade.png").stat().st_mtime_ns
    args = ["demo", "--data", str(data), "--out", str(out), "--budget-minutes", "0.1", "--size", "128",
            "--no-progress", "--threads", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert str(report) in result.stdout and "mAUC" in result.stdout
    assert (out / "run" / "demo_training.json").read_text() == training
    assert (out / "run" / "last.pt").stat().st_mtime_ns == last
    assert {p: p.stat().st_mtime_ns for p in (out / "benchmark" / "records").rglob("*.json")} == records
    assert (folder / "gallery" / "cascade.png").stat().st_mtime_ns == gallery
    assert "0 (method, pair) registrations run now, 21 reused" in report.read_text()
    pd.testing.assert_frame_equal(pd.read_csv(folder / "summary.csv"), summary)
    assert json.loads(training)["result"]["steps"] >= 1
