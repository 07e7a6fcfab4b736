"""Tests for firereg.transforms.fov.field_of_view: the one "mask given or estimated, then eroded" rule."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import ndimage

from firereg.transforms.fov import estimate_fov_mask, field_of_view

H, W = 60, 80  # H != W: a transposed mask cannot pass


def _disk_image(r: float = 25.0) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.zeros((H, W, 3), np.uint8)
    img[(xx - 40) ** 2 + (yy - 30) ** 2 <= r**2] = (180, 90, 40)
    return img


def _left_half() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[:, : W // 2] = True
    return mask


def test_estimated_without_a_mask():
    img = _disk_image()
    fov = field_of_view(img)
    assert fov.shape == (H, W) and fov.dtype == bool
    np.testing.assert_array_equal(fov, estimate_fov_mask(img))  # estimate_fov_mask's defaults
    assert fov[30, 40] and not fov[0, 0]


def test_given_mask_wins():
    img = _disk_image()
    given = _left_half()  # nothing like the disk the image shows
    fov = field_of_view(img, given)
    np.testing.assert_array_equal(fov, given)
    # any non-zero value is inside; the given array is not modified
    as_uint8 = given.astype(np.uint8) * 255
    np.testing.assert_array_equal(field_of_view(img, as_uint8), given)
    assert as_uint8.max() == 255
    # a blank image has no estimated field of view, but a given mask still works
    np.testing.assert_array_equal(field_of_view(np.zeros((H, W)), given), given)


def test_erosion():
    img = _disk_image()
    given = _left_half()
    eroded = field_of_view(img, given, erode_px=3)
    np.testing.assert_array_equal(eroded, ndimage.binary_erosion(given, iterations=3))
    assert eroded.sum() < given.sum()
    # 3 px off every side, the image border included (scipy erodes with border value 0)
    assert not eroded[:, W // 2 - 3 :].any() and not eroded[:, :3].any() and eroded[3:-3, 3 : W // 2 - 3].all()
    # an estimated mask is eroded too
    estimated = field_of_view(img, erode_px=4)
    np.testing.assert_array_equal(estimated, ndimage.binary_erosion(estimate_fov_mask(img), iterations=4))


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError) as err:
        field_of_view(_disk_image(), np.ones((W, H), bool))  # a transposed mask
    assert re.search(r"\(80, 60\)", str(err.value)) and re.search(r"\(60, 80\)", str(err.value))


def test_empty_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        field_of_view(_disk_image(), np.zeros((H, W), bool))
    small = np.zeros((H, W), bool)
    small[28:33, 38:43] = True  # 5 px wide: gone after 3 px of erosion
    assert field_of_view(_disk_image(), small, erode_px=2).any()
    with pytest.raises(ValueError, match=r"empty.*3 px"):
        field_of_view(_disk_image(), small, erode_px=3)
    with pytest.raises(ValueError, match="threshold"):  # nothing to estimate from
        field_of_view(np.zeros((H, W, 3), np.uint8))
