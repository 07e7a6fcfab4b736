"""Tests of the demo's pieces (firereg.pipelines.demo.run, .report) and its report figures (firereg.evaluation.report.gallery).

The pieces are tested on toy tables and fake methods; the demo end to end (``run_demo``, then
``firereg demo`` again): tests/cli/test_demo.py.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from firereg.evaluation.report.gallery import (
    PICK_COLUMNS,
    deformation_grid,
    grid_lines,
    make_gallery,
    pick_gallery_pairs,
    plot_error_boxplot,
)
from firereg.evaluation.report.tables import format_cell, markdown_table
from firereg.evaluation.results import MatrixResult
from firereg.pipelines.demo.report import _budget_line, reading
from firereg.pipelines.demo.run import (
    DEFAULT_BUDGET_STEPS,
    DemoConfig,
    DemoPaths,
    budget_text,
    demo_train_config,
    run_demo,
    train_model,
)
from firereg.pipelines.training import TrainConfig
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.splits import make_split, split_or_reuse, write_split

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pairs(rows: list[tuple[str, str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["method", "pair", "category", "mean_error", "status"])


# ----------------------------------------------------------------------------- gallery picks


def test_pick_best_median_worst():
    pairs = _pairs([
        ("a", "S01", "S", 3.0, "ok"),
        ("a", "P01", "P", 1.0, "ok"),
        ("a", "A01", "A", 0.5, "failed"),  # failed: counts as inf whatever its error column says
        ("a", "S03", "S", 2.0, "ok"),
        ("a", "S02", "S", 2.0, "ok"),  # ties go by name: S02 before S03
        ("b", "S01", "S", 4.0, "ok"),
        ("c", "S01", "S", 5.0, "ok"),
        ("c", "P01", "P", 1.5, "ok"),
    ])
    picks = pick_gallery_pairs(pairs)
    assert list(picks.columns) == PICK_COLUMNS
    got = {(r.method, r.role): r.pair for r in picks.itertuples()}
    assert got == {
        ("a", "best"): "P01", ("a", "median"): "S03", ("a", "worst"): "A01",  # order P01, S02, S03, S01, A01
        ("b", "best"): "S01", ("b", "median"): "S01", ("b", "worst"): "S01",
        ("c", "best"): "P01", ("c", "median"): "P01", ("c", "worst"): "S01",
    }
    assert math.isinf(picks.set_index(["method", "role"]).loc[("a", "worst"), "mean_error"])
    with pytest.raises(ValueError, match="lacks columns"):
        pick_gallery_pairs(pairs.drop(columns="status"))


def test_error_boxplot_writes_a_png(tmp_path):
    pairs = _pairs([
        ("identity", "S01", "S", 9.0, "ok"), ("identity", "P01", "P", 40.0, "ok"),
        ("sift", "S01", "S", 1.2, "ok"), ("sift", "P01", "P", float("inf"), "failed"),
    ])  # no A pairs: panels S, P, all
    path = plot_error_boxplot(pairs, tmp_path / "box.png")
    with Image.open(path) as image:
        assert image.size[0] > 400 and image.size[1] > 200


def test_deformation_grid_follows_a_known_shift():
    """With fixed -> moving x + 3, the moving grid's vertical lines (x = 0, 16, ...) appear at fixed x = 13, 29, ..."""
    fixed = np.full((128, 128, 3), 90, dtype=np.uint8)
    shift = np.array([[1, 0, 3.0], [0, 1, 0], [0, 0, 1]])
    picture = deformation_grid(MatrixResult(shift, (128, 128), (128, 128)), fixed, lines=8)
    assert picture.shape == (128, 128, 3) and picture.dtype == np.uint8
    yellow = (picture[..., 0] > 200) & (picture[..., 2] < 50)
    row = yellow[40]  # between horizontal lines (y = 32, 48)
    assert row[[13, 29, 45]].all() and not row[[12, 14, 16, 32]].any()
    assert grid_lines((10, 20), lines=2).shape == (10, 20)
    with pytest.raises(ValueError, match="fixed image has shape"):
        deformation_grid(MatrixResult(shift, (64, 64), (64, 64)), fixed)


class _Counting:
    """A fake method: identity (or a failure), counting its registrations."""

    def __init__(self, name: str, fail: bool = False) -> None:
        self.name, self.fail, self.calls = name, fail, []

    def register(self, fixed, moving, fixed_mask=None, moving_mask=None):
        self.calls.append(fixed.shape)
        if self.fail:
            raise RuntimeError("no transform")
        return MatrixResult(np.eye(3), fixed.shape[:2], moving.shape[:2])


def test_make_gallery_draws_each_method_once_and_reuses_it(fire_data, tmp_path):
    manifest = read_fire(fire_data)
    pairs = _pairs(
        [("good", r.name, r.category, float(i + 1), "ok") for i, r in enumerate(manifest.itertuples())]
        + [("bad", r.name, r.category, float("inf"), "failed") for r in manifest.itertuples()]
    )
    methods = {"good": _Counting("good"), "bad": _Counting("bad", fail=True)}
    figures = make_gallery(pairs, manifest, methods, tmp_path, deformation_methods=["good"], max_side=96, progress=False)
    assert [p.name for p in figures["gallery"]] == ["good.png", "bad.png"]
    assert [p.name for p in figures["deformation"]] == ["good.png"]
    for path in figures["gallery"] + figures["deformation"]:
        assert path.is_file() and path.stat().st_size > 1000
    assert len(methods["good"].calls) == 3  # best, median, worst: 3 distinct pairs
    assert len(methods["bad"].calls) == 3  # all failed (all inf): ordered by name, failures drawn as such
    assert len(pd.read_csv(tmp_path / "gallery" / "index.csv")) == 6
    # unchanged picks: nothing is registered again; a changed error redraws that method only
    make_gallery(pairs, manifest, methods, tmp_path, deformation_methods=["good"], progress=False)
    assert (len(methods["good"].calls), len(methods["bad"].calls)) == (3, 3)
    pairs.loc[pairs["method"] == "good", "mean_error"] *= 2
    make_gallery(pairs, manifest, methods, tmp_path, deformation_methods=["good"], progress=False)
    assert (len(methods["good"].calls), len(methods["bad"].calls)) == (6, 3)
    with pytest.raises(ValueError, match="no method given"):
        make_gallery(pairs, manifest, {"good": methods["good"]}, tmp_path, progress=False)


# ----------------------------------------------------------------------------- report text


def test_markdown_table_and_reading():
    summary = pd.DataFrame({
        "method": ["identity", "elastix-bspline", "cascade", "cascade+tto"],
        "n_pairs": [3, 3, 3, 3],
        "auc_S": [0.5, 0.9, 0.8, 0.85], "auc_P": [0.0, 0.2, 0.5, 0.5], "auc_A": [0.5, 0.7, 0.8, float("nan")],
        "mAUC": [0.3333, 0.6, 0.7, 0.675],
        "median_error": [9.0, 3.0, 2.5, 2.25], "failed": [0, 1, 0, 0],
        "median_seconds": [0.0, 10.0, 0.02, 0.3],
    })
    lines = markdown_table(summary)
    assert lines[0] == "| method | n_pairs | auc_S | auc_P | auc_A | mAUC | median_error | failed | median_seconds |"
    assert lines[5].startswith("| cascade+tto | 3 | 0.850 | 0.500 | – | 0.675 | 2.250 | 0 | 0.300 |")
    assert (format_cell(float("inf")), format_cell(np.float32(0.12345)), format_cell(7)) == ("inf", "0.123", "7")
    text = "\n".join(reading(summary, "cascade", "cascade+tto"))
    assert "Best method by mAUC: **cascade** (mAUC 0.700)" in text
    assert "**cascade** beats elastix-bspline overall (mAUC 0.700 vs 0.600) and beats it on the P pairs" in text
    assert "**cascade+tto** beats elastix-bspline overall (mAUC 0.675 vs 0.600)" in text
    assert "Test-time refinement (50 steps per pyramid level) lowers the cascade's mAUC from 0.700 to 0.675" in text
    assert "from 2.500 px to 2.250 px" in text and "elastix-bspline 1" in text
    summary.loc[3, "mAUC"] = 0.7001
    assert "Test-time refinement (50 steps per pyramid level) leaves the cascade's mAUC at 0.700 and" in "\n".join(
        reading(summary, "cascade", "cascade+tto"))


def test_config_and_split_errors(fire_data, tmp_path):
    with pytest.raises(ValueError, match="budget_minutes"):
        DemoConfig(budget_minutes=0).validate()
    with pytest.raises(ValueError, match="baselines"):
        DemoConfig(baselines=("sift", "warp-drive")).validate()
    with pytest.raises(ValueError, match="TrainConfig.size"):
        DemoConfig(train=TrainConfig(size=8)).validate()
    config = DemoConfig(budget_minutes=2.5).train_config()
    assert (config.model, config.budget_minutes, config.budget_steps) == ("cascade", 2.5, None)
    assert demo_train_config(budget_minutes=3.0).budget_minutes == 3.0
    with pytest.raises(ValueError, match="DemoConfig.benchmark_size"):
        DemoConfig(benchmark_size=8).validate()
    manifest = read_fire(fire_data)
    split = split_or_reuse(manifest, tmp_path / "split.csv", val_fraction=0.4, seed=0)
    again = split_or_reuse(manifest, tmp_path / "split.csv", val_fraction=0.4, seed=5)  # reused, not redrawn
    pd.testing.assert_frame_equal(split, again)
    # the demo's split step: a split made for other data is refused, naming the file, before any training
    out = tmp_path / "out"
    write_split(make_split(manifest.iloc[:3], val_fraction=0.4, seed=0), DemoPaths(out).split)
    with pytest.raises(ValueError, match=re.escape(str(DemoPaths(out).split))):
        run_demo(DemoConfig(budget_minutes=0.1), fire_data, out, progress=False)
    assert not DemoPaths(out).run.exists()


def test_budgets_default_to_steps_and_the_report_says_which_applied():
    assert DemoConfig().budgets() == (DEFAULT_BUDGET_STEPS, None)
    assert DemoConfig().num_threads == 1  # the thread count changes the weights' last bits
    assert DemoConfig(budget_minutes=5).budgets() == (None, 5.0)
    assert DemoConfig(budget_steps=40).budgets() == (40, None)
    assert DemoConfig(budget_steps=40, budget_minutes=5).budgets() == (40, 5.0)
    default = DemoConfig().train_config()
    assert (default.budget_steps, default.budget_minutes, default.epochs) == (DEFAULT_BUDGET_STEPS, None, 100_000)
    given = DemoConfig(budget_steps=7, train=TrainConfig(size=64, budget_minutes=3)).train_config()
    assert (given.budget_steps, given.budget_minutes, given.size) == (7, None, 64)  # the demo's budgets replace the train's
    for bad in ({"budget_steps": 0}, {"budget_steps": 2.5}, {"budget_steps": True}):
        with pytest.raises(ValueError, match=r"DemoConfig\.budget_steps = .*optimiser steps"):
            DemoConfig(**bad).validate()
    with pytest.raises(ValueError, match=r"DemoConfig\.budget_minutes = "):
        DemoConfig(budget_minutes=float("inf")).validate()
    assert budget_text(40, None) == "40 steps" and budget_text(None, 2.5) == "2.5 min"
    assert budget_text(40, 2.5) == "40 steps or 2.5 min (whichever first)"
    assert "**40 optimiser steps**" in _budget_line({"budget_steps": 40, "budget_minutes": None})
    assert "same model on any machine" in _budget_line({"budget_steps": 40, "budget_minutes": None})
    minutes = _budget_line({"budget_minutes": 10.0})  # demo_training.json written before step budgets
    assert "**10 min** of wall time" in minutes and "steps" not in minutes.split(";")[0]
    assert "whichever came first" in _budget_line({"budget_steps": 40, "budget_minutes": 10.0})


def test_cli_help_names_the_default_step_budget():
    from typer.testing import CliRunner

    from firereg.pipelines.cli.app import app

    result = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--budget-steps" in text and f"default: {DEFAULT_BUDGET_STEPS}," in text and "--budget-minutes" in text


def test_train_model_reuses_finished_and_resumes_interrupted_runs(tmp_path, monkeypatch):
    """The decisions around firereg.pipelines.training.train, with train itself replaced by a recorder."""
    import firereg.pipelines.demo.run as demo
    import firereg.pipelines.training as training

    calls = []

    def fake_train(config, data, out, resume=False, progress=True, num_threads=None):
        calls.append((config.budget_minutes, resume) if config.budget_steps is None else (config.budget_steps, resume))
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "last.pt").write_text("state")
        return {"best_mauc": 0.5, "epochs": 1, "steps": 4, "seconds": 30.0, "stopped": "budget"}

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setattr(training, "run_config", lambda out: TrainConfig(model="cascade", size=64, budget_minutes=None))
    monkeypatch.setattr(demo, "_elapsed_seconds", lambda run: 90.0)
    paths = DemoPaths(tmp_path / "out")
    data = tmp_path / "fire"
    config = demo_train_config(budget_steps=None, budget_minutes=2.0)
    # an interrupted run (last.pt, no demo_training.json): resumed with the run's settings, for the rest of the budget
    paths.run.mkdir(parents=True)
    (paths.run / "last.pt").write_text("state")
    info = train_model(config, data, paths, progress=False, num_threads=1)
    assert calls == [(0.5, True)]
    assert info["resumed"] and not info["reused"] and info["total_seconds"] == 120.0
    assert info["config"]["size"] == 64 and info["budget_minutes"] == 2.0
    # finished: reused without calling train
    again = train_model(config, data, paths, progress=False, num_threads=1)
    assert len(calls) == 1 and again["reused"] and again["result"] == info["result"]
    with pytest.raises(ValueError, match="was trained on"):
        train_model(config, tmp_path / "other", paths, progress=False, num_threads=1)
    # a fresh run
    fresh = train_model(config, data, DemoPaths(tmp_path / "new"), progress=False, num_threads=1)
    assert calls[-1] == (2.0, False) and not fresh["resumed"] and fresh["total_seconds"] == 30.0
    # a step budget counts all sessions: an interrupted run resumes up to the same total
    steps = DemoPaths(tmp_path / "steps")
    steps.run.mkdir(parents=True)
    (steps.run / "last.pt").write_text("state")
    info = train_model(demo_train_config(budget_steps=50), data, steps, progress=False, num_threads=1)
    assert calls[-1] == (50, True) and info["budget_steps"] == 50 and info["budget_minutes"] is None
    assert info["config"]["budget_steps"] == 50


@pytest.mark.slow
def test_the_same_step_budget_trains_the_same_model(fire_data, tmp_path):
    """The demo's training (train_model with DemoConfig.train_config) twice with one step budget: identical weights."""
    import torch

    from firereg.pipelines.checkpoints import load_checkpoint

    tiny = dataclasses.replace(demo_train_config(), size=64, kernel_size=5, repeats=1)
    config = DemoConfig(budget_steps=4, benchmark_size=128, train=tiny).train_config()
    infos = [train_model(config, fire_data, DemoPaths(tmp_path / name), progress=False, num_threads=1)
             for name in ("a", "b")]
    assert [i["result"]["steps"] for i in infos] == [4, 4] and infos[0]["budget_steps"] == 4
    for name in ("best.pt", "last.pt"):
        a, b = (load_checkpoint(tmp_path / run / "run" / name)["state_dict"] for run in ("a", "b"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
