"""Tests for firereg.transforms.coords: layouts and their converters, sizes, point scaling.

Every convention is pinned with a known shift: an image with one bright pixel at a known
row and column, W != H so a swapped axis cannot pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import ApplyTransformToPoints, LoadImage, Resize
from PIL import Image

from firereg.transforms.coords import (
    FIELD_DIRECTION,
    field_xy_to_yx,
    field_yx_to_xy,
    scale_points,
    shape_of,
    size_of,
    to_monai_points,
    xy_to_yx,
    yx_to_xy,
)

RNG = np.random.default_rng(0)
W, H = 20, 10  # W != H so a swapped layout cannot pass
ROW, COL = 3, 7  # the bright pixel: y = 3, x = 7


def _dot_yx(channels: int | None = None) -> np.ndarray:
    shape = (H, W) if channels is None else (H, W, channels)
    arr = np.zeros(shape, dtype=np.uint8)
    arr[ROW, COL] = 255
    return arr


def _load(path):
    return LoadImage(reader="PILReader", ensure_channel_first=True, image_only=True)(path)


# --- layouts --------------------------------------------------------------------------


def test_field_direction_is_written_down():
    assert "fixed -> moving" in FIELD_DIRECTION and "p_fixed + u(p_fixed)" in FIELD_DIRECTION


def test_yx_to_xy_known_shift():
    """A bright pixel at row r, column c lands at [0, c, r] in XY."""
    xy = yx_to_xy(_dot_yx())
    assert xy.shape == (1, W, H)
    assert xy[0, COL, ROW] == 255 and int(xy.sum()) == 255
    rgb = _dot_yx(3)
    rgb[ROW, COL] = (10, 20, 30)
    xy = yx_to_xy(rgb)
    assert xy.shape == (3, W, H) and xy.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(xy[:, COL, ROW], [10, 20, 30])  # channel order kept


def test_yx_xy_round_trip():
    img = RNG.integers(0, 255, size=(H, W, 3), dtype=np.uint8)
    xy = yx_to_xy(img)
    back = xy_to_yx(xy)
    assert back.shape == (H, W, 3) and back.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(back, img)
    # a tensor in, a NumPy array out
    from_tensor = xy_to_yx(torch.as_tensor(xy))
    assert isinstance(from_tensor, np.ndarray)
    np.testing.assert_array_equal(from_tensor, img)
    # an (H, W) mask comes back with one channel
    mask = RNG.random((H, W)) > 0.5
    np.testing.assert_array_equal(xy_to_yx(yx_to_xy(mask))[..., 0], mask)


def test_pilreader_layout_is_yx_to_xy_of_the_pil_array(tmp_path):
    for name, arr in (("grey.png", _dot_yx()), ("rgb.png", RNG.integers(0, 255, size=(H, W, 3), dtype=np.uint8))):
        Image.fromarray(arr).save(tmp_path / name)
        img = _load(tmp_path / name)
        with Image.open(tmp_path / name) as im:
            pil = np.asarray(im)
        np.testing.assert_array_equal(np.asarray(img), yx_to_xy(pil))
    img = _load(tmp_path / "grey.png")
    assert tuple(img.shape) == (1, W, H) and float(img[0, COL, ROW]) == 255.0  # axis 0 is x
    assert int(torch.argmax(img[0]).item()) == np.ravel_multi_index((COL, ROW), (W, H))
    assert float(img.sum()) == 255.0


def test_layout_converters_reject_other_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 5\)"):
        yx_to_xy(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"\(4, 5\)"):
        xy_to_yx(np.zeros((4, 5)))


# --- fields -----------------------------------------------------------------------------


def test_field_converters_keep_channel_0_as_dx():
    """A field of dx = 2, dy = -1 everywhere stays so in both layouts, with a known spot."""
    field_yx = np.zeros((2, H, W), dtype=np.float64)
    field_yx[0], field_yx[1] = 2.0, -1.0
    field_yx[:, ROW, COL] = (5.0, 6.0)  # at row 3, column 7: dx 5, dy 6
    ddf = field_yx_to_xy(field_yx)
    assert ddf.shape == (2, W, H) and ddf.dtype == np.float32 and ddf.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(ddf[:, COL, ROW], [5.0, 6.0])
    assert ddf[0, 0, 0] == 2.0 and ddf[1, 0, 0] == -1.0
    back = field_xy_to_yx(torch.as_tensor(ddf))
    assert back.shape == (2, H, W) and back.dtype == np.float32
    np.testing.assert_array_equal(back, field_yx)
    # the image converter and the field converter agree on where a pixel goes
    np.testing.assert_array_equal(ddf[0], yx_to_xy(field_yx[0])[0])


def test_field_converters_reject_other_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4, 5\)"):
        field_yx_to_xy(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 5\)"):
        field_xy_to_yx(np.zeros((1, 2, 4, 5)))


# --- sizes and shapes -------------------------------------------------------------------


def test_size_of_and_shape_of():
    assert size_of((H, W)) == (W, H)
    assert size_of(_dot_yx(3).shape) == (W, H)  # (H, W, C) → (W, H)
    assert shape_of((W, H)) == (H, W)
    assert shape_of(size_of((H, W))) == (H, W)
    assert all(type(v) is int for v in size_of(np.array([H, W])))
    with pytest.raises(ValueError, match=r"\(5,\)"):
        size_of((5,))
    with pytest.raises(ValueError, match=r"\(1, 2, 3\)"):
        shape_of((1, 2, 3))


# --- point scaling ----------------------------------------------------------------------


def test_scale_points_known_numbers():
    # pixel-centre convention: (x + 0.5) * to / from - 0.5
    pts = np.array([[0.0, 0.0], [-0.5, -0.5], [99.5, 49.5], [10.0, 20.0]])
    out = scale_points(pts, (100, 50), (50, 100))
    expected = np.array([[-0.25, 0.5], [-0.5, -0.5], [49.5, 99.5], [4.75, 40.5]])
    np.testing.assert_allclose(out, expected, atol=1e-12)
    assert out.dtype == np.float64
    # the image edges map onto the image edges
    np.testing.assert_allclose(scale_points([[-0.5, -0.5], [2911.5, 2911.5]], (2912, 2912), (512, 512)),
                               [[-0.5, -0.5], [511.5, 511.5]])


@pytest.mark.parametrize("full, work", [((2912, 2912), (512, 512)), ((1024, 768), (768, 768)), ((200, 150), (37, 91))])
def test_scale_points_round_trip(full, work):
    pts = RNG.uniform(-0.5, np.asarray(full) - 0.5, size=(50, 2))
    there = scale_points(pts, full, work)
    back = scale_points(there, work, full)
    np.testing.assert_allclose(back, pts, atol=1e-9, rtol=0)
    # and it really moved (not an identity that trivially round-trips)
    assert np.abs(there - pts).max() > 1.0


@pytest.mark.parametrize("mode", ["area", "bilinear", "nearest"])
def test_scale_points_agrees_with_monai_resize_affine(tmp_path, mode):
    w, h = 120, 80
    arr = (RNG.uniform(0, 255, size=(h, w))).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "img.png")
    img = _load(tmp_path / "img.png")
    assert tuple(img.shape) == (1, w, h)
    pts = np.array([[0.0, 0.0], [119.0, 79.0], [7.25, 3.5], [60.0, 40.0], [-0.5, 79.4]])
    world = ApplyTransformToPoints(invert_affine=False)(to_monai_points(pts), affine=img.affine)
    size = (48, 100)
    resized = Resize(spatial_size=size, mode=mode)(img)
    assert tuple(resized.shape) == (1, *size)
    back = ApplyTransformToPoints(invert_affine=True)(world, affine=resized.affine)
    np.testing.assert_allclose(np.asarray(back[0], dtype=np.float64), scale_points(pts, (w, h), size), atol=1e-6)


def test_monai_points_layout():
    pts = RNG.normal(size=(5, 2))
    mp = to_monai_points(pts)
    assert tuple(mp.shape) == (1, 5, 2) and mp.dtype == torch.float64
    np.testing.assert_array_equal(mp[0].numpy(), pts)
    np.testing.assert_array_equal(mp[0, 2].numpy(), pts[2])


@pytest.mark.parametrize("shape", [(3, 3), (6,), (2, 2, 2)])
def test_scale_points_shape_error_quotes_shape(shape):
    with pytest.raises(ValueError, match=f"got {shape}".replace("(", r"\(").replace(")", r"\)")):
        scale_points(np.zeros(shape), (10, 10), (5, 5))


def test_scale_points_bad_size():
    with pytest.raises(ValueError, match=r"\(0, 10\)"):
        scale_points(np.zeros((1, 2)), (0, 10), (5, 5))


def test_monai_point_shape_errors_quote_shape():
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        to_monai_points(np.zeros((4, 3)))
