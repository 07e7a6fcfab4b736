"""``firereg train`` and ``firereg make-patches`` (firereg.pipelines.cli.train) run in-process with typer's CliRunner,
on the shared 5-pair generated dataset (``fire_data``, tests/conftest.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from firereg.pipelines.cli.app import app
from firereg.pipelines.training import run_config
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.splits import make_split, write_split

runner = CliRunner()


def _log_rows(out: Path) -> list[dict]:
    """The rows of a run's log.csv."""
    with open(out / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.usefixtures("one_torch_thread")
def test_cli_train_writes_checkpoints_and_logs(fire_data, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(fire_data), "--out", str(out), "--model", "voxelmorph", "--epochs", "1",
            "--size", "64", "--benchmark-size", "96", "--no-progress", "--threads", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("best.pt", "last.pt", "log.csv"):
        assert (out / name).is_file(), name
    assert (run_config(out).size, run_config(out).benchmark_size) == (64, 96)
    assert (out / "tb").is_dir() and any((out / "tb").iterdir())
    assert "best validation mAUC" in result.stdout and str(out / "best.pt") in result.stdout
    # resuming with the run's own settings needs no options; another model is refused
    result = runner.invoke(app, ["train", "--out", str(out), "--resume", "--model", "cascade", "--size", "64"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "'cascade'" in result.stderr
    result = runner.invoke(app, ["train", "--out", str(out), "--resume", "--model", "affine", "--size", "128"])
    assert result.exit_code == 2
    assert "last.pt" in result.stderr and "'voxelmorph'" in result.stderr and "Traceback" not in result.output
    result = runner.invoke(app, ["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert [int(r["epoch"]) for r in _log_rows(out)] == [0, 1]


def test_cli_make_patches(fire_data, tmp_path):
    split = tmp_path / "split.csv"
    table = make_split(read_fire(fire_data), val_fraction=0.4, seed=0)
    write_split(table, split)
    train = sorted(table.loc[table["split"] == "train", "name"])
    out = tmp_path / "patches"
    result = runner.invoke(app, ["make-patches", "--data", str(fire_data), "--out", str(out), "--per-pair", "2",
                                 "--patch-size", "32", "--size", "128", "--split", str(split)])
    assert result.exit_code == 0, result.output
    names = sorted({p.name.split("_")[0] for p in out.glob("*.npz")})
    assert names == train
    assert f"wrote {2 * len(train)} patch pairs" in result.stdout
    result = runner.invoke(app, ["make-patches", "--data", str(fire_data), "--out", str(out), "--patch-size", "200",
                                 "--size", "128"])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "patch_size" in result.stderr


@pytest.mark.usefixtures("one_torch_thread")
def test_cli_train_budget_steps_stops_after_that_many_steps(fire_data, tmp_path):
    from firereg.pipelines.checkpoints import load_checkpoint

    out = tmp_path / "run"
    args = ["train", "--data", str(fire_data), "--out", str(out), "--model", "voxelmorph", "--epochs", "50",
            "--size", "64", "--benchmark-size", "96", "--budget-steps", "2", "--no-progress", "--threads", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "last.pt")["global_step"] == 2
    assert run_config(out).budget_steps == 2


@pytest.mark.usefixtures("one_torch_thread")
def test_cli_train_on_generated_pairs(fire_data, tmp_path):
    from firereg.pipelines.checkpoints import load_checkpoint

    out = tmp_path / "run"
    args = ["train", "--data", str(fire_data), "--out", str(out), "--model", "voxelmorph", "--size", "64",
            "--benchmark-size", "96", "--budget-steps", "2", "--no-progress", "--threads", "1",
            "--train-pairs", "generated", "--generated-retinas", "mixed", "--photograph-share", "0.5",
            "--pairs-per-epoch", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "last.pt")["global_step"] == 2
    stored = run_config(out)
    assert (stored.train_pairs, stored.generated_retinas, stored.photograph_share, stored.pairs_per_epoch) == (
        "generated", "mixed", 0.5, 2)
    # a resumed run keeps them; a bad value is one clear error
    result = runner.invoke(app, ["train", "--out", str(out), "--resume", "--budget-steps", "3", "--no-progress",
                                 "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert run_config(out).train_pairs == "generated" and load_checkpoint(out / "last.pt")["global_step"] == 3
    result = runner.invoke(app, ["train", "--data", str(fire_data), "--out", str(tmp_path / "bad"),
                                 "--train-pairs", "generated", "--generated-retinas", "mixed"])
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
    assert "photograph_share" in result.stderr and "Traceback" not in result.output


@pytest.mark.usefixtures("one_torch_thread")
def test_cli_train_a_deformable_stage_on_prealigned_pairs(fire_data, tmp_path):
    from firereg.pipelines.checkpoints import load_checkpoint

    out = tmp_path / "run"
    args = ["train", "--data", str(fire_data), "--out", str(out), "--model", "voxelmorph", "--size", "64",
            "--benchmark-size", "96", "--budget-steps", "2", "--no-progress", "--threads", "1",
            "--train-pairs", "generated", "--pairs-per-epoch", "2", "--generated-points", "16",
            "--generated-prealign", "1.0", "--point-weight", "1.0", "--features", "8,8,8,8,8,8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["net_kwargs"] == {"features": [8, 8, 8, 8, 8, 8]} and ckpt["global_step"] == 2
    stored = run_config(out)
    assert (stored.generated_points, stored.generated_prealign_px, stored.point_weight) == (16, 1.0, 1.0)
    result = runner.invoke(app, [*args[:3], "--out", str(tmp_path / "bad"), "--features", "8,x"])
    assert result.exit_code == 2 and "--features '8,x'" in result.stderr and "Traceback" not in result.output
