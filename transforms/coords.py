"""Point coordinate conventions, written down once.

A point is ``(x, y)`` = (column, row) in pixels of the image it belongs to, pixel
centres at integer positions (FIRE's control-point files use this). Images read by
MONAI's ``PILReader`` are arrays with axis 0 = x and axis 1 = y (``reverse_indexing``),
so a point ``(x, y)`` indexes such an array directly as ``array[..., x, y]``. NumPy,
PIL, OpenCV and ITK's ``GetArrayFromImage`` are row-major: ``array[y, x]``.

Scaling between full resolution and a working resolution uses the pixel-centre
convention ``x_to = (x_from + 0.5) * to_size / from_size - 0.5``, which is exactly the
index-to-world affine that MONAI's ``Resize`` records in the image metadata.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import torch

__all__ = ["Axes", "scale_points", "to_monai_points", "from_monai_points"]


class Axes(str, Enum):
    """Names for the two array layouts used in this project."""

    XY = "xy"  # array[x, y]: MONAI PILReader (reverse indexing), points (x, y)
    YX = "yx"  # array[y, x]: NumPy / PIL / OpenCV / ITK GetArrayFromImage


def scale_points(
    points: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]
) -> np.ndarray:
    """Scale ``(x, y)`` pixel points from an image of ``from_size`` to one of ``to_size``.

    Args:
        points: (N, 2) array of ``(x, y)`` pixels, pixel centres at integers.
        from_size: ``(width, height)`` in pixels of the image the points are in.
        to_size: ``(width, height)`` in pixels of the target image.

    Returns:
        (N, 2) float64 array of ``(x, y)`` pixels in the target image.

    Raises:
        ValueError: if ``points`` is not (N, 2) or a size is not positive.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    if min(*from_size, *to_size) <= 0:
        raise ValueError(f"sizes must be positive, got from {from_size} to {to_size}")
    ratio = np.asarray(to_size, dtype=np.float64) / np.asarray(from_size, dtype=np.float64)
    return (pts + 0.5) * ratio - 0.5


def to_monai_points(points: np.ndarray) -> torch.Tensor:
    """(N, 2) ``(x, y)`` points → MONAI's point layout (1, N, 2), float64."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    return torch.as_tensor(pts)[None]


def from_monai_points(points: torch.Tensor) -> np.ndarray:
    """MONAI's point layout (1, N, 2) → (N, 2) float64 NumPy array of ``(x, y)``."""
    arr = np.asarray(points.detach().cpu() if isinstance(points, torch.Tensor) else points, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] != 1 or arr.shape[2] != 2:
        raise ValueError(f"MONAI points must have shape (1, N, 2), got {arr.shape}")
    return arr[0]
