"""Landmark (control-point) registration error, in full-resolution pixels.

Points are ``(x, y)`` = (column, row) in pixels of the full-resolution image they belong
to, pixel centres at integers (see shared DESIGN.md and :mod:`firereg.evaluation.results`).

The FIRE literature (SuperRetina's ``test_on_FIRE.py``) measures the error of a pair in the
**fixed** image: moving control points are mapped to the fixed image and compared with the
fixed control points. That needs an invertible transform; a displacement field only maps
fixed points into the moving image, so for those the error is measured in the **moving**
image instead. Every :class:`PairError` records which direction it was measured in.

This module offers plain NumPy functions (:func:`point_distances`, :func:`pair_error`,
:func:`measure_pair`) and a MONAI cumulative metric (:class:`LandmarkErrorMetric`) for
batches of points in PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from firereg.evaluation.results import NotInvertibleError, RegistrationResult
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

__all__ = [
    "DIRECTIONS",
    "PairError",
    "point_distances",
    "pair_error",
    "measure_pair",
    "LandmarkErrorMetric",
]

#: ``"fixed"``: error measured in the fixed image (moving points mapped to fixed vs fixed
#: points); ``"moving"``: error measured in the moving image (fixed points mapped to moving
#: vs moving points).
DIRECTIONS = ("fixed", "moving")


def point_distances(mapped: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Euclidean distance between corresponding points.

    Args:
        mapped: (N, 2) ``(x, y)`` points after mapping, pixels.
        target: (N, 2) ``(x, y)`` reference points in the same image, pixels.

    Returns:
        (N,) float64 array of distances, pixels.

    Raises:
        ValueError: if ``mapped`` and ``target`` are not (N, 2) arrays of the same shape;
            the message quotes both shapes.
    """
    a = np.asarray(mapped, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or a.shape != b.shape:
        raise ValueError(
            f"mapped and target must both be (N, 2) arrays of (x, y) pixels, "
            f"got mapped {a.shape} and target {b.shape}"
        )
    return np.sqrt(np.sum((a - b) ** 2, axis=1))


@dataclass(frozen=True)
class PairError:
    """Landmark error of one image pair, full-resolution pixels.

    Attributes:
        mean: mean distance over the control points (the FIRE error of the pair), pixels.
        median: median distance, pixels.
        max: largest distance, pixels.
        n_points: number of control points.
        direction: ``"fixed"`` if measured in the fixed image (moving points mapped to the
            fixed image vs fixed points), ``"moving"`` if measured in the moving image
            (fixed points mapped to the moving image vs moving points).
    """

    mean: float
    median: float
    max: float
    n_points: int
    direction: str


def pair_error(mapped: np.ndarray, target: np.ndarray, direction: str) -> PairError:
    """Summarize the distances between mapped and target points of one pair.

    Args:
        mapped: (N, 2) ``(x, y)`` points after mapping, pixels.
        target: (N, 2) ``(x, y)`` reference points in the same image, pixels.
        direction: ``"fixed"`` or ``"moving"``, the image the error is measured in.

    Returns:
        The :class:`PairError` (mean, median, max distance in pixels, number of points).

    Raises:
        ValueError: if ``direction`` is not ``"fixed"`` or ``"moving"``, if the shapes do
            not match (see :func:`point_distances`), or if there are no points.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    d = point_distances(mapped, target)
    if d.size == 0:
        raise ValueError("cannot compute a landmark error from 0 points")
    return PairError(
        mean=float(np.mean(d)),
        median=float(np.median(d)),
        max=float(np.max(d)),
        n_points=int(d.size),
        direction=direction,
    )


def measure_pair(
    result: RegistrationResult, fixed_points: np.ndarray, moving_points: np.ndarray
) -> tuple[PairError, np.ndarray]:
    """Landmark error of one registration, in the fixed image when possible.

    If ``result.invertible``, the moving points are mapped with ``result.moving_to_fixed``
    and compared with the fixed points (direction ``"fixed"``, as the FIRE literature
    does). Otherwise, or if ``moving_to_fixed`` raises :class:`NotInvertibleError`, the fixed
    points are mapped with ``result.fixed_to_moving`` and compared with the moving points
    (direction ``"moving"``).

    Args:
        result: the registration of the moving image onto the fixed image.
        fixed_points: (N, 2) ``(x, y)`` control points in the full-resolution fixed image.
        moving_points: (N, 2) corresponding ``(x, y)`` control points in the full-resolution
            moving image.

    Returns:
        ``(error, mapped)``: the :class:`PairError` and the (N, 2) mapped points, in pixels
        of the image named by ``error.direction``.

    Raises:
        ValueError: if the point arrays are not (N, 2) arrays of the same shape, or empty.
    """
    fixed_pts = np.asarray(fixed_points, dtype=np.float64)
    moving_pts = np.asarray(moving_points, dtype=np.float64)
    if fixed_pts.ndim != 2 or fixed_pts.shape[1] != 2 or fixed_pts.shape != moving_pts.shape:
        raise ValueError(
            f"fixed_points and moving_points must both be (N, 2) arrays of (x, y) pixels, "
            f"got fixed_points {fixed_pts.shape} and moving_points {moving_pts.shape}"
        )
    if result.invertible:
        try:
            mapped = np.asarray(result.moving_to_fixed(moving_pts), dtype=np.float64)
        except NotInvertibleError:
            pass
        else:
            return pair_error(mapped, fixed_pts, "fixed"), mapped
    mapped = np.asarray(result.fixed_to_moving(fixed_pts), dtype=np.float64)
    return pair_error(mapped, moving_pts, "moving"), mapped


class LandmarkErrorMetric(CumulativeIterationMetric):
    """Mean landmark distance per pair, accumulated over iterations (a MONAI metric).

    Input ``y_pred`` holds the mapped points and ``y`` the target points, both as batch-first
    ``(B, N, 2)`` tensors of ``(x, y)`` pixels (or lists of ``(N, 2)`` tensors, which may
    differ in ``N``). Pairs with fewer points are padded with NaN rows in ``y``; a row whose
    target point has a NaN is padding and is ignored. A mapped point that is NaN at a real
    target point counts as an infinite distance (the method did not map it), so it can
    never improve a score. A pair with no real points gives NaN, which the reduction skips.

    Example::

        metric = LandmarkErrorMetric()
        for batch in loader:
            metric(y_pred=mapped_points, y=target_points)
        mean_error = metric.aggregate().item()   # pixels
        per_pair = metric.per_pair_errors()       # list of floats, pixels
        metric.reset()

    Args:
        reduction: MONAI reduction of the buffered ``(pairs, 1)`` errors, applied to non-NaN
            values: ``"none"``, ``"mean"``, ``"sum"``, ``"mean_batch"``, ``"sum_batch"``,
            ``"mean_channel"``, ``"sum_channel"``; default ``"mean"``.
        get_not_nans: if True, ``aggregate()`` returns ``(value, not_nans)``.
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__()
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """Mean distance per batch item.

        Args:
            y_pred: (B, N, 2) mapped ``(x, y)`` points, pixels.
            y: (B, N, 2) target ``(x, y)`` points, pixels; NaN rows are padding.

        Returns:
            (B, 1) float tensor of mean distances, pixels (NaN where a pair has no points).

        Raises:
            ValueError: if the inputs are not tensors, or not equal (B, N, 2) shapes; the
                message quotes both shapes.
        """
        if not isinstance(y_pred, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise ValueError(f"y_pred and y must be torch.Tensor, got {type(y_pred).__name__} and {type(y).__name__}")
        if y_pred.ndim != 3 or y_pred.shape[-1] != 2 or y_pred.shape != y.shape:
            raise ValueError(
                f"y_pred and y must both have shape (B, N, 2) as (x, y) pixels, "
                f"got y_pred {tuple(y_pred.shape)} and y {tuple(y.shape)}"
            )
        pred = y_pred.double()
        target = y.double()
        valid = ~torch.isnan(target).any(dim=-1)  # (B, N): real control points
        dist = torch.linalg.vector_norm(pred - target, dim=-1)  # (B, N)
        dist = torch.where(torch.isnan(dist) & valid, torch.full_like(dist, float("inf")), dist)
        dist = torch.where(valid, dist, torch.zeros_like(dist))
        count = valid.sum(dim=1).double()  # (B,)
        mean = torch.where(count > 0, dist.sum(dim=1) / count.clamp(min=1), torch.full_like(count, float("nan")))
        return mean.float().unsqueeze(1)

    def _buffer(self) -> torch.Tensor:
        data = self.get_buffer()
        if data is None or (isinstance(data, list) and len(data) == 0):
            raise ValueError("LandmarkErrorMetric has no data: call it on a batch before aggregate()")
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"the data to aggregate must be a torch.Tensor, got {type(data).__name__}")
        return data

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the mean errors of every pair seen since the last ``reset()``.

        Args:
            reduction: MONAI reduction mode, default ``self.reduction``; NaN values (pairs
                without points) are skipped.

        Returns:
            The reduced error in pixels (a tensor; ``(pairs, 1)`` for ``"none"``), or
            ``(value, not_nans)`` if ``get_not_nans``.

        Raises:
            ValueError: if nothing was accumulated, or the reduction is unknown.
        """
        value, not_nans = do_metric_reduction(self._buffer(), reduction or self.reduction)
        return (value, not_nans) if self.get_not_nans else value

    def per_pair_errors(self) -> list[float]:
        """The mean error of every pair seen since the last ``reset()``, in order, pixels.

        Raises:
            ValueError: if nothing was accumulated.
        """
        return [float(v) for v in self._buffer()[:, 0].tolist()]
