"""Displacement-field helpers shared by the networks, inference and the examples.

A DDF is (B, D, *spatial) in pixels (voxels) of its grid, channel ``i`` = displacement along
spatial axis ``i``, fixed → moving; layouts, direction and the converters to row-major fields
(``field_xy_to_yx``) are in :mod:`firereg.transforms.coords`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Warp

__all__ = ["make_warp", "identity_grid", "pad_to_multiple", "crop_to", "affine_to_ddf", "resample_ddf"]


logger = logging.getLogger(__name__)

#: MONAI's notice, as a UserWarning, each time a ``Warp`` is built without its compiled extension
_WARP_NOTICE = r"monai\.networks\.blocks\.Warp: Using PyTorch native grid_sample"
_warp_notice_logged = False


def make_warp(mode: str = "bilinear", padding_mode: str = "zeros") -> Warp:
    """MONAI ``Warp(mode, padding_mode)`` (samples ``image(p + ddf(p))``, ``align_corners=True``),
    built without its per-instance "Using PyTorch native grid_sample" warning: the notice is
    logged once per process at INFO level (``firereg.pipelines.nn.fields``) instead."""
    global _warp_notice_logged
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", message=_WARP_NOTICE, category=UserWarning)
        warp = Warp(mode=mode, padding_mode=padding_mode)
    for item in caught:
        if "Warp: Using PyTorch native grid_sample" not in str(item.message):
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
        elif not _warp_notice_logged:
            _warp_notice_logged = True
            logger.info("%s", item.message)
    return warp


def identity_grid(spatial: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """(D, *spatial) tensor of pixel index coordinates, channel ``i`` = index along axis ``i``."""
    axes = [torch.arange(n, device=device, dtype=dtype) for n in spatial]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Zero-pad the spatial dims of (B, C, *spatial) at the end up to a multiple; returns the pads.

    Padding only at the end keeps index coordinates (and so displacements) unchanged.
    """
    spatial = x.shape[2:]
    pads = [(0, (-n) % multiple) for n in spatial]
    flat: list[int] = []
    for before, after in reversed(pads):  # F.pad wants the last axis first
        flat += [before, after]
    return (F.pad(x, flat) if any(flat) else x), pads


def crop_to(x: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """The first ``spatial`` pixels of each spatial axis of (B, C, *spatial): undoes :func:`pad_to_multiple`."""
    return x[(slice(None), slice(None), *[slice(0, n) for n in spatial])]


def affine_to_ddf(matrix: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """DDF (B, 2, *spatial) of affines (B, 2, 3) acting on pixel index coordinates.

    ``matrix`` maps a fixed pixel ``p`` (index order: (x, y) in the ``XY`` layout of
    :mod:`firereg.transforms.coords`) to ``A[:, :2] @ p + A[:, 2]`` in the moving image; the
    DDF is that minus ``p``.
    """
    grid = identity_grid(spatial, device=matrix.device, dtype=matrix.dtype)  # (2, *spatial)
    flat = grid.reshape(2, -1)
    mapped = torch.einsum("bij,jn->bin", matrix[:, :, :2], flat) + matrix[:, :, 2:]
    return (mapped - flat).reshape(matrix.shape[0], 2, *spatial)


def resample_ddf(ddf: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A pixel/voxel DDF (B, D, *spatial) on another grid of the same field of view, 2D or 3D.

    Pixel-centre (``align_corners=False``) geometry, as MONAI ``Resize``: pixel ``q`` of the
    new grid is ``(q + 0.5) r - 0.5`` of the old (``r = old / new``), and displacements are
    rescaled to the new grid's pixels. Returns ``ddf`` itself when the grid is unchanged.

    Raises:
        ValueError: if ``ddf`` is not (B, D, *spatial) with D spatial axes, or ``shape`` has
            another number of axes.
    """
    dims = ddf.ndim - 2
    if dims not in (2, 3) or ddf.shape[1] != dims or len(shape) != dims:
        raise ValueError(f"expected a (B, D, *spatial) DDF with D = 2 or 3 and a {dims}-axis shape, "
                         f"got {tuple(ddf.shape)} and {tuple(shape)}")
    old = tuple(ddf.shape[2:])
    if old == tuple(shape):
        return ddf
    mode = "bilinear" if dims == 2 else "trilinear"
    ratio = torch.as_tensor([n / o for n, o in zip(shape, old)], dtype=ddf.dtype, device=ddf.device)
    resized = F.interpolate(ddf, size=tuple(shape), mode=mode, align_corners=False)
    return resized * ratio.view(1, dims, *([1] * dims))
