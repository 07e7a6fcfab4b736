"""Tests for firereg.transforms.coords: point scaling, MONAI's Resize affine, PILReader layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from firereg.transforms.coords import (
    Axes,
    from_monai_points,
    scale_points,
    to_monai_points,
)
from monai.transforms import ApplyTransformToPoints, LoadImage, Resize
from PIL import Image

RNG = np.random.default_rng(0)


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


def _load(path):
    return LoadImage(reader="PILReader", ensure_channel_first=True, image_only=True)(path)


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
    np.testing.assert_allclose(from_monai_points(back), scale_points(pts, (w, h), size), atol=1e-6)


def test_pilreader_layout_axis0_is_x(tmp_path):
    w, h = 20, 10  # W != H so a swapped layout cannot pass
    arr = np.zeros((h, w), dtype=np.uint8)
    arr[3, 7] = 255  # row y=3, column x=7
    Image.fromarray(arr).save(tmp_path / "dot.png")
    img = _load(tmp_path / "dot.png")
    assert tuple(img.shape) == (1, w, h)
    assert float(img[0, 7, 3]) == 255.0
    assert int(torch.argmax(img[0]).item()) == np.ravel_multi_index((7, 3), (w, h))
    assert float(img.sum()) == 255.0
    # the named layouts
    assert Axes.XY.value == "xy" and Axes.YX.value == "yx"


def test_monai_points_layout_round_trip():
    pts = RNG.normal(size=(5, 2))
    mp = to_monai_points(pts)
    assert tuple(mp.shape) == (1, 5, 2) and mp.dtype == torch.float64
    np.testing.assert_array_equal(from_monai_points(mp), pts)
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
    with pytest.raises(ValueError, match=r"\(2, 3, 2\)"):
        from_monai_points(torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        from_monai_points(torch.zeros(3, 2))
