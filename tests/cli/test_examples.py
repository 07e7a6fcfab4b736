"""``firereg mnist`` and ``firereg brain`` (firereg.pipelines.cli.examples) end to end, run in-process with
typer's CliRunner. The MNIST IDX files come from the ``mnist_dir`` and ``idx_bytes`` fixtures (tests/conftest.py)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import torch
from typer.testing import CliRunner

from firereg.pipelines.checkpoints import load_model
from firereg.pipelines.cli.app import app
from firereg.transforms.brain_data import load_mni152

runner = CliRunner()


def _world_field(path) -> tuple[np.ndarray, np.ndarray]:
    """A world field file (X, Y, Z, 1, 3) as ((X, Y, Z, 3) mm, affine), read with nibabel."""
    image = nib.load(path)
    return np.asarray(image.dataobj, dtype=np.float32)[:, :, :, 0, :], image.affine


# ---------------------------------------------------------------- mnist


def test_cli_mnist_end_to_end_with_idx_files(mnist_dir, tmp_path, idx_bytes):
    out = tmp_path / "out"
    result = runner.invoke(app, ["mnist", "--out", str(out), "--mnist", str(mnist_dir), "--digit", "1",
                                 "--steps", "3", "--batch-size", "4", "--similarity", "mse", "--lambda", "0.1"])
    assert result.exit_code == 0, result.output
    for name in ("atlas_grid.png", "atlas.png", "summary.json", "model.pt"):
        assert (out / name).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data_source"].startswith("MNIST IDX files") and summary["digit"] == 1
    assert summary["similarity"] == "mse" and summary["lambda"] == 0.1 and summary["image_size"] == [32, 32]
    assert "data: MNIST IDX files" in result.stdout and "mean NCC to the atlas" in result.stdout
    net, ckpt = load_model(out / "model.pt", "voxelmorph")  # a firereg checkpoint of the atlas network
    assert (ckpt["size"], ckpt["channel"], ckpt["domain"], ckpt["atlas"].shape) == (32, "luminance", "digits", (32, 32))
    assert ckpt["loss"]["similarity"] == "mse" and ckpt["loss"]["lam"] == 0.1 and net.spatial_dims == 2

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte").write_bytes(idx_bytes(2049, (2,), bytes(2)))
    (bad / "train-labels-idx1-ubyte").write_bytes(idx_bytes(2049, (2,), bytes(2)))
    result = runner.invoke(app, ["mnist", "--out", str(out), "--mnist", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "train-images-idx3-ubyte" in result.stderr and "2051" in result.stderr
    result = runner.invoke(app, ["mnist", "--out", str(out), "--similarity", "lncc2"])
    assert result.exit_code == 2 and "unknown similarity" in result.stderr


# ---------------------------------------------------------------- brain


def test_tiny_3d_run_end_to_end_and_register_its_output(tmp_path):
    """CLI brain in 3D on a coarse grid, then firereg register on the NIfTI files it wrote."""
    out = tmp_path / "brain"
    result = runner.invoke(app, ["brain", "--out", str(out), "--dims", "3", "--modality", "multi", "--spacing", "8",
                                 "--steps", "2", "--n-eval", "1", "--refine-steps", "2"])
    assert result.exit_code == 0, result.output
    assert "field error (mm" in result.stdout and "tissue Dice" in result.stdout and "nilearn" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    m = summary["metrics"]
    for key in ("field_error_mm_before", "field_error_mm_after", "dice_before", "dice_after", "folding_fraction"):
        assert np.isfinite(m[key])
    assert summary["dims"] == 3 and summary["similarity"] == "mi" and "network_only" in m
    affine = load_mni152(8).affine
    for name in ("fixed", "moving", "warped", "labels_fixed", "labels_moving", "labels_warped"):
        image = nib.load(out / f"{name}.nii.gz")
        assert image.shape == load_mni152(8).shape
        np.testing.assert_allclose(image.affine, affine)
    field, field_affine = _world_field(out / "ddf_true.nii.gz")
    np.testing.assert_allclose(field_affine, affine)
    assert field.shape == (*load_mni152(8).shape, 3)
    assert (out / "brain.png").stat().st_size > 10_000

    reg = tmp_path / "registered"
    result = runner.invoke(app, ["register", str(out / "fixed.nii.gz"), str(out / "moving.nii.gz"),
                                 "--model", str(out / "model.pt"), "--out", str(reg)])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(nib.load(reg / "warped.nii.gz").affine, affine)
    # register applies the run's network to the written (already [0, 1]) images: the same field
    net, _ = load_model(out / "model.pt")
    fixed, moving = (torch.as_tensor(nib.load(out / f"{k}.nii.gz").get_fdata(), dtype=torch.float32)[None, None]
                     for k in ("fixed", "moving"))
    with torch.no_grad():
        _, ddf = net(moving, fixed)
    np.testing.assert_allclose(np.load(reg / "ddf_voxels.npy"), ddf[0].numpy(), atol=1e-5)
    predicted, _ = _world_field(reg / "field.nii.gz")
    np.testing.assert_allclose(predicted, np.moveaxis(ddf[0].numpy(), 0, -1) * 8.0, atol=1e-4)  # 8 mm voxels, RAS axes
