"""Tests for firereg.pipelines.fields_io and firereg.pipelines.register (``firereg register``: tests/cli/test_register.py).

The photographs, their affine checkpoint and control points are the ``photo_pair`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from firereg.evaluation.results import DisplacementFieldResult
from firereg.pipelines.checkpoints import CheckpointError
from firereg.pipelines.fields_io import (
    FIELD_DESCRIPTION,
    FieldFormatError,
    load_field,
    save_field,
)
from firereg.pipelines.inference.deep_method import DeepMethod
from firereg.pipelines.inference.refine import fundus_refinement
from firereg.pipelines.register import register_pair
from firereg.transforms.io import read_rgb


def _field_of(result) -> np.ndarray:
    """The full-resolution (2, H, W) row-major field of a result: its sampling grid minus the identity."""
    map_x, map_y = result.sampling_grid()
    ys, xs = np.mgrid[0 : map_x.shape[0], 0 : map_x.shape[1]]
    return np.stack([map_x - xs, map_y - ys]).astype(np.float32)


# ---------------------------------------------------------------- fields_io


def test_field_nifti_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    field = rng.normal(0, 5, size=(2, 30, 41)).astype(np.float32)
    nii, npy = save_field(field, tmp_path / "sub" / "field")
    assert nii.name == "field.nii.gz" and npy.name == "field.npy"
    assert sorted(p.name for p in nii.parent.iterdir()) == ["field.nii.gz", "field.npy"]  # no temporaries left
    for path in (nii, npy):
        loaded = load_field(path)
        assert loaded.dtype == np.float32 and loaded.shape == (2, 30, 41)
        np.testing.assert_array_equal(loaded, field)

    image = nib.load(nii)
    assert image.shape == (41, 30, 1, 1, 2)  # (x, y, z, t, [dx, dy])
    assert int(image.header["intent_code"]) == 1007
    np.testing.assert_array_equal(image.affine, np.eye(4))
    assert image.header["descrip"].item().decode() == FIELD_DESCRIPTION
    data = np.asarray(image.dataobj)
    assert data[7, 3, 0, 0, 0] == field[0, 3, 7] and data[7, 3, 0, 0, 1] == field[1, 3, 7]  # voxel (i, j) = pixel (x, y)

    # a result built from the file maps points exactly as the in-memory field
    pts = rng.uniform(0, 29, size=(50, 2))
    np.testing.assert_array_equal(
        DisplacementFieldResult(load_field(nii)).fixed_to_moving(pts), DisplacementFieldResult(field).fixed_to_moving(pts)
    )


def test_field_io_errors_name_the_file(tmp_path):
    with pytest.raises(FieldFormatError, match=r"\(2, H, W\)"):
        save_field(np.zeros((3, 4, 4), np.float32), tmp_path / "bad")
    with pytest.raises(ValueError, match="80"):
        save_field(np.zeros((2, 4, 4), np.float32), tmp_path / "bad", description="x" * 81)
    wrong_intent = tmp_path / "plain.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 1, 1, 2), np.float32), np.eye(4)), wrong_intent)
    with pytest.raises(FieldFormatError, match=f"{wrong_intent}.*intent code 0"):
        load_field(wrong_intent)
    wrong_shape = tmp_path / "shape.nii.gz"
    image = nib.Nifti1Image(np.zeros((4, 5, 1, 1, 3), np.float32), np.eye(4))
    image.header.set_intent("vector")
    nib.save(image, wrong_shape)
    with pytest.raises(FieldFormatError, match=f"{wrong_shape}.*\\(W, H, 1, 1, 2\\)"):
        load_field(wrong_shape)
    np.save(tmp_path / "flat.npy", np.zeros((4, 4), np.float32))
    with pytest.raises(FieldFormatError, match="flat.npy"):
        load_field(tmp_path / "flat.npy")
    with pytest.raises(FileNotFoundError, match="nothing.nii.gz"):
        load_field(tmp_path / "nothing.nii.gz")


# ---------------------------------------------------------------- register_pair


def test_register_pair_writes_valid_outputs(photo_pair, tmp_path):
    pair, shift, size = photo_pair, photo_pair["shift"], photo_pair["size"]
    out = tmp_path / "out"
    written = register_pair(pair["root"] / "fixed.png", pair["root"] / "moving.png", pair["ckpt"], out,
                            points_path=pair["root"] / "control_points.txt")
    expected = {"warped.png", "field.nii.gz", "field.npy", "checkerboard.png", "overlay.png", "points_mapped.csv"}
    assert {p.name for p in written.values()} == expected
    assert {p.name for p in out.iterdir()} == expected  # and no temporaries
    for name in ("warped.png", "checkerboard.png", "overlay.png"):
        with Image.open(out / name) as im:
            im.verify()
    with Image.open(out / "warped.png") as im:
        assert im.mode == "RGB" and im.size == (size, size)  # full resolution
        warped = np.asarray(im)

    header = nib.load(out / "field.nii.gz").header
    descrip = header["descrip"].item().decode()
    assert "px" in descrip and "fixed->moving" in descrip
    assert int(header["intent_code"]) == 1007

    # the field is the known shift, and maps points as the in-memory result does
    result = DeepMethod(pair["ckpt"]).register(pair["fixed"], pair["moving"])
    field = load_field(out / "field.nii.gz")
    np.testing.assert_array_equal(field, np.load(out / "field.npy"))
    np.testing.assert_allclose(field[0], shift[0], atol=1e-3)
    np.testing.assert_allclose(field[1], shift[1], atol=1e-3)
    pts = np.random.default_rng(1).uniform(0, size - 1, size=(100, 2))
    np.testing.assert_allclose(DisplacementFieldResult(field).fixed_to_moving(pts), result.fixed_to_moving(pts), atol=1e-3)

    # the warped image is result.warp_moving and, the shift being right, equals the fixed image inside
    np.testing.assert_array_equal(warped, result.warp_moving(pair["moving"]))
    inner = (slice(15, size - 25), slice(5, size - 25))
    assert np.abs(warped[inner].astype(int) - pair["fixed"][inner].astype(int)).max() <= 1

    table = pd.read_csv(out / "points_mapped.csv")
    assert list(table.columns[:5]) == ["point", "x_fixed", "y_fixed", "x_moving_mapped", "y_moving_mapped"]
    mapped = result.fixed_to_moving(pair["points"])
    np.testing.assert_allclose(table[["x_moving_mapped", "y_moving_mapped"]].to_numpy(), mapped, rtol=0, atol=1e-9)
    np.testing.assert_allclose(table["error_moving"], 0.0, atol=1e-3)  # the checkpoint predicts the true shift
    np.testing.assert_allclose(table[["x_fixed_mapped", "y_fixed_mapped"]].to_numpy(), pair["points"], atol=1e-3)
    np.testing.assert_allclose(table["error_fixed"], 0.0, atol=1e-3)


def test_register_pair_with_fixed_points_only(photo_pair, tmp_path):
    pair, shift = photo_pair, photo_pair["shift"]
    written = register_pair(pair["root"] / "fixed.png", pair["root"] / "moving.png", pair["ckpt"], tmp_path,
                            points_path=pair["root"] / "fixed_points.txt")
    table = pd.read_csv(written["points"])
    assert list(table.columns) == ["point", "x_fixed", "y_fixed", "x_moving_mapped", "y_moving_mapped"]
    np.testing.assert_allclose(table[["x_moving_mapped", "y_moving_mapped"]].to_numpy(), pair["points"] + shift, atol=1e-3)


def test_register_non_divisible_size_with_voxelmorph(tmp_path, retina_photo, shifted_photo, photo_checkpoint):
    """203 x 203 JPEGs, a VoxelMorph checkpoint of working size 72 (not a multiple of 16), refinement on."""
    fixed = retina_photo(203)
    moving = shifted_photo(fixed, (3.0, 2.0))
    Image.fromarray(fixed).save(tmp_path / "f.jpg", quality=95)
    Image.fromarray(moving).save(tmp_path / "m.jpeg", quality=95)
    ckpt = photo_checkpoint(tmp_path / "vxm.pt", "voxelmorph", 72)
    pts = np.array([[40.0, 50.0], [120.0, 130.0], [180.0, 100.0]])
    (tmp_path / "cp.txt").write_text("\n".join(f"{x} {y} {x + 3} {y + 2}" for x, y in pts))
    written = register_pair(tmp_path / "f.jpg", tmp_path / "m.jpeg", tmp_path / "vxm.pt", tmp_path / "out",
                            points_path=tmp_path / "cp.txt", refine_steps=2)
    field = load_field(written["field_nifti"])
    assert field.shape == (2, 203, 203) and np.isfinite(field).all()
    with Image.open(written["warped"]) as im:
        assert im.size == (203, 203)

    method = DeepMethod(ckpt, expected_type="voxelmorph", refine=fundus_refinement(2))  # what register_pair uses
    result = method.register(np.asarray(Image.open(tmp_path / "f.jpg")),
                             np.asarray(Image.open(tmp_path / "m.jpeg")))
    np.testing.assert_allclose(field, _field_of(result), atol=1e-4)  # refinement is deterministic on CPU
    grid_pts = np.array([[0.0, 0.0], [202.0, 202.0], [17.0, 150.0], [100.0, 3.0]])
    np.testing.assert_allclose(DisplacementFieldResult(field).fixed_to_moving(grid_pts), result.fixed_to_moving(grid_pts), atol=1e-3)
    table = pd.read_csv(written["points"])
    np.testing.assert_allclose(table[["x_moving_mapped", "y_moving_mapped"]].to_numpy(), result.fixed_to_moving(pts), atol=1e-4)
    assert "error_moving" in table and "x_fixed_mapped" not in table  # a field is not invertible


def test_register_errors_are_clear(photo_pair, tmp_path, retina_photo):
    pair = photo_pair
    root = pair["root"]
    small = tmp_path / "small.png"
    Image.fromarray(retina_photo(pair["size"])[:180]).save(small)  # 200 wide, 180 high
    with pytest.raises(ValueError, match=r"200x200.*200x180.*FIRE"):
        register_pair(root / "fixed.png", small, pair["ckpt"], tmp_path / "o")
    with pytest.raises(CheckpointError, match=f"{pair['ckpt']}.*'affine'.*expected 'voxelmorph'"):
        register_pair(root / "fixed.png", root / "moving.png", pair["ckpt"], tmp_path / "o", expected_type="voxelmorph")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        register_pair(tmp_path / "missing.png", root / "moving.png", pair["ckpt"], tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="no_such.pt"):
        register_pair(root / "fixed.png", root / "moving.png", tmp_path / "no_such.pt", tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="nopoints.txt"):
        register_pair(root / "fixed.png", root / "moving.png", pair["ckpt"], tmp_path / "o", points_path=tmp_path / "nopoints.txt")
    with pytest.raises(ValueError, match=r"\.gif.*\.jpg \.jpeg \.png \.tif \.tiff \.bmp"):
        register_pair(tmp_path / "image.gif", root / "moving.png", pair["ckpt"], tmp_path / "o")
    with pytest.raises(ValueError, match=r"'\.nii\.gz' \(NIfTI volumes: firereg\.pipelines\.fields_io\.read_nifti\)"):
        read_rgb(tmp_path / "image.nii.gz")
    bad = tmp_path / "three.txt"
    bad.write_text("1 2 3\n")
    with pytest.raises(ValueError, match="three.txt, line 1: expected 4 columns"):
        register_pair(root / "fixed.png", root / "moving.png", pair["ckpt"], tmp_path / "o", points_path=bad)
    outside = tmp_path / "outside.txt"
    outside.write_text("10 10\n500 10\n")
    with pytest.raises(ValueError, match="outside.txt, line 2.*outside the fixed image"):
        register_pair(root / "fixed.png", root / "moving.png", pair["ckpt"], tmp_path / "o", points_path=outside)
    assert not (tmp_path / "o").exists()  # bad input is caught before anything is written
