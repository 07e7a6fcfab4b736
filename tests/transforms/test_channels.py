"""Tests for firereg.transforms.channels: the one channel selector, and its MONAI twin agrees."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from firereg.transforms.channels import (
    CHANNEL_INDEX,
    CHANNELS,
    LUMINANCE_WEIGHTS,
    check_channel,
    select_channel,
)
from firereg.transforms.coords import xy_to_yx, yx_to_xy
from firereg.transforms.pair_transforms import CHANNELS as PAIR_CHANNELS
from firereg.transforms.pair_transforms import SelectChannel


def _rgb() -> np.ndarray:
    """(2, 3, 3) uint8 RGB whose channels differ everywhere."""
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0] = [[10, 20, 30], [40, 50, 60]]
    img[..., 1] = [[200, 100, 0], [5, 6, 7]]
    img[..., 2] = [[1, 2, 3], [250, 240, 230]]
    return img


def test_table():
    assert CHANNELS[0] == "green"  # the default
    assert set(CHANNELS) == {"green", "luminance", "red", "blue"}
    assert CHANNEL_INDEX == {"red": 0, "green": 1, "blue": 2}
    assert LUMINANCE_WEIGHTS == (0.299, 0.587, 0.114)
    assert sum(LUMINANCE_WEIGHTS) == pytest.approx(1.0)
    assert PAIR_CHANNELS is CHANNELS  # one table, still importable from pair_transforms


def test_green_is_channel_1():
    img = _rgb()
    out = select_channel(img)
    assert out.shape == (2, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, img[..., 1])  # values unchanged, not rescaled
    np.testing.assert_array_equal(select_channel(img, "red"), img[..., 0])
    np.testing.assert_array_equal(select_channel(img, "blue"), img[..., 2])


def test_luminance_weights():
    img = _rgb()
    expected = 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]
    out = select_channel(img, "luminance")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    # RGBA: alpha is ignored
    rgba = np.dstack([img, np.full((2, 3), 255, np.uint8)])
    np.testing.assert_allclose(select_channel(rgba, "luminance"), expected, rtol=1e-6)
    np.testing.assert_array_equal(select_channel(rgba, "green"), img[..., 1])


def test_single_channel_passes_through():
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    for channel in CHANNELS:
        np.testing.assert_array_equal(select_channel(grey, channel), grey)
        np.testing.assert_array_equal(select_channel(grey[..., None], channel), grey)
    floats = np.linspace(0, 1, 6).reshape(2, 3)
    assert select_channel(floats).dtype == np.float32


def test_agrees_with_select_channel_transform():
    img = _rgb()
    for channel in CHANNELS:
        monai = SelectChannel(channel)(torch.as_tensor(yx_to_xy(img)).float())  # (1, W, H)
        np.testing.assert_allclose(xy_to_yx(monai)[..., 0], select_channel(img, channel), rtol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 2), (2, 3, 5), (4,), (2, 3, 3, 1)])
def test_bad_shape_is_quoted(shape):
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        select_channel(np.zeros(shape))


def test_unknown_channel_is_named():
    with pytest.raises(ValueError, match=r"'purple'.*green"):
        select_channel(_rgb(), "purple")
    with pytest.raises(ValueError, match="'Green'"):
        check_channel("Green")
    assert check_channel("blue") == "blue"
