"""Residual pairs: generated pairs whose moving image a keypoint stage has already aligned globally.

The hybrid method (:mod:`firereg.pipelines.inference.hybrid`) runs its deformable stage on the
pair that ``sift-quadratic`` has aligned with a quadratic map ``Q``: the network only has to
follow what ``Q`` leaves, the eye's non-polynomial residual (``e`` of
:mod:`firereg.transforms.fire_motions`, 1–3 px at 1024 px in A pairs) plus the error of the
fit. :func:`prealign_pair` makes such a pair from a generated one the way the hybrid does at
inference: it fits a quadratic to noisy "matches" of the true motion inside the overlap
(standing in for the keypoint stage and its error), and resamples the moving image with it
(``aligned(p) = moving(Q(p))`` on the fixed grid), so the moving control points become
``Q^-1(q)``.

Points are ``(x, y)`` pixels of the pair's images (:mod:`firereg.transforms.coords`); the
noise is in px of a 1024 px image and scales with the image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from firereg.transforms.global_models import (
    fit_model,
    invert_quadratic,
    min_jacobian_det,
)

if TYPE_CHECKING:  # fire_generator imports this module
    from firereg.transforms.fire_generator import GeneratedPair

__all__ = ["PrealignConfig", "prealign_pair"]

#: the image size the noise is stated at, px
NOISE_REFERENCE_SIZE = 1024


@dataclass(frozen=True)
class PrealignConfig:
    """How :func:`prealign_pair` stands in for the keypoint stage.

    Attributes:
        noise_px: std of each match's position error, px of a 1024 px image (per axis).
        matches: matches the quadratic is fitted to, drawn uniformly in the overlap.
        overlap_margin: matches lie within this share of both fields of view's radius.
    """

    noise_px: float = 1.0
    matches: int = 60
    overlap_margin: float = 0.9

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad setting."""
        if not np.isfinite(self.noise_px) or self.noise_px < 0:
            raise ValueError(f"prealign noise_px must be a finite number >= 0, got {self.noise_px!r}")
        if int(self.matches) < 12:
            raise ValueError(f"prealign matches must be at least 12 (a quadratic has 12 parameters), got {self.matches!r}")
        if not 0 < self.overlap_margin <= 1:
            raise ValueError(f"prealign overlap_margin must be in (0, 1], got {self.overlap_margin!r}")


def _overlap_points(pair: GeneratedPair, margin: float, step: int) -> np.ndarray:
    """Fixed-image grid points whose retina lies inside both fields of view (``margin`` of the radius)."""
    size = pair.fixed.shape[0]
    centre, radius = pair.motion.centre, pair.motion.fov_radius
    ys, xs = np.mgrid[step // 2 : size : step, step // 2 : size : step]
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    pts = pts[np.linalg.norm(pts - centre, axis=1) <= margin * radius]
    moved = pair.motion.fixed_to_moving(pts)
    return pts[np.linalg.norm(moved - centre, axis=1) <= margin * radius]


def prealign_pair(pair: GeneratedPair, rng: np.random.Generator, config: PrealignConfig | None = None) -> GeneratedPair:
    """The pair with its moving image resampled onto the fixed grid by a noisy quadratic fit ``Q``.

    ``Q`` (fixed → moving px) is the least-squares quadratic of ``config.matches`` overlap
    points and their true moving positions plus Gaussian noise; where it folds inside the
    overlap the homography of the same matches is used. The returned pair has ``moving =
    moving(Q(p))``, ``moving_points = Q^-1(moving_points)`` and ``changes["prealign"]`` (the
    model, its kind and the settings); its ``motion`` is still the raw pair's.

    Raises:
        RuntimeError: if the overlap holds fewer points than ``config.matches`` (a tiny overlap).
        ValueError: for a bad ``config``.
    """
    cfg = config or PrealignConfig()
    cfg.validate()
    size = pair.fixed.shape[0]
    candidates = _overlap_points(pair, cfg.overlap_margin, max(1, size // 128))
    if len(candidates) < cfg.matches:
        raise RuntimeError(f"pair {pair.name}: only {len(candidates)} overlap points for {cfg.matches} matches")
    src = candidates[rng.choice(len(candidates), int(cfg.matches), replace=False)]
    sigma = float(cfg.noise_px) * size / NOISE_REFERENCE_SIZE
    dst = pair.motion.fixed_to_moving(src) + rng.normal(0.0, sigma, src.shape)
    model = fit_model("quadratic", src, dst)
    if min_jacobian_det(model, candidates) <= 0:
        model = fit_model("homography", src, dst)
    map_x, map_y = model.sampling_grid(pair.fixed.shape[:2])
    aligned = cv2.remap(pair.moving, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if model.kind == "quadratic":
        moving_points = invert_quadratic(model, pair.moving_points)
    else:
        moving_points = model.inverse().apply(pair.moving_points)
    note = {"kind": model.kind, "params": np.asarray(model.params).tolist(), **dataclasses.asdict(cfg)}
    return dataclasses.replace(pair, moving=aligned, moving_points=moving_points,
                               changes={**pair.changes, "prealign": note})
