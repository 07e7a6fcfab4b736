"""``firereg benchmark`` (firereg.pipelines.cli.benchmark) run in-process with typer's CliRunner: baselines,
trained models with and without test-time refinement, bad input, and one scoring path with training.

The trained cascade is the ``cascade_run`` fixture (tests/conftest.py). The last test is the one
scoring path: a tiny VoxelMorph (64 px network size, one epoch of 6 steps on the shared 5-pair
dataset, a large learning rate so that its fields are far from zero) is trained with a benchmark
size (192 px) below the images' 256 px, so both resizings happen: full resolution → benchmark size
(cv2, :class:`firereg.evaluation.results.ResizedMethod`) → network size (MONAI); training's
validation and ``firereg benchmark`` give the same per-pair errors on its best.pt.
"""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from firereg.pipelines.checkpoints import load_model
from firereg.pipelines.cli.app import app
from firereg.pipelines.training import TrainConfig, train, validate_network
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.splits import read_split, select_split

runner = CliRunner()

#: the benchmark size of the one-scoring-path test, px (below the shared dataset's 256 px)
BENCHMARK_SIZE = 192


# ----------------------------------------------------------------------------- baselines, bad input


def test_cli_benchmark_identity_and_sift(fire_data, tmp_path):
    out = tmp_path / "bench"
    result = runner.invoke(
        app, ["benchmark", "--data", str(fire_data), "--methods", "identity,sift", "--out", str(out), "--size", "256"]
    )
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["sift", "mAUC"] > summary.loc["identity", "mAUC"] + 0.3
    assert "mAUC" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "identity,warp-drive"], "warp-drive"),
        (["--subset", "validation"], "--split"),
        (["--data", "/nonexistent/fire"], "/nonexistent/fire"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_cli_benchmark_bad_input(fire_data, tmp_path, args, message):
    base = ["benchmark", "--out", str(tmp_path / "b")]
    if "--data" not in args:
        base += ["--data", str(fire_data)]
    result = runner.invoke(app, base + args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


# ----------------------------------------------------------------------------- trained models


@pytest.mark.usefixtures("one_torch_thread")
def test_cli_benchmark_trained_cascade_with_and_without_refinement(fire_data, cascade_run, tmp_path):
    out = tmp_path / "bench"
    methods = f"identity,cascade:{cascade_run},cascade+tto5:{cascade_run}"
    result = runner.invoke(app, ["benchmark", "--data", str(fire_data), "--methods", methods, "--out", str(out),
                                 "--size", "64"])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["method"]) == ["identity", "cascade", "cascade+tto5"]
    assert (summary["n_pairs"] == 5).all() and (summary["failed"] == 0).all()
    pairs = pd.read_csv(out / "pairs.csv")
    assert set(pairs.loc[pairs["method"] != "identity", "direction"]) == {"moving"}  # fields map fixed -> moving
    assert (out / "records" / "cascade").is_dir() and (out / "overlays" / "cascade_tto5").is_dir()
    assert "cascade+tto5" in result.output


@pytest.mark.parametrize(
    "methods, needles",
    [
        ("identity,cascade+tto", ["unknown method 'cascade+tto'", "TYPE:PATH"]),
        ("identity,unet:{run}", ["unknown model type 'unet'"]),
        ("cascade:{run},cascade:{run}", ["both be labelled 'cascade'"]),
        ("voxelmorph:{run}", ["'cascade'", "expected 'voxelmorph'", "best.pt"]),
        ("cascade:{run}/nothing.pt", ["nothing.pt"]),
    ],
)
@pytest.mark.usefixtures("one_torch_thread")
def test_cli_benchmark_bad_method_specs(fire_data, cascade_run, tmp_path, methods, needles):
    out = tmp_path / "bench"
    result = runner.invoke(app, ["benchmark", "--data", str(fire_data), "--methods", methods.format(run=cascade_run),
                                 "--out", str(out), "--size", "64"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    for needle in needles:
        assert needle in result.stderr
    assert "Traceback" not in result.output
    assert not (out / "pairs.csv").exists()


# ----------------------------------------------------------------------------- one scoring path with training


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_validation_and_benchmark_score_best_pt_the_same(fire_data, tmp_path):
    run = tmp_path / "run"
    config = TrainConfig(model="voxelmorph", size=64, kernel_size=5, epochs=1, lr=1e-2, repeats=2,
                         benchmark_size=BENCHMARK_SIZE)
    train(config, fire_data, run, progress=False, num_threads=1)

    # training's validation of best.pt on the run's validation pairs
    net, ckpt = load_model(run / "best.pt")
    assert ckpt["config"]["benchmark_size"] == BENCHMARK_SIZE and int(ckpt["size"]) == 64
    validation = select_split(read_fire(fire_data), read_split(run / "split.csv"), "validation")
    metrics, pairs = validate_network(net, "voxelmorph", int(ckpt["size"]), ckpt["channel"], validation,
                                      benchmark_size=BENCHMARK_SIZE)
    assert len(pairs) == 2 and (pairs["status"] == "ok").all()
    with open(run / "log.csv", newline="") as handle:
        logged = list(csv.DictReader(handle))[-1]
    assert float(logged["val_mean_error"]) == pytest.approx(metrics["mean_error"], rel=1e-9)
    assert float(logged["val_mAUC"]) == pytest.approx(metrics["mAUC"], abs=1e-12)

    # the benchmark command on the same checkpoint and pairs
    out = tmp_path / "bench"
    result = runner.invoke(app, ["benchmark", "--data", str(fire_data), "--methods", f"voxelmorph:{run}",
                                 "--size", str(BENCHMARK_SIZE), "--split", str(run / "split.csv"),
                                 "--subset", "validation", "--out", str(out)])
    assert result.exit_code == 0, result.output
    bench = pd.read_csv(out / "pairs.csv").set_index("pair").sort_index()
    ours = pairs.set_index("pair").sort_index()
    assert list(bench.index) == list(ours.index)
    for column in ("mean_error", "median_error", "max_error"):
        np.testing.assert_allclose(ours[column].to_numpy(float), bench[column].to_numpy(float), rtol=1e-6, atol=0)
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert summary["mAUC"] == pytest.approx(metrics["mAUC"], abs=1e-9)

    # the benchmark size matters beyond that tolerance: scoring the full-resolution images directly
    # (the old validation path, no cv2 step) gives other errors
    _, direct = validate_network(net, "voxelmorph", 64, ckpt["channel"], validation, benchmark_size=256)
    direct = direct.set_index("pair").sort_index()["mean_error"].to_numpy(float)
    assert not np.allclose(direct, ours["mean_error"].to_numpy(float), rtol=1e-6, atol=0)
