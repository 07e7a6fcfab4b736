"""firereg.pipelines.register and fields_io on NIfTI images: affines, units and direction of the field, clear errors.

The volumes and checkpoints come from tests/conftest.py (``pair3d``, ``oblique_affine``, ``nifti_volume``,
``write_nifti``, ``shift_checkpoint``); the command line: tests/cli/test_register.py.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from firereg.pipelines.fields_io import (
    WORLD_FIELD_DESCRIPTION,
    ddf_to_world,
    read_nifti,
    save_nifti_image,
    save_world_field,
)
from firereg.pipelines.register import register_pair


def _world_field(path) -> tuple[np.ndarray, np.ndarray]:
    """A world field file (X, Y, Z, 1, 3) as ((X, Y, Z, 3) mm, affine), read with nibabel."""
    image = nib.load(path)
    return np.asarray(image.dataobj, dtype=np.float32)[:, :, :, 0, :], image.affine


def test_world_field_conversion_and_round_trip(tmp_path, oblique_affine):
    affine = oblique_affine
    ddf = np.random.default_rng(0).normal(size=(3, 5, 6, 7)).astype(np.float32)
    world = ddf_to_world(ddf, affine)
    assert world.shape == (5, 6, 7, 3)
    np.testing.assert_allclose(world[2, 3, 4], affine[:3, :3] @ ddf[:, 2, 3, 4], rtol=1e-5)
    path = save_world_field(ddf, affine, tmp_path / "f.nii.gz")
    field, aff = _world_field(path)
    np.testing.assert_allclose(aff, affine, atol=1e-6)
    np.testing.assert_allclose(field, world, rtol=1e-6)
    header = nib.load(path).header
    assert int(header["intent_code"]) == 1007 and header.get_xyzt_units()[0] == "mm"
    assert header["descrip"].item().decode() == WORLD_FIELD_DESCRIPTION
    # 2D: (D=2, X, Y) voxels → (X, Y, 1, 1, 3) on disk
    path2 = save_world_field(ddf[:2, :, :, 0], affine, tmp_path / "f2.nii.gz")
    assert nib.load(path2).shape == (5, 6, 1, 1, 3)
    with pytest.raises(ValueError, match=r"\(D, \*spatial\).*\(2, 5, 6, 7\)"):
        ddf_to_world(ddf[:2], affine)


def test_read_nifti_shapes_and_errors(tmp_path, oblique_affine, write_nifti):
    affine = oblique_affine
    assert read_nifti(write_nifti(tmp_path / "a.nii.gz", np.zeros((6, 7, 5, 1)), affine)).data.shape == (6, 7, 5)
    two = read_nifti(write_nifti(tmp_path / "b.nii.gz", np.zeros((6, 7, 1)), affine))
    assert two.dims == 2 and two.disk_shape == (6, 7, 1)
    four = write_nifti(tmp_path / "four.nii.gz", np.zeros((6, 7, 5, 2)), affine)
    with pytest.raises(ValueError, match=rf"{four} has shape \(6, 7, 5, 2\): a 4D image with 2 volumes"):
        read_nifti(four, dims=3)
    with pytest.raises(ValueError, match=rf"{tmp_path / 'b.nii.gz'} is 2D \(shape \(6, 7, 1\)\) but a 3D image"):
        read_nifti(tmp_path / "b.nii.gz", dims=3)
    with pytest.raises(FileNotFoundError, match="nothing.nii"):
        read_nifti(tmp_path / "nothing.nii")


def test_register_3d_nifti_keeps_affine_and_gives_mm_field(pair3d, nifti_volume):
    out = pair3d["root"] / "out"
    written = register_pair(pair3d["fixed"], pair3d["moving"], pair3d["ckpt"], out)
    assert {p.name for p in written.values()} == {"warped.nii.gz", "field.nii.gz", "ddf_voxels.npy", "overlay.png"}
    assert {p.name for p in out.iterdir()} == {"warped.nii.gz", "field.nii.gz", "ddf_voxels.npy", "overlay.png"}
    affine, shape = pair3d["affine"], pair3d["shape"]

    warped = nib.load(out / "warped.nii.gz")
    assert warped.shape == shape
    np.testing.assert_allclose(warped.affine, affine, atol=1e-6)  # the input's affine
    np.testing.assert_allclose(nib.load(out / "field.nii.gz").affine, affine, atol=1e-6)

    # the network's DDF is (1, 0, -2) voxels everywhere: warped(p) = moving(p + (1, 0, -2))
    ddf = np.load(out / "ddf_voxels.npy")
    assert ddf.shape == (3, *shape)
    np.testing.assert_allclose(ddf, np.array([1.0, 0.0, -2.0]).reshape(3, 1, 1, 1) * np.ones(shape), atol=1e-5)
    moving = nifti_volume(shape, 1)
    np.testing.assert_allclose(np.asarray(warped.dataobj)[:-1, :, 2:], moving[1:, :, :-2], rtol=1e-5, atol=1e-3)
    # in mm along the fixed image's world axes: u = A[:3, :3] @ (1, 0, -2)
    field, _ = _world_field(out / "field.nii.gz")
    expected_mm = affine[:3, :3] @ np.array([1.0, 0.0, -2.0])
    np.testing.assert_allclose(field, np.broadcast_to(expected_mm, field.shape), atol=1e-4)


def test_register_resamples_to_the_working_shape(tmp_path, oblique_affine, write_nifti, nifti_volume, shift_checkpoint):
    """A checkpoint working at half the size: 1 working voxel = 2 full voxels."""
    shape = (48, 40, 32)
    affine = oblique_affine
    fixed = write_nifti(tmp_path / "f.nii.gz", nifti_volume(shape, 0), affine)
    moving = write_nifti(tmp_path / "m.nii.gz", nifti_volume(shape, 1), affine)
    shift_checkpoint(tmp_path / "half.pt", 3, (1.0, -0.5, 0.0), shape=(24, 20, 16))
    register_pair(fixed, moving, tmp_path / "half.pt", tmp_path / "out")
    ddf = np.load(tmp_path / "out" / "ddf_voxels.npy")
    np.testing.assert_allclose(ddf[:, 0, 0, 0], [2.0, -1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(ddf, ddf[:, :1, :1, :1] * np.ones(shape), atol=1e-5)


def test_register_2d_nifti_slice(tmp_path, oblique_affine, write_nifti, nifti_volume, shift_checkpoint):
    affine = oblique_affine
    fixed = write_nifti(tmp_path / "f.nii.gz", nifti_volume((30, 26), 0)[:, :, None], affine)  # (X, Y, 1)
    moving = write_nifti(tmp_path / "m.nii.gz", nifti_volume((30, 26), 1)[:, :, None], affine)
    shift_checkpoint(tmp_path / "two.pt", 2, (0.0, 1.5))
    written = register_pair(fixed, moving, tmp_path / "two.pt", tmp_path / "out", refine_steps=1)
    warped = nib.load(written["warped"])
    assert warped.shape == (30, 26, 1)
    np.testing.assert_allclose(warped.affine, affine, atol=1e-6)
    field, field_affine = _world_field(written["field_nifti"])
    assert field.shape == (30, 26, 1, 3)
    np.testing.assert_allclose(field_affine, affine, atol=1e-6)
    assert np.load(written["ddf_voxels"]).shape == (2, 30, 26)


def test_nifti_errors_are_clear(pair3d, tmp_path, write_nifti, nifti_volume):
    root, ckpt = pair3d["root"], pair3d["ckpt"]
    four = write_nifti(tmp_path / "four.nii.gz", np.zeros((*pair3d["shape"], 3)), pair3d["affine"])
    with pytest.raises(ValueError, match=rf"{four} has shape \(20, 18, 16, 3\)"):
        register_pair(pair3d["fixed"], four, ckpt, tmp_path / "o")
    flat = write_nifti(tmp_path / "flat.nii.gz", np.zeros((20, 18)), pair3d["affine"])
    with pytest.raises(ValueError, match=rf"{flat} is 2D .* but a 3D image is expected"):
        register_pair(flat, flat, ckpt, tmp_path / "o")
    other = write_nifti(tmp_path / "other.nii.gz", np.zeros((20, 18, 15)), pair3d["affine"])
    with pytest.raises(ValueError, match=r"\(20, 18, 16\).*\(20, 18, 15\)"):
        register_pair(pair3d["fixed"], other, ckpt, tmp_path / "o")
    moved = write_nifti(tmp_path / "moved.nii.gz", nifti_volume(pair3d["shape"]), np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="different affines.*resample"):
        register_pair(pair3d["fixed"], moved, ckpt, tmp_path / "o")
    png = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    with pytest.raises(ValueError, match="two NIfTI files"):
        register_pair(pair3d["fixed"], png, ckpt, tmp_path / "o")
    points = tmp_path / "p.txt"
    points.write_text("1 2\n")
    with pytest.raises(ValueError, match="photographs only"):
        register_pair(pair3d["fixed"], pair3d["moving"], ckpt, tmp_path / "o", points_path=points)
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        register_pair(root / "missing.nii.gz", pair3d["moving"], ckpt, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_save_nifti_image_keeps_geometry_codes(tmp_path, oblique_affine):
    affine = oblique_affine
    src = nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), affine)
    src.set_sform(affine, code="scanner")
    src.set_qform(affine, code="scanner")
    path = save_nifti_image(np.ones((4, 5, 6)), affine, tmp_path / "x.nii.gz", like=src.header)
    image = nib.load(path)
    np.testing.assert_allclose(image.affine, affine, atol=1e-6)
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
