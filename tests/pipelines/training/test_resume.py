"""Tests of the resume checks (firereg.pipelines.checkpoints), old checkpoints, and the run's split."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from firereg.pipelines.checkpoints import (
    CheckpointError,
    check_resumable,
    check_resume_position,
    load_checkpoint,
)
from firereg.pipelines.training import (
    DEFAULT_BENCHMARK_SIZE,
    TrainConfig,
    run_config,
    train,
)
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.splits import make_split, read_split, write_split

TINY = dict(model="voxelmorph", size=64, kernel_size=5)
STATE = {"model_type": "voxelmorph", "net_kwargs": {}, "state_dict": {}, "size": 64, "channel": "green",
         "optimizer": {}, "epoch": 1, "step_in_epoch": 2, "global_step": 5}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.mark.parametrize(
    "asked, message",
    [
        (dict(model_type="cascade"), r"model type is 'voxelmorph' but the config asks for 'cascade'"),
        (dict(network_size=128), r"working size is 64 but the config asks for 128"),
        (dict(channel="red"), r"channel is 'green' but the config asks for 'red'"),
        (dict(net_kwargs={"integration_steps": 7}), r"network settings is \{\} but"),
    ],
)
def test_check_resumable_names_what_differs(asked, message):
    want = {"model_type": "voxelmorph", "network_size": 64, "channel": "green", "net_kwargs": {}, **asked}
    check_resumable(STATE, "run/last.pt", "voxelmorph", 64, "green", {})  # the same network: fine
    with pytest.raises(CheckpointError, match=r"cannot resume from run/last\.pt: its " + message):
        check_resumable(STATE, "run/last.pt", **want)


def test_check_resumable_needs_the_training_state():
    weights_only = {k: STATE[k] for k in ("model_type", "net_kwargs", "state_dict", "size", "channel")}
    with pytest.raises(CheckpointError, match=r"lacks training state \['epoch', 'global_step', 'optimizer', 'step_in_epoch'\]"):
        check_resumable(weights_only, "best.pt", "voxelmorph", 64, "green", {})


def test_check_resume_position_mid_epoch_only():
    mid = {**STATE, "config": {"batch_size": 2}, "world_size": 2}
    check_resume_position(mid, "last.pt", batch_size=2, world_size=2, steps_per_epoch=3)
    with pytest.raises(CheckpointError, match=r"another batch size \(2 -> 1\); resume with --batch-size 2"):
        check_resume_position(mid, "last.pt", batch_size=1, world_size=2, steps_per_epoch=3)
    with pytest.raises(CheckpointError, match=r"another number of processes \(2 -> 1\); resume with 2"):
        check_resume_position(mid, "last.pt", batch_size=2, world_size=1, steps_per_epoch=3)
    with pytest.raises(CheckpointError, match=r"2 steps into an epoch of 1 steps; the training data changed"):
        check_resume_position(mid, "last.pt", batch_size=2, world_size=2, steps_per_epoch=1)
    # at an epoch boundary anything goes; a checkpoint without world_size / config ran on one process
    check_resume_position({**mid, "step_in_epoch": 0}, "last.pt", batch_size=8, world_size=4, steps_per_epoch=1)
    check_resume_position(STATE, "last.pt", batch_size=4, world_size=1, steps_per_epoch=3)
    with pytest.raises(CheckpointError, match=r"processes \(1 -> 2\)"):
        check_resume_position(STATE, "last.pt", batch_size=4, world_size=2, steps_per_epoch=3)


def test_a_checkpoint_of_an_older_version_resumes(fire_data, tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(**TINY, epochs=1, benchmark_size=256), fire_data, out, progress=False, num_threads=1)
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    for key in ("world_size", "steps_per_epoch", "epoch_sums", "elapsed", "best_error", "python_rng"):
        del ckpt[key]
    del ckpt["config"]["benchmark_size"]  # written before the benchmark size was a setting
    torch.save(ckpt, out / "last.pt")
    assert run_config(out).benchmark_size == DEFAULT_BENCHMARK_SIZE == 512
    resumed = train(TrainConfig(**TINY, epochs=2), fire_data, out, resume=True, progress=False, num_threads=1)
    assert resumed["epochs"] == 2 and resumed["steps"] == 6 and resumed["stopped"] == "done"
    last = load_checkpoint(out / "last.pt")
    assert last["world_size"] == 1 and last["config"]["benchmark_size"] == DEFAULT_BENCHMARK_SIZE


def test_fresh_runs_draw_the_split_and_resumes_reuse_it(fire_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    manifest = read_fire(fire_data)
    seeded = make_split(manifest, val_fraction=TrainConfig().val_fraction, seed=0)
    left = make_split(manifest, val_fraction=0.6, seed=9)  # left by an attempt killed before its first checkpoint
    assert not left.equals(seeded)
    write_split(left, out / "split.csv")
    train(TrainConfig(**TINY, epochs=1), fire_data, out, progress=False, num_threads=1)
    pd.testing.assert_frame_equal(read_split(out / "split.csv"), seeded)  # a fresh run owns its folder

    # on resume the stored split is reused, and refused when it lists other pairs than the data
    write_split(seeded[seeded["name"] != "S01"], out / "split.csv")
    with pytest.raises(ValueError, match=r"split\.csv was made for other data.*pairs it lacks: \['S01'\]"):
        train(TrainConfig(**TINY, epochs=2), fire_data, out, resume=True, progress=False, num_threads=1)
    write_split(seeded, out / "split.csv")
    assert train(TrainConfig(**TINY, epochs=2), fire_data, out, resume=True, progress=False, num_threads=1)["epochs"] == 2
