"""Deformation quality of a dense displacement field: Jacobian determinant and folding.

A displacement field ``u`` defines the transform ``phi(p) = p + u(p)``. Its local volume
(area, in 2D) change is the Jacobian determinant ``det(I + grad u)`` at every pixel/voxel:
1 where the transform preserves volume, > 1 where it expands, between 0 and 1 where it
compresses, and <= 0 where it *folds* (the transform is not locally invertible there).
Fields map fixed → moving (see :mod:`firereg.transforms.coords`), so the determinant is
measured on the fixed grid.

Two channel orders, each with its own functions:

- **Channel-first, channel i along array axis i** (:func:`jacobian_determinant`,
  :func:`deformation_quality`): ``ddf`` has shape ``(D, *spatial)`` with ``D == len(spatial)``
  in {2, 3}, MONAI's DDF layout for one batch item (index ``ddf[b]`` first). The networks'
  ``XY`` DDFs are in this layout.
- **Row-major (x, y) channels** (:func:`jacobian_determinant_xy`,
  :func:`deformation_quality_xy`): the ``(2, H, W)`` field of
  :class:`firereg.evaluation.results.DisplacementFieldResult` (channel 0 = dx along array
  axis 1). These functions reorder the channels to ``[y, x]`` and call the channel-first
  versions; passing such a field to :func:`jacobian_determinant` directly would be wrong
  (``u_x = 0.3 x`` would give det 1 instead of 1.3).

Derivatives are central differences (:func:`numpy.gradient`), one-sided at the borders;
they are exact for fields that are linear in the coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np
import torch

__all__ = [
    "mapping_quality",
    "DeformationQuality",
    "jacobian_determinant",
    "jacobian_determinant_xy",
    "deformation_quality",
    "deformation_quality_xy",
]

#: a scalar spacing for every axis, or one per spatial array axis
Spacing = Union[float, Sequence[float], None]


def _as_numpy(x: Any, name: str) -> np.ndarray:
    """Return ``x`` (NumPy array, torch tensor or array-like) as a float64 NumPy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _check_ddf(ddf: np.ndarray) -> int:
    """Check the channel-first layout ``(D, *spatial)``; return ``D``."""
    d = ddf.ndim - 1
    if d not in (2, 3) or ddf.shape[0] != d:
        looks_batched = ddf.ndim in (4, 5) and ddf.shape[1] == ddf.ndim - 2
        hint = " (a MONAI batch (B, D, *spatial) must be indexed first: ddf[b])" if looks_batched else ""
        raise ValueError(
            "ddf must have shape (D, *spatial) with D == len(spatial) in {2, 3} "
            f"(channel i = displacement along array axis i), got {ddf.shape}{hint}"
        )
    if min(ddf.shape[1:]) < 2:
        raise ValueError(f"every spatial axis needs at least 2 samples for derivatives, got shape {ddf.shape}")
    return d


def _check_spacing(spacing: Spacing, d: int) -> tuple[float, ...]:
    """Return ``spacing`` as ``d`` positive finite floats."""
    if spacing is None:
        return (1.0,) * d
    sp = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if sp.ndim != 1 or sp.size not in (1, d):
        raise ValueError(f"spacing must be a scalar or have {d} values (one per spatial axis), got {spacing!r}")
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing must be positive and finite, got {spacing!r}")
    if sp.size == 1:
        sp = np.repeat(sp, d)
    return tuple(float(s) for s in sp)


def jacobian_determinant(ddf: np.ndarray | torch.Tensor, spacing: Spacing = None) -> np.ndarray:
    """Jacobian determinant ``det(I + grad u)`` of ``phi(p) = p + u(p)`` at every pixel/voxel.

    Args:
        ddf: displacement field ``(D, *spatial)``, ``D == len(spatial)`` in {2, 3}, channel
            ``i`` = displacement along array axis ``i`` (MONAI's layout for one item of a
            ``(B, D, *spatial)`` batch: pass ``ddf[b]``). Displacements are in the units of
            ``spacing`` (pixels/voxels when ``spacing`` is None). NumPy array, torch tensor
            (detached and moved to the CPU) or array-like.
        spacing: size of one pixel/voxel along each spatial array axis (same order as the
            axes), e.g. mm; a scalar applies to every axis. None means 1 (displacements in
            pixels/voxels).

    Returns:
        float64 array of shape ``spatial``: the determinant (dimensionless; volume ratio).
        Non-finite displacements give non-finite determinants nearby.

    Raises:
        ValueError: if ``ddf`` is not ``(D, *spatial)`` with ``D == len(spatial)`` in {2, 3},
            if a spatial axis has fewer than 2 samples, or if ``spacing`` has the wrong
            length or is not positive; the message quotes the shape or the spacing.
        TypeError: if ``ddf`` is not numeric.
    """
    u = _as_numpy(ddf, "ddf")
    d = _check_ddf(u)
    sp = _check_spacing(spacing, d)
    # jac[..., i, k] = d phi_i / d x_k = delta_ik + d u_i / d x_k, one (D, D) matrix per pixel/voxel
    jac = np.stack([np.stack(np.gradient(u[i], *sp), axis=-1) for i in range(d)], axis=-2) + np.eye(d)
    with np.errstate(invalid="ignore"):  # non-finite displacements give non-finite determinants, silently
        return np.linalg.det(jac)


def _xy_to_channel_first(field: Any) -> np.ndarray:
    """Reorder a row-major ``(2, H, W)`` ``[x, y]`` field to ``[y, x]`` (channel i along axis i)."""
    # accept a DisplacementFieldResult directly (imported lazily: results pulls in OpenCV)
    if not isinstance(field, (np.ndarray, torch.Tensor)) and hasattr(field, "field"):
        from firereg.evaluation.results import DisplacementFieldResult

        if isinstance(field, DisplacementFieldResult):
            field = field.field
    f = _as_numpy(field, "field")
    if f.ndim != 3 or f.shape[0] != 2:
        raise ValueError(
            f"field must have shape (2, H, W) with channel 0 = x, channel 1 = y displacement, got {f.shape}"
        )
    return f[::-1]


def jacobian_determinant_xy(field: Any) -> np.ndarray:
    """Jacobian determinant of a row-major ``(2, H, W)`` field with channels ``[x, y]``.

    This is the layout of :class:`firereg.evaluation.results.DisplacementFieldResult` (row-major
    field, :mod:`firereg.transforms.coords`). The channels are reordered to ``[y, x]``
    (channel i along array axis i) and passed to :func:`jacobian_determinant`.

    Args:
        field: ``(2, H, W)`` array or torch tensor, channel 0 = x displacement (along
            columns, array axis 1), channel 1 = y displacement (along rows, array axis 0),
            in pixels; or a ``DisplacementFieldResult``.

    Returns:
        float64 ``(H, W)`` array of ``det(I + grad u)`` (dimensionless).

    Raises:
        ValueError: if ``field`` is not ``(2, H, W)`` (the message quotes the shape) or a
            spatial axis has fewer than 2 samples.
        TypeError: if ``field`` is not numeric.
    """
    return jacobian_determinant(_xy_to_channel_first(field))


@dataclass(frozen=True)
class DeformationQuality:
    """Statistics of the Jacobian determinant over a field (or a mask of it).

    Attributes:
        jac_mean: mean determinant (dimensionless).
        jac_std: standard deviation of the determinant (population, ``ddof=0``).
        jac_min: smallest determinant.
        jac_max: largest determinant.
        folding_fraction: share in [0, 1] of pixels/voxels with determinant <= 0.
        n: number of pixels/voxels the statistics cover. When 0 (an empty mask) every
            other field is NaN.
    """

    jac_mean: float
    jac_std: float
    jac_min: float
    jac_max: float
    folding_fraction: float
    n: int


def _quality(det: np.ndarray, mask: Any) -> DeformationQuality:
    if mask is not None:
        m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if m.shape != det.shape:
            raise ValueError(f"mask shape {m.shape} must equal the field's spatial shape {det.shape}")
        values = det[m.astype(bool)]
    else:
        values = det.ravel()
    n = int(values.size)
    if n == 0:
        nan = float("nan")
        return DeformationQuality(nan, nan, nan, nan, nan, 0)
    return DeformationQuality(
        jac_mean=float(values.mean()),
        jac_std=float(values.std()),
        jac_min=float(values.min()),
        jac_max=float(values.max()),
        folding_fraction=float(np.count_nonzero(values <= 0) / n),
        n=n,
    )


def deformation_quality(
    ddf: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
    spacing: Spacing = None,
) -> DeformationQuality:
    """Jacobian-determinant statistics and folding fraction of a channel-first field.

    The determinant is computed on the whole field (so derivatives at the mask's edge use
    the neighbours outside it); only the statistics are restricted to ``mask``.

    Args:
        ddf: displacement field ``(D, *spatial)``, channel ``i`` along array axis ``i``;
            see :func:`jacobian_determinant`.
        mask: array of shape ``spatial``; nonzero/True marks the pixels/voxels to include
            (e.g. a fundus field of view). None means all.
        spacing: pixel/voxel size per spatial axis, in the units of the displacements;
            see :func:`jacobian_determinant`.

    Returns:
        :class:`DeformationQuality`; all NaN with ``n == 0`` if ``mask`` selects nothing.

    Raises:
        ValueError: on a bad ``ddf`` or ``spacing`` (see :func:`jacobian_determinant`), or
            if ``mask``'s shape differs from the spatial shape (both shapes are quoted).
    """
    return _quality(jacobian_determinant(ddf, spacing), mask)


def deformation_quality_xy(field: Any, mask: np.ndarray | torch.Tensor | None = None) -> DeformationQuality:
    """:func:`deformation_quality` for a row-major ``(2, H, W)`` ``[x, y]`` field, in pixels.

    Args:
        field: ``(2, H, W)`` array/tensor with channel 0 = x, channel 1 = y displacement, or a
            ``DisplacementFieldResult``; see :func:`jacobian_determinant_xy`.
        mask: ``(H, W)`` array, nonzero/True = include; None means all.

    Returns:
        :class:`DeformationQuality` over the fixed grid.

    Raises:
        ValueError: if ``field`` is not ``(2, H, W)`` or ``mask`` is not ``(H, W)``.
    """
    return _quality(jacobian_determinant_xy(field), mask)


def mapping_quality(result: Any, mask: np.ndarray | None = None, grid: int = 128) -> DeformationQuality:
    """Jacobian statistics of any registration result's fixed → moving map.

    Samples ``result.fixed_to_moving`` on a ``grid`` x ``grid`` lattice over the fixed image
    (so it serves matrices, fields and scaled results alike) and differentiates it there;
    folds finer than the lattice spacing are not seen.

    Args:
        result: an :class:`firereg.evaluation.results.RegistrationResult`.
        mask: (H, W) bool fixed field of view (row-major); statistics only inside it.
        grid: lattice points per side.

    Returns:
        :class:`DeformationQuality` of the map (determinant 1 = area preserved, <= 0 = folded).
    """
    h, w = result.fixed_shape
    ys = np.linspace(0, h - 1, grid)
    xs = np.linspace(0, w - 1, grid)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    mapped = np.asarray(result.fixed_to_moving(pts), dtype=np.float64)
    # displacement in lattice units, so the lattice is a unit-spaced grid
    step = np.array([xs[1] - xs[0], ys[1] - ys[0]])
    field = ((mapped - pts) / step).T.reshape(2, grid, grid)
    lattice_mask = None
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        lattice_mask = m[np.rint(yy).astype(int), np.rint(xx).astype(int)]
    return deformation_quality_xy(field, lattice_mask)
