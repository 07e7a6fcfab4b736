"""Tests of the training loop (firereg.pipelines.training); ``firereg train``: tests/cli/test_train.py.

Runs are tiny: the shared 5-pair generated dataset (3 train / 2 validation pairs) at a
64 px working size (128 px where the affine network is involved: it halves the image six
times), or a synthetic pair in ``tmp_path`` whose moving image is the fixed image shifted
by a known amount.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from firereg.evaluation.landmarks import measure_pair
from firereg.pipelines.checkpoints import CheckpointError, load_checkpoint
from firereg.pipelines.inference.deep_method import DeepMethod
from firereg.pipelines.nn.losses import affine_point_loss, fit_affine
from firereg.pipelines.training import (
    LOG_COLUMNS,
    TrainConfig,
    Trainer,
    collate_pairs,
    grid_points,
    train,
    validate_network,
)
from firereg.pipelines.training.patches import make_patches
from firereg.transforms.datasets import fire_dataset
from firereg.transforms.fire_reader import read_fire

#: the smallest, fastest run on the shared dataset
TINY = dict(model="voxelmorph", size=64, kernel_size=5)


def _log_rows(out: Path) -> list[dict]:
    with open(out / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _step_rows(out: Path) -> list[dict]:
    with open(out / "train_steps.csv", newline="") as handle:
        return list(csv.DictReader(handle))


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


class Interrupt(Exception):
    """Stands for a kill: raised from the step callback."""


# ----------------------------------------------------------------------------- pieces


def test_fit_affine_reproduces_known_affine():
    rng = np.random.default_rng(0)
    matrix = torch.tensor([[[1.05, -0.12, 7.5], [0.09, 0.97, -3.25]]], dtype=torch.float64)
    fixed = torch.as_tensor(rng.uniform(0, 128, (1, 12, 2)))
    moving = fixed @ matrix[:, :, :2].transpose(1, 2) + matrix[:, :, 2].unsqueeze(1)
    fitted = fit_affine(fixed, moving)
    assert torch.allclose(fitted, matrix, atol=1e-6)
    # NaN padding rows are ignored
    padded_f = torch.cat([fixed, torch.full((1, 3, 2), float("nan"), dtype=torch.float64)], dim=1)
    padded_m = torch.cat([moving, torch.full((1, 3, 2), float("nan"), dtype=torch.float64)], dim=1)
    assert torch.allclose(fit_affine(padded_f, padded_m), matrix, atol=1e-6)
    # the supervised loss is zero at the target and in pixels elsewhere
    grid = grid_points(128, 1).double()
    assert float(affine_point_loss(matrix, fitted, grid)) < 1e-6
    shifted = matrix.clone()
    shifted[:, 0, 2] += 3.0
    assert float(affine_point_loss(shifted, matrix, grid)) == pytest.approx(3.0)


def test_collate_pads_points_with_nan_and_cascade_loss_is_finite():
    rng = np.random.default_rng(1)
    items = []
    for n in (6, 4):
        f = rng.uniform(20, 100, (n, 2))
        items.append({
            "name": f"S0{n}",
            "fixed": torch.rand(1, 128, 128),
            "moving": torch.rand(1, 128, 128),
            "fixed_mask": torch.ones(1, 128, 128),
            "moving_mask": torch.ones(1, 128, 128),
            "fixed_points": torch.as_tensor(f[None]),
            "moving_points": torch.as_tensor(f[None] + [3.0, -2.0]),
        })
    batch = collate_pairs(items)
    assert batch["fixed"].shape == (2, 1, 128, 128) and batch["name"] == ["S06", "S04"]
    assert batch["fixed_points"].shape == (2, 6, 2)
    assert torch.isnan(batch["fixed_points"][1, 4:]).all() and not torch.isnan(batch["fixed_points"][0]).any()
    target = fit_affine(batch["fixed_points"], batch["moving_points"])
    assert torch.allclose(target[:, :, 2], torch.tensor([[3.0, -2.0], [3.0, -2.0]]), atol=1e-4)
    trainer = Trainer(TrainConfig(model="cascade", size=128, batch_size=2, estimator="regression"))  # starts at identity
    total, parts = trainer.compute_loss(batch)
    assert torch.isfinite(total)
    assert parts["affine_loss"] == pytest.approx(math.hypot(3.0, 2.0), rel=1e-3)  # identity vs the shift, px
    assert math.isfinite(parts["similarity"]) and math.isfinite(parts["smoothness"])


@pytest.mark.parametrize(
    "field, value, extra",
    [
        ("model", "unet", {}),
        ("epochs", 0, {}),
        ("lr", -1e-4, {}),
        ("batch_size", 0, {}),
        ("size", 8, {}),
        ("channel", "purple", {}),
        ("lam", -0.1, {}),
        ("similarity", "ssd", {}),
        ("smoothness", "tv", {}),
        ("kernel_size", 4, {}),
        ("affine_supervision", "labels", {}),
        ("seed", -1, {}),
        ("val_fraction", 1.5, {}),
        ("checkpoint_every", 0, {}),
        ("budget_minutes", 0, {}),
        ("cache", "gpu", {}),
        ("integration_steps", 7, {"model": "cascade"}),
        ("patches", "somewhere", {"model": "voxelmorph"}),
    ],
)
def test_bad_config_values_name_the_field(field, value, extra):
    config = TrainConfig(**{**extra, field: value})
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} = "):
        config.validate()


# ----------------------------------------------------------------------------- learning


def _shifted_pair(root: Path, shift=(12, -8), full=256) -> Path:
    """A FIRE folder with one pair: smooth texture, moving = fixed shifted by ``shift`` (x, y) px."""
    (root / "Images").mkdir(parents=True)
    (root / "Ground Truth").mkdir()
    rng = np.random.default_rng(0)
    p = 64  # margin, px: shifts up to 64 px stay inside the texture
    noise = rng.standard_normal((full + 2 * p, full + 2 * p))
    tex = ndimage.gaussian_filter(noise, 16) + 0.5 * ndimage.gaussian_filter(noise, 8)
    tex = (tex - tex.min()) / (tex.max() - tex.min()) * 255
    dx, dy = shift
    fixed = tex[p : p + full, p : p + full]
    moving = tex[p - dy : p - dy + full, p - dx : p - dx + full]  # moving(q) = fixed(q - shift)
    for name, img in (("S01_1.png", fixed), ("S01_2.png", moving)):
        Image.fromarray(np.repeat(img[..., None], 3, -1).astype(np.uint8)).save(root / "Images" / name)
    g = np.linspace(0.3 * full, 0.7 * full, 4)
    lines = [f"{x} {y} {x + dx} {y + dy}" for x in g for y in g]
    (root / "Ground Truth" / "control_points_S01_1_2.txt").write_text("\n".join(lines) + "\n")
    return root


def _train_on_pair(root: Path, config: TrainConfig, steps: int) -> tuple[float, float]:
    """Mean landmark error (full-resolution px) before and after ``steps`` steps on the one pair."""
    torch.manual_seed(0)
    manifest = read_fire(root)
    trainer = Trainer(config)
    batch = collate_pairs([fire_dataset(manifest, config.transform_config(), progress=False)[0]])
    before = validate_network(trainer.net, config.model, config.size, config.channel, manifest)[0]["mean_error"]
    for _ in range(steps):
        trainer.step(batch)
    # the user's path once more, by hand: DeepMethod + measure_pair
    row = manifest.iloc[0]
    method = DeepMethod.from_network(trainer.net.eval(), config.model, config.size, config.channel)
    fixed = np.asarray(Image.open(row.fixed).convert("RGB"))
    moving = np.asarray(Image.open(row.moving).convert("RGB"))
    error, _ = measure_pair(method.register(fixed, moving), row.fixed_points, row.moving_points)
    return before, error.mean


def test_affine_similarity_training_recovers_a_shift(tmp_path):
    root = _shifted_pair(tmp_path / "fire")  # 12, -8 px at 256 = 6, -4 px at the 128 px working size
    config = TrainConfig(model="affine", size=128, augment=False, lr=1e-4, affine_supervision="similarity",
                         estimator="regression")
    before, after = _train_on_pair(root, config, steps=40)
    # the untrained regression heads give exactly the identity on images that differ: an honest failure
    assert before == math.inf
    assert after < 0.25 * math.hypot(12, 8), (before, after)


def test_matching_affine_training_recovers_a_large_shift(tmp_path):
    root = _shifted_pair(tmp_path / "fire", shift=(40, -24))  # 20, -12 px at the 128 px working size
    config = TrainConfig(model="affine", size=128, augment=False, lr=1e-3)  # matching estimator, points
    before, after = _train_on_pair(root, config, steps=30)
    assert after < 3.0, (before, after)  # full-resolution px, of a 46.6 px shift


@pytest.mark.slow
def test_voxelmorph_training_recovers_a_shift(tmp_path):
    root = _shifted_pair(tmp_path / "fire")
    config = TrainConfig(model="voxelmorph", size=128, augment=False, lr=1e-3)
    before, after = _train_on_pair(root, config, steps=60)
    assert before == pytest.approx(math.hypot(12, 8), abs=0.1)
    assert after < 0.5 * before, (before, after)


# ----------------------------------------------------------------------------- runs, resume


def test_train_then_resume_continues_from_saved_epoch(fire_data, tmp_path):
    out = tmp_path / "run"
    first = train(TrainConfig(**TINY, epochs=1), fire_data, out, progress=False, num_threads=1)
    assert first["epochs"] == 1 and first["steps"] == 3 and first["stopped"] == "done"
    for name in ("best.pt", "last.pt", "log.csv", "train_steps.csv", "split.csv"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())
    last = load_checkpoint(out / "last.pt", expected_type="voxelmorph")
    for key in ("model_type", "net_kwargs", "state_dict", "size", "channel", "config", "epoch", "step_in_epoch",
                "global_step", "optimizer", "best_mauc", "torch_rng", "numpy_rng"):
        assert key in last, key
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (1, 0, 3)
    assert last["net_kwargs"] == {} and last["config"]["size"] == 64
    split_before = (out / "split.csv").read_text()

    with pytest.raises(FileExistsError, match="resume"):
        train(TrainConfig(**TINY, epochs=2), fire_data, out, progress=False, num_threads=1)

    second = train(TrainConfig(**TINY, epochs=2), fire_data, out, resume=True, progress=False, num_threads=1)
    assert second["epochs"] == 2 and second["steps"] == 6
    last = load_checkpoint(out / "last.pt")
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (2, 0, 6)
    rows = _log_rows(out)
    assert list(rows[0]) == list(LOG_COLUMNS)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert [int(r["global_step"]) for r in rows] == [3, 6]
    assert all(0.0 <= float(r["val_mAUC"]) <= 1.0 for r in rows)
    assert (out / "split.csv").read_text() == split_before
    # the best checkpoint is what users load
    best = load_checkpoint(out / "best.pt")
    assert best["best_mauc"] == pytest.approx(max(float(r["val_mAUC"]) for r in rows))
    assert DeepMethod(out).model_type == "voxelmorph"
    # nothing left to do
    again = train(TrainConfig(**TINY, epochs=2), fire_data, out, resume=True, progress=False, num_threads=1)
    assert again["stopped"] == "already done" and len(_log_rows(out)) == 2


@pytest.mark.slow
def test_kill_mid_epoch_resume_skips_done_batches_exactly(fire_data, tmp_path):
    config = TrainConfig(**TINY, epochs=2, checkpoint_every=2)  # augmentation on: it must replay too
    reference_losses: list[float] = []
    ref = train(config, fire_data, tmp_path / "ref", progress=False, num_threads=1,
                on_step=lambda info: reference_losses.append(info["loss"]))
    assert ref["steps"] == 6

    def kill_at_5(info: dict) -> None:
        if info["global_step"] == 5:
            raise Interrupt
    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        train(config, fire_data, out, progress=False, num_threads=1, on_step=kill_at_5)
    last = load_checkpoint(out / "last.pt")  # saved at step 4: step 5 is lost, as with kill -9
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (1, 1, 4)
    assert [int(r["epoch"]) for r in _log_rows(out)] == [0]

    resumed = train(config, fire_data, out, resume=True, progress=False, num_threads=1)
    assert resumed["steps"] == ref["steps"] == 6 and resumed["epochs"] == 2
    assert [int(r["epoch"]) for r in _log_rows(out)] == [0, 1]
    steps = _step_rows(out)
    assert [int(r["global_step"]) for r in steps] == [1, 2, 3, 4, 5, 6]
    # the same batches, with the same augmentation, in the same order as the uninterrupted run
    np.testing.assert_allclose([float(r["loss"]) for r in steps], reference_losses, rtol=1e-5, atol=1e-6)
    ref_state = load_checkpoint(tmp_path / "ref" / "last.pt")["state_dict"]
    state = load_checkpoint(out / "last.pt")["state_dict"]
    for key in ref_state:
        torch.testing.assert_close(state[key], ref_state[key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_budget_stop_saves_validates_and_resumes(fire_data, tmp_path):
    out = tmp_path / "run"
    result = train(TrainConfig(**TINY, epochs=1, budget_minutes=1e-6), fire_data, out, progress=False, num_threads=1)
    assert result["stopped"] == "budget" and result["steps"] == 1 and result["epochs"] == 0
    last = load_checkpoint(out / "last.pt")
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (0, 1, 1)
    assert (out / "best.pt").is_file()
    assert [(r["epoch"], r["event"]) for r in _log_rows(out)] == [("0", "budget")]
    with pytest.raises(CheckpointError, match="batch size"):
        train(TrainConfig(**TINY, epochs=1, batch_size=2), fire_data, out, resume=True, progress=False, num_threads=1)
    done = train(TrainConfig(**TINY, epochs=1), fire_data, out, resume=True, progress=False, num_threads=1)
    assert done["stopped"] == "done" and done["steps"] == 3
    assert [(r["epoch"], r["event"]) for r in _log_rows(out)] == [("0", "budget"), ("0", "epoch")]


def test_resume_refuses_another_model_type_or_size(fire_data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="last.pt"):
        train(TrainConfig(**TINY), fire_data, out, resume=True, progress=False, num_threads=1)
    out.mkdir()
    torch.save({"model_type": "cascade", "net_kwargs": {}, "state_dict": {}, "size": 64, "channel": "green"},
               out / "last.pt")
    with pytest.raises(CheckpointError, match=r"last\.pt.*model type is 'cascade'.*'voxelmorph'"):
        train(TrainConfig(**TINY), fire_data, out, resume=True, progress=False, num_threads=1)
    torch.save({"model_type": "voxelmorph", "net_kwargs": {}, "state_dict": {}, "size": 128, "channel": "green"},
               out / "last.pt")
    with pytest.raises(CheckpointError, match=r"last\.pt.*working size is 128"):
        train(TrainConfig(**TINY), fire_data, out, resume=True, progress=False, num_threads=1)


def test_patch_training_runs(fire_data, tmp_path):
    manifest = read_fire(fire_data)
    make_patches(manifest, tmp_path / "patches", n_per_pair=1, patch_size=96, size=128, seed=0)
    result = train(TrainConfig(model="affine", size=128, epochs=1, patches=str(tmp_path / "patches")),
                   fire_data, tmp_path / "run", progress=False, num_threads=1)
    assert result["steps"] >= 1 and (tmp_path / "run" / "best.pt").is_file()
    assert float(_log_rows(tmp_path / "run")[0]["affine_loss"]) >= 0


def test_voxelmorph_point_weight_adds_the_control_point_distance():
    rng = np.random.default_rng(2)
    f = rng.uniform(20, 100, (5, 2))
    item = {"name": "S01", "fixed": torch.rand(1, 64, 64), "moving": torch.rand(1, 64, 64),
            "fixed_mask": torch.ones(1, 64, 64), "moving_mask": torch.ones(1, 64, 64),
            "fixed_points": torch.as_tensor(f[None] * 0.5), "moving_points": torch.as_tensor(f[None] * 0.5 + [3.0, -4.0])}
    batch = collate_pairs([item])
    torch.manual_seed(0)
    total_plain, _ = Trainer(TrainConfig(model="voxelmorph", size=64)).compute_loss(batch)
    torch.manual_seed(0)  # the same initial network
    total_points, _ = Trainer(TrainConfig(model="voxelmorph", size=64, point_weight=2.0)).compute_loss(batch)
    # the fresh VoxelMorph's field is almost zero: the term is 2 x the 5 px shift
    assert float(total_points - total_plain) == pytest.approx(2 * 5.0, abs=0.05)
    small = Trainer(TrainConfig(model="voxelmorph", size=64, features=(8, 8, 8, 8, 8, 4)))
    assert small.net.flow.in_channels == 4  # the features reach the network
