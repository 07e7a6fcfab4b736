"""Landmark (control-point) registration error, in full-resolution pixels.

Points are ``(x, y)`` full-resolution pixels (:mod:`firereg.transforms.coords`).

The FIRE literature (SuperRetina's ``test_on_FIRE.py``) measures the error of a pair in the
**fixed** image: moving control points are mapped to the fixed image and compared with the
fixed control points. That needs an invertible transform; a displacement field only maps
fixed points into the moving image, so for those the error is measured in the **moving**
image instead. Every :class:`PairError` records which direction it was measured in.

The benchmark (:func:`firereg.evaluation.benchmark.score_pair`) scores every method with
:func:`measure_pair`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firereg.evaluation.results import NotInvertibleError, RegistrationResult

__all__ = [
    "DIRECTIONS",
    "PairError",
    "point_distances",
    "pair_error",
    "measure_pair",
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
