"""Coordinate and layout conventions, written down once; every module points here.

**Points.** A point is ``(x, y)`` = (column, row) in pixels of the image it belongs to,
pixel centres at integer positions, at the image's **full resolution** (FIRE's
control-point files use this: ``x_fixed y_fixed x_moving y_moving``, the fixed image being
``<pair>_1.jpg``).

**Array layouts** (named ``YX`` and ``XY`` in docstrings):

- ``YX`` (row-major): NumPy, PIL, OpenCV, ITK's ``GetArrayFromImage`` — ``image[y, x]``,
  an RGB image is (H, W, 3);
- ``XY`` (MONAI ``PILReader``, reverse indexing): ``image[c, x, y]``, an RGB image is
  (3, W, H). The networks, MONAI transforms and ``Warp`` see this layout, so their spatial
  axis 0 is x and a point ``(x, y)`` indexes the array directly.

Convert with :func:`yx_to_xy` / :func:`xy_to_yx` (images) and :func:`field_xy_to_yx` /
:func:`field_yx_to_xy` (displacement fields); never with a hand-written transpose.

**Sizes and shapes.** A *size* is ``(width, height)`` in pixels; a *shape* is NumPy's
``(height, width)``: :func:`size_of`, :func:`shape_of`.

**Resolutions.** Networks run at a working size; the full ↔ working scaling is the
pixel-centre rule ``x_to = (x_from + 0.5) * to_size / from_size - 0.5`` (:func:`scale_points`),
exactly the index-to-world affine that MONAI's ``Resize`` records.

**Field direction** (:data:`FIELD_DIRECTION`). A displacement field ``u`` lives on the
**fixed** grid and maps fixed to moving: the fixed pixel ``p`` corresponds to the moving
position ``p + u(p)`` and ``warped(p) = moving(p + u(p))`` (MONAI ``Warp``, VoxelMorph,
elastix/transformix). Row-major fields are (2, H, W) with channel 0 = dx, channel 1 = dy;
``XY`` fields (the networks' DDFs) are (2, W, H), channel ``i`` = displacement along axis ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "FIELD_DIRECTION",
    "size_of",
    "shape_of",
    "yx_to_xy",
    "xy_to_yx",
    "field_xy_to_yx",
    "field_yx_to_xy",
    "scale_points",
    "to_monai_points",
]

#: the direction of every displacement field in firereg, in words (also written into NIfTI headers)
FIELD_DIRECTION = "fixed -> moving: p_moving = p_fixed + u(p_fixed)"


def size_of(shape: Sequence[int]) -> tuple[int, int]:
    """``(width, height)`` in pixels of a row-major image of ``shape`` (H, W[, C]).

    Raises:
        ValueError: quoting ``shape`` if it has fewer than two axes.
    """
    if len(shape) < 2:
        raise ValueError(f"expected an (H, W[, C]) shape, got {tuple(shape)}")
    return int(shape[1]), int(shape[0])


def shape_of(size: Sequence[int]) -> tuple[int, int]:
    """Row-major ``(height, width)`` of an image of ``size`` (W, H) pixels.

    Raises:
        ValueError: quoting ``size`` if it is not two numbers.
    """
    if len(size) != 2:
        raise ValueError(f"expected a (width, height) size, got {tuple(size)}")
    return int(size[1]), int(size[0])


def yx_to_xy(image: np.ndarray) -> np.ndarray:
    """Row-major (H, W) or (H, W, C) image → channel-first ``XY`` layout (C, W, H), contiguous.

    The pixel at row ``r``, column ``c`` lands at ``[:, c, r]``. A 2D input gets one
    channel; masks are images too: (H, W) → (1, W, H). Dtype is kept.

    Raises:
        ValueError: quoting the shape of anything but a 2D or 3D array.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {np.asarray(image).shape}")
    return np.ascontiguousarray(np.transpose(arr, (2, 1, 0)))


def xy_to_yx(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """Channel-first ``XY`` image (C, W, H) → row-major (H, W, C) NumPy array, contiguous.

    The inverse of :func:`yx_to_xy` (a one-channel image comes back as (H, W, 1)); a tensor
    is copied to the CPU. Dtype is kept.

    Raises:
        ValueError: quoting the shape of anything but a 3D array.
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim != 3:
        raise ValueError(f"expected a (C, W, H) image, got shape {arr.shape}")
    return np.ascontiguousarray(np.transpose(arr, (2, 1, 0)))


def field_xy_to_yx(ddf: np.ndarray | torch.Tensor) -> np.ndarray:
    """One ``XY`` DDF (2, W, H) → row-major field (2, H, W) float32; channel 0 stays dx."""
    arr = ddf.detach().cpu().numpy() if isinstance(ddf, torch.Tensor) else np.asarray(ddf)
    if arr.ndim != 3 or arr.shape[0] != 2:
        raise ValueError(f"expected a (2, W, H) DDF, got shape {arr.shape}")
    return np.ascontiguousarray(np.transpose(arr, (0, 2, 1)), dtype=np.float32)


def field_yx_to_xy(field: np.ndarray) -> np.ndarray:
    """Row-major field (2, H, W) → one ``XY`` DDF (2, W, H) float32; channel 0 stays dx."""
    arr = np.asarray(field)
    if arr.ndim != 3 or arr.shape[0] != 2:
        raise ValueError(f"expected a (2, H, W) field, got shape {arr.shape}")
    return np.ascontiguousarray(np.transpose(arr, (0, 2, 1)), dtype=np.float32)


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
    """(N, 2) ``(x, y)`` points → MONAI's point layout (1, N, 2), float64 (``XY`` index order)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    return torch.as_tensor(pts)[None]
