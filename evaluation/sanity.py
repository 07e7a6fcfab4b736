"""Honest failure: turn a registration that did not really happen into :class:`RegistrationFailed`.

A method can return a transform without having registered anything: elastix returns the
identity on a blank image, a network returns a folded field on a flat one. FIRE's protocol
counts a pair *failed* when the method produced no transform; these checks make such
non-answers failures, with a one-line reason, before anyone scores them. They run in one
place, :meth:`firereg.evaluation.results.ResizedMethod.register`, so every method on every
path (benchmark, validation, ``firereg register``) is judged alike.

Before registering (:func:`check_inputs`), each image must have usable content:

- finite pixel values, not *blank* (one value everywhere);
- a field of view (the mask given, else :func:`firereg.transforms.fov.field_of_view`'s
  estimate) covering at least :data:`MIN_FOV_SHARE` of the image;
- not *flat* inside it: some channel's standard deviation inside the field of view at least
  :data:`MIN_CONTENT_STD` grey levels (uint8 values as they are, floats with maximum <= 1
  times 255, other values as they are).

After registering (:func:`check_result`), on the fixed field of view and in the pixels of
the images the method was given (``(x, y)``, :mod:`firereg.transforms.coords`):

- every point maps to a finite position (and a dense field is finite everywhere);
- at most :data:`MAX_FOLDED_SHARE` of the field of view is folded (Jacobian determinant
  <= 0, :mod:`firereg.evaluation.deformation`);
- the mean Jacobian determinant (the area ratio) lies within ``1 / MAX_AREA_CHANGE`` ..
  ``MAX_AREA_CHANGE`` (not collapsed, not exploded);
- at least :data:`MIN_INSIDE_SHARE` of the field of view maps inside the moving image;
- the transform is not the identity (every point moves less than
  :data:`IDENTITY_TOLERANCE_PX`) while the images differ: the optimiser never moved. The
  identity is the right answer for identical images, and the identity baseline
  (``identity_by_design``) returns it on purpose.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from firereg.evaluation.deformation import deformation_quality_xy, mapping_quality
from firereg.transforms.fov import field_of_view

__all__ = [
    "RegistrationFailed",
    "MIN_FOV_SHARE",
    "MIN_CONTENT_STD",
    "MAX_FOLDED_SHARE",
    "MAX_AREA_CHANGE",
    "MIN_INSIDE_SHARE",
    "IDENTITY_TOLERANCE_PX",
    "images_identical",
    "check_inputs",
    "check_result",
    "check_settings",
]

#: Smallest share of an image its field of view may cover (FIRE's FOV covers ~70 %).
MIN_FOV_SHARE = 0.01
#: Smallest standard deviation, in 0-255 grey levels, of some channel inside the field of
#: view; below it the image is flat (a fundus photo's green channel has ~20-40; a flat
#: JPEG ~0.5).
MIN_CONTENT_STD = 1.0
#: Largest share of the fixed field of view that may be folded (Jacobian determinant <= 0).
#: Trained cascades fold 1-2 % of the field of view (at its rim) while their landmark
#: error stays near 1 px (cross-domain benchmark, issue #12); a map folding more than 5 %
#: is degenerate, not merely imperfect.
MAX_FOLDED_SHARE = 0.05
#: Largest factor by which the transform may change area on average over the field of view
#: (FIRE pairs differ in scale by < 1.5x, i.e. < 2.3x in area).
MAX_AREA_CHANGE = 10.0
#: Smallest share of the fixed field of view that must map inside the moving image.
MIN_INSIDE_SHARE = 0.05
#: A transform moving every field-of-view point by less than this (px of the images the
#: method was given) is the identity.
IDENTITY_TOLERANCE_PX = 1e-3
#: Lattice points per side on which a transform is sampled.
GRID = 128


def check_settings() -> dict[str, float]:
    """The thresholds above by name: part of every benchmark record's fingerprint, so a record
    judged under other limits is never reused (:mod:`firereg.evaluation.fingerprints`)."""
    return {
        "MIN_FOV_SHARE": MIN_FOV_SHARE, "MIN_CONTENT_STD": MIN_CONTENT_STD, "MAX_FOLDED_SHARE": MAX_FOLDED_SHARE,
        "MAX_AREA_CHANGE": MAX_AREA_CHANGE, "MIN_INSIDE_SHARE": MIN_INSIDE_SHARE,
        "IDENTITY_TOLERANCE_PX": IDENTITY_TOLERANCE_PX, "GRID": GRID,
    }


class RegistrationFailed(RuntimeError):
    """The method produced no real registration; the message is the one-line reason."""


def images_identical(fixed: np.ndarray, moving: np.ndarray) -> bool:
    """Whether two images are pixel for pixel the same (same shape, same values)."""
    a, b = np.asarray(fixed), np.asarray(moving)
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _content_std(image: np.ndarray, fov: np.ndarray, hi: float) -> float:
    """Largest per-channel standard deviation inside ``fov``, in 0-255 grey levels.

    uint8 values are grey levels; bool and float images whose maximum ``hi`` is <= 1 are
    scaled by 255; other values are taken as they are.
    """
    arr = np.asarray(image)
    if arr.dtype not in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64):
        arr = arr.astype(np.float32)
    if arr.ndim == 3 and arr.shape[2] > 4:  # OpenCV takes at most 4 channels
        arr = arr.reshape(-1, arr.shape[2])[fov.ravel()]
        std = float(arr.std(axis=0).max())
    else:
        std = float(cv2.meanStdDev(np.ascontiguousarray(arr), mask=fov.astype(np.uint8))[1].max())
    scaled = np.asarray(image).dtype == bool or (np.issubdtype(arr.dtype, np.floating) and hi <= 1.0)
    return std * 255.0 if scaled else std


def _check_one(image: np.ndarray, mask: np.ndarray | None, role: str) -> np.ndarray:
    """Content check of one image; returns its (H, W) bool field of view. ``role``: "fixed"/"moving"."""
    arr = np.asarray(image)
    if arr.size == 0:
        raise RegistrationFailed(f"{role} image is empty (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise RegistrationFailed(f"{role} image is not numeric (dtype {arr.dtype})")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise RegistrationFailed(f"{role} image has non-finite pixel values (NaN or infinity)")
    lo, hi = arr.min(), arr.max()
    if lo == hi:
        raise RegistrationFailed(f"{role} image is blank (every pixel is {lo.item():g})")
    try:
        fov = field_of_view(arr, mask)
    except ValueError as exc:  # an empty mask, or no pixel bright enough to find one
        if mask is not None and np.asarray(mask).shape == arr.shape[:2]:
            raise RegistrationFailed(f"{role} image is all masked: its field-of-view mask is empty") from exc
        raise  # a mask of the wrong shape is the caller's error, not a failed registration
    share = float(fov.mean())
    if share < MIN_FOV_SHARE:
        raise RegistrationFailed(
            f"{role} image's field of view covers {100 * share:.2g} % of it (need >= {100 * MIN_FOV_SHARE:g} %)"
        )
    std = _content_std(arr, fov, float(hi))
    if std < MIN_CONTENT_STD:
        raise RegistrationFailed(
            f"{role} image is flat inside the field of view "
            f"(intensity std {std:.2f} grey levels, need >= {MIN_CONTENT_STD:g})"
        )
    return fov


def check_inputs(
    fixed: np.ndarray,
    moving: np.ndarray,
    fixed_mask: np.ndarray | None = None,
    moving_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Check that both images have usable content before registering them.

    Args:
        fixed: (H, W[, C]) fixed image, row-major.
        moving: (H', W'[, C]) moving image, row-major.
        fixed_mask: (H, W) field of view of ``fixed`` (non-zero inside), or None to estimate it.
        moving_mask: (H', W') field of view of ``moving``, or None to estimate it.

    Returns:
        The fixed image's (H, W) bool field of view (for :func:`check_result`).

    Raises:
        RegistrationFailed: naming the image and the problem: empty, non-finite, blank, all
            masked, a field of view under :data:`MIN_FOV_SHARE`, or flat inside it.
        ValueError: if a mask's shape differs from its image's (both quoted).
    """
    fov = _check_one(fixed, fixed_mask, "fixed")
    _check_one(moving, moving_mask, "moving")
    return fov


def _innermost(result: Any) -> Any:
    """The result inside every :class:`~firereg.evaluation.results.ScaledResult` layer."""
    from firereg.evaluation.results import ScaledResult  # results imports this module

    while isinstance(result, ScaledResult):
        result = result.inner
    return result


def _dense_field(result: Any) -> np.ndarray | None:
    """The (2, h, w) field of ``result``'s innermost :class:`DisplacementFieldResult`, or None."""
    from firereg.evaluation.results import DisplacementFieldResult

    inner = _innermost(result)
    return inner.field if isinstance(inner, DisplacementFieldResult) else None


def _folding(result: Any, fov: np.ndarray) -> tuple[float, float]:
    """``(folded share, mean Jacobian determinant)`` of ``result`` over the fixed field of view.

    A dense field innermost (a network's or elastix's) is differentiated on its own grid with
    the field of view resized onto it (nearest); any other transform is sampled on a
    :data:`GRID` lattice (:func:`firereg.evaluation.deformation.mapping_quality`).
    """
    field = _dense_field(result)
    if field is not None and min(field.shape[1:]) >= 2:
        h, w = field.shape[1:]
        grid_fov = cv2.resize(fov.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        quality = deformation_quality_xy(field, grid_fov if grid_fov.any() else None)
    else:
        quality = mapping_quality(result, fov, grid=GRID)
    return quality.folding_fraction, quality.jac_mean


def check_result(result: Any, fixed_fov: np.ndarray, identical: bool, identity_expected: bool = False) -> None:
    """Check that a registration result is a real, usable transform.

    Args:
        result: a :class:`firereg.evaluation.results.RegistrationResult`, in the pixels of the
            images the method was given.
        fixed_fov: (H, W) bool field of view of the fixed image (:func:`check_inputs`).
        identical: whether the two images were identical (:func:`images_identical`); then the
            identity is the right answer.
        identity_expected: the method returns the identity on purpose (the identity baseline).

    Raises:
        RegistrationFailed: with the reason: non-finite, folded over more than
            :data:`MAX_FOLDED_SHARE` of the field of view, an area change beyond
            :data:`MAX_AREA_CHANGE`, under :data:`MIN_INSIDE_SHARE` of the field of view
            inside the moving image, or the identity on images that differ.
    """
    fov = np.asarray(fixed_fov, dtype=bool)
    h, w = result.fixed_shape
    yy, xx = np.meshgrid(np.linspace(0, h - 1, GRID), np.linspace(0, w - 1, GRID), indexing="ij")
    keep = fov[np.rint(yy).astype(int), np.rint(xx).astype(int)]
    pts = np.stack([xx[keep], yy[keep]], axis=1)
    if len(pts) == 0:  # a field of view smaller than the lattice spacing: its own pixels
        rows, cols = np.nonzero(fov)
        pts = np.stack([cols, rows], axis=1).astype(np.float64)
    mapped = np.asarray(result.fixed_to_moving(pts), dtype=np.float64)
    bad = ~np.all(np.isfinite(mapped), axis=1)
    field = _dense_field(result)
    if bad.any() or (field is not None and not np.all(np.isfinite(field))):
        raise RegistrationFailed(
            f"non-finite transform: {int(bad.sum())} of {len(pts)} field-of-view points map to NaN or infinity"
            + ("" if bad.any() else " (the displacement field has non-finite values)")
        )
    folded, jac_mean = _folding(result, fov)
    if folded > MAX_FOLDED_SHARE:
        raise RegistrationFailed(
            f"folded transform: {100 * folded:.1f} % of the field of view has Jacobian determinant <= 0 "
            f"(limit {100 * MAX_FOLDED_SHARE:g} %)"
        )
    if not 1.0 / MAX_AREA_CHANGE <= jac_mean <= MAX_AREA_CHANGE:
        raise RegistrationFailed(
            f"degenerate transform: it changes area by {jac_mean:.3g}x on average over the field of view "
            f"(limit {1 / MAX_AREA_CHANGE:g}x to {MAX_AREA_CHANGE:g}x)"
        )
    mh, mw = result.moving_shape
    inside = (mapped[:, 0] >= -0.5) & (mapped[:, 0] <= mw - 0.5) & (mapped[:, 1] >= -0.5) & (mapped[:, 1] <= mh - 0.5)
    if inside.mean() < MIN_INSIDE_SHARE:
        raise RegistrationFailed(
            f"degenerate transform: only {100 * inside.mean():.1f} % of the field of view maps inside the moving "
            f"image (need >= {100 * MIN_INSIDE_SHARE:g} %)"
        )
    moved = float(np.max(np.linalg.norm(mapped - pts, axis=1)))
    if moved < IDENTITY_TOLERANCE_PX and not identical and not identity_expected:
        raise RegistrationFailed(
            f"the method returned the identity (no point moved more than {moved:.2g} px) although the images "
            "differ: the optimiser never moved"
        )
