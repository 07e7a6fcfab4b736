"""A quadratic (12-parameter) global map as a registration result, and its refit from matches.

:class:`QuadraticResult` maps fixed → moving pixels with a
:class:`firereg.transforms.global_models.GlobalModel` of kind ``quadratic``; its inverse is
exact (Newton from the homography's inverse, :func:`~firereg.transforms.global_models.invert_quadratic`)
where the map does not fold inside the field of view. :func:`refine_to_quadratic` turns a
homography and its matches into a quadratic, or says why it keeps the homography.
Points are ``(x, y)`` full-resolution pixels (:mod:`firereg.transforms.coords`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firereg.evaluation.results import (
    MatrixResult,
    NotInvertibleError,
    RegistrationResult,
    check_points,
)
from firereg.transforms.global_models import (
    GlobalModel,
    RobustConfig,
    fit_robust,
    fov_points,
    invert_quadratic,
    min_jacobian_det,
)

__all__ = ["QuadraticResult", "QuadraticRefit", "refine_to_quadratic"]


class QuadraticResult(RegistrationResult):
    """A quadratic map fixed → moving (full-resolution pixels of the arrays registered).

    Args:
        model: the quadratic :class:`GlobalModel`.
        fixed_shape: ``(H, W)`` of the fixed image.
        moving_shape: ``(H, W)`` of the moving image.
        start: homography/affine approximation whose inverse starts the Newton inverse
            (None: the quadratic's linearisation).
        fixed_mask: (H, W) bool field of view of the fixed image (None: the inscribed ellipse),
            where the fold check looks.
        fold_step_px: spacing of the fold-check grid, pixels.

    Attributes:
        jac_min: the smallest Jacobian determinant over the FOV grid; ``invertible`` is
            ``jac_min > 0`` (no fold inside the FOV).
    """

    def __init__(
        self,
        model: GlobalModel,
        fixed_shape: tuple[int, int],
        moving_shape: tuple[int, int],
        start: GlobalModel | None = None,
        fixed_mask: np.ndarray | None = None,
        fold_step_px: int = 8,
    ) -> None:
        super().__init__(fixed_shape, moving_shape)
        if model.kind != "quadratic":
            raise ValueError(f"QuadraticResult needs a quadratic model, got {model.kind}")
        self.model, self.start = model, start
        self.jac_min = min_jacobian_det(model, fov_points(self.fixed_shape, fixed_mask, fold_step_px))
        self.invertible = bool(self.jac_min > 0)

    def fixed_to_moving(self, points: np.ndarray) -> np.ndarray:
        return self.model.apply(check_points(points))

    def moving_to_fixed(self, points: np.ndarray) -> np.ndarray:
        if not self.invertible:
            raise NotInvertibleError(
                f"quadratic map folds inside the field of view (min Jacobian determinant {self.jac_min:.3g})"
            )
        return invert_quadratic(self.model, check_points(points), self.start)

    def sampling_grid(self) -> tuple[np.ndarray, np.ndarray]:
        return self.model.sampling_grid(self.fixed_shape)


@dataclass
class QuadraticRefit:
    """Settings of :func:`refine_to_quadratic`; lengths in pixels of the images registered.

    Attributes:
        candidate_px: matches within this distance of the homography enter the refit (the
            curvature the homography leaves must fit inside it).
        huber_px: Huber threshold of the IRLS fit.
        ridge: pull of the quadratic terms towards the homography, measured at the field of
            view's radius (see :func:`firereg.transforms.global_models.fit_model`).
        min_points: fewer candidate matches → keep the homography.
        fold_step_px: fold-check grid spacing.
    """

    candidate_px: float = 8.0
    huber_px: float = 1.5
    ridge: float = 1e-4
    min_points: int = 12
    fold_step_px: int = 8


def refine_to_quadratic(
    homography: MatrixResult,
    fixed_points: np.ndarray,
    moving_points: np.ndarray,
    config: QuadraticRefit | None = None,
    fixed_mask: np.ndarray | None = None,
) -> RegistrationResult:
    """Refit a homography result as a quadratic on its matches (robust, Huber IRLS).

    Args:
        homography: the homography result (fixed → moving) the matches agree with.
        fixed_points: (N, 2) matched fixed ``(x, y)`` pixels.
        moving_points: (N, 2) matched moving pixels.
        config: settings (default :class:`QuadraticRefit`).
        fixed_mask: (H, W) bool FOV of the fixed image for the fold check (None: inscribed ellipse).

    Returns:
        A :class:`QuadraticResult`, or ``homography`` itself when there are too few matches or
        the quadratic folds inside the FOV; either way its ``global_note`` says which and why.
    """
    cfg = config or QuadraticRefit()
    src, dst = check_points(fixed_points), check_points(moving_points)
    prior = GlobalModel("homography", homography.matrix)
    near = np.linalg.norm(prior.apply(src) - dst, axis=1) < cfg.candidate_px
    if int(near.sum()) < cfg.min_points:
        homography.global_note = f"homography kept: {int(near.sum())} matches for the quadratic (need {cfg.min_points})"
        return homography
    # the ridge measures curvature at the FOV's radius (the disc of the mask's area, else half the larger side)
    radius = max(homography.fixed_shape) / 2.0
    if fixed_mask is not None and np.any(fixed_mask):
        radius = float(np.sqrt(np.count_nonzero(fixed_mask) / np.pi))
    robust = RobustConfig(method="huber", huber_px=cfg.huber_px, ridge=cfg.ridge, radius=radius)
    try:
        model, inliers = fit_robust("quadratic", src[near], dst[near], robust, prior=prior)
    except (ValueError, np.linalg.LinAlgError) as err:
        homography.global_note = f"homography kept: quadratic fit failed ({err})"
        return homography
    result = QuadraticResult(
        model, homography.fixed_shape, homography.moving_shape, prior, fixed_mask, cfg.fold_step_px
    )
    if not result.invertible:
        homography.global_note = (
            f"homography kept: the quadratic folds inside the field of view (min Jacobian det {result.jac_min:.3g})"
        )
        return homography
    result.global_note = f"quadratic on {int(inliers.sum())} of {int(near.sum())} matches"
    result.n_quadratic_points = int(near.sum())
    return result
