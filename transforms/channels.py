"""Which channel of a fundus photograph the methods see: one selector for all of them.

Green is the default everywhere (the networks, elastix, SIFT, the figures): retinal vessels
have their best contrast in it. The channel-first MONAI transform is
:class:`firereg.transforms.pair_transforms.SelectChannel`; this module holds the table it
shares with :func:`select_channel`, which works on row-major NumPy images.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CHANNELS", "CHANNEL_INDEX", "LUMINANCE_WEIGHTS", "check_channel", "select_channel"]

CHANNELS = ("green", "luminance", "red", "blue")
#: index of each colour channel in an RGB image
CHANNEL_INDEX = {"red": 0, "green": 1, "blue": 2}
#: ITU-R BT.601 luma weights for R, G, B
LUMINANCE_WEIGHTS = (0.299, 0.587, 0.114)


def check_channel(channel: str) -> str:
    """``channel`` itself if it is one of :data:`CHANNELS`.

    Raises:
        ValueError: naming the unknown channel and the known ones.
    """
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; choose one of {list(CHANNELS)}")
    return channel


def select_channel(image: np.ndarray, channel: str = "green") -> np.ndarray:
    """One channel of a row-major image as (H, W) float32, values unchanged (not rescaled).

    Args:
        image: (H, W) (passes through) or (H, W, C) with C = 1 (passes through), 3 or 4 (RGB[A]).
        channel: one of :data:`CHANNELS`.

    Raises:
        ValueError: for another shape (quoting it) or an unknown channel.
    """
    check_channel(channel)
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        if channel == "luminance":
            arr = arr[..., :3].astype(np.float32) @ np.asarray(LUMINANCE_WEIGHTS, dtype=np.float32)
        else:
            arr = arr[..., CHANNEL_INDEX[channel]]
    if arr.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, C) image with C in 1, 3, 4, got shape {np.asarray(image).shape}")
    return arr.astype(np.float32, copy=False)
