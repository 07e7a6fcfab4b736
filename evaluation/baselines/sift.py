"""SIFT + RANSAC homography (``sift``) and its quadratic refit (``sift-quadratic``): feature baselines.

SIFT keypoints on a uint8 image of the green channel (``representation``, one of
:data:`REPRESENTATIONS`; default the CLAHE-enhanced green channel) inside the eroded field of
view, Lowe ratio-test matching and a RANSAC homography. The match arrays are built as (fixed
point, moving point), so ``cv2.findHomography(fixed_pts, moving_pts)`` returns the matrix
that maps **fixed** ``(x, y, 1)`` to **moving** pixels, the direction of
:class:`MatrixResult`. OpenCV keypoints are ``(x, y)`` = (column, row), pixel centres at
integers, the project's point convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.filters import sato

from firereg.evaluation.baselines.quadratic import QuadraticRefit, refine_to_quadratic
from firereg.evaluation.results import MatrixResult, RegistrationResult
from firereg.transforms.channels import select_channel
from firereg.transforms.fov import field_of_view

__all__ = ["REPRESENTATIONS", "SiftMethod", "SiftQuadraticMethod", "check_representation", "keypoint_image",
           "sift_features"]

#: the images SIFT can look at (:attr:`SiftMethod.representation`), each from the green channel;
#: chosen by ``benchmarks/keypoint_inputs.py`` (``docs/keypoint_inputs.md``)
REPRESENTATIONS: dict[str, str] = {
    "green": "the green channel as it is",
    "clahe-green": "the CLAHE-enhanced green channel (equalised illumination)",
    "vesselness": "Sato tubeness of the dark vessels of the green channel (skimage.filters.sato)",
    "black-tophat": "morphological black top-hat of the CLAHE green channel (dark vessels bright)",
    "clahe+vesselness": "the mean of clahe-green and vesselness",
}


def check_representation(representation: str) -> None:
    """Raise ``ValueError`` naming ``representation`` if it is not a key of :data:`REPRESENTATIONS`."""
    if representation not in REPRESENTATIONS:
        raise ValueError(f"unknown SIFT input representation {representation!r}; "
                         f"valid ones: {', '.join(REPRESENTATIONS)}")


def _green_u8(image: np.ndarray) -> np.ndarray:
    """Green channel (:func:`select_channel`) as uint8: uint8 input unchanged, other input scaled to 0–255."""
    green = select_channel(image, "green")
    if np.asarray(image).dtype == np.uint8:
        return green.astype(np.uint8)
    hi = float(green.max()) if green.size else 0.0
    return np.clip(np.round(green * (255.0 / hi if hi > 1.0 else 255.0)), 0, 255).astype(np.uint8)


@dataclass
class SiftMethod:
    """SIFT keypoints + ratio-test matching + RANSAC homography.

    Lengths are pixels at a working size of ``reference_size`` (longest side) and scale
    with the image, so the method behaves alike at 512 or 768 px.

    Attributes:
        name: label used in tables.
    """

    name: str = "sift"
    #: Lengths below are in px of an image whose longest side is this many pixels.
    reference_size: int = 512
    #: what SIFT looks at, a key of :data:`REPRESENTATIONS`
    representation: str = "clahe-green"
    #: CLAHE clip limit on the green channel (equalises the uneven illumination so
    #: keypoints are found on vessels everywhere, not only near the optic disc).
    clahe_clip_limit: float = 2.0
    #: CLAHE tile grid (tiles per side).
    clahe_tiles: int = 8
    #: Gaussian scales of the ``vesselness`` filter, px (vessel half-widths).
    vessel_sigmas_px: tuple[float, ...] = (1.0, 2.0, 3.0)
    #: side of the disc of the ``black-tophat`` closing, px (wider than the widest vessel).
    tophat_px: float = 15.0
    #: Pixels eroded off the FOV mask so the high-contrast FOV rim gives no keypoints
    #: (rim keypoints match each other and pull the homography to identity).
    mask_erode_px: int = 10
    #: cv2.SIFT_create nfeatures (0 = all); the strongest N are kept per image.
    n_features: int = 4000
    #: SIFT contrast threshold (OpenCV default 0.04; lower finds more vessel corners
    #: on the low-contrast retina).
    contrast_threshold: float = 0.02
    #: Lowe's ratio test: best / second-best descriptor distance below this.
    ratio: float = 0.8
    #: RANSAC reprojection threshold, px.
    ransac_threshold_px: float = 4.0
    #: RANSAC iterations and confidence.
    ransac_max_iters: int = 10000
    ransac_confidence: float = 0.999
    #: Fewer ratio-test matches or RANSAC inliers than this → RuntimeError (failed pair).
    min_inliers: int = 8
    #: Seed of OpenCV's RNG (RANSAC sampling), for reproducible results.
    seed: int = 0

    def __post_init__(self) -> None:
        check_representation(self.representation)

    def _features(self, image: np.ndarray, mask: np.ndarray | None, scale: float):
        mask = field_of_view(image, mask, erode_px=int(round(self.mask_erode_px * scale)))
        img = keypoint_image(
            _green_u8(image), mask, self.representation, self.clahe_clip_limit, self.clahe_tiles,
            tuple(sigma * scale for sigma in self.vessel_sigmas_px), self.tophat_px * scale,
        )
        return sift_features(img, mask, self.n_features, self.contrast_threshold)

    def match(
        self,
        fixed: np.ndarray,
        moving: np.ndarray,
        fixed_mask: np.ndarray | None = None,
        moving_mask: np.ndarray | None = None,
    ) -> tuple[MatrixResult, np.ndarray, np.ndarray, np.ndarray]:
        """SIFT matches and their RANSAC homography (arguments as :meth:`register`).

        Returns:
            ``(result, fixed_points, moving_points, inliers)``: the homography result, the
            (N, 2) ratio-test matches as ``(x, y)`` pixels of each image and the (N,) bool
            RANSAC inlier mask.

        Raises:
            RuntimeError: as :meth:`register`.
        """
        fixed_shape = np.asarray(fixed).shape[:2]
        moving_shape = np.asarray(moving).shape[:2]
        scale = max(fixed_shape) / float(self.reference_size)
        try:
            kf, df = self._features(fixed, fixed_mask, scale)
            km, dm = self._features(moving, moving_mask, scale)
        except ValueError as exc:  # e.g. a blank image has no field of view
            raise RuntimeError(f"{self.name}: {exc}") from exc
        if len(kf) < 2 or len(km) < 2:
            raise RuntimeError(f"{self.name}: too few keypoints (fixed {len(kf)}, moving {len(km)})")

        matcher = cv2.BFMatcher(cv2.NORM_L2)
        pairs = matcher.knnMatch(df, dm, k=2)  # query = fixed, train = moving
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < self.ratio * p[1].distance]
        if len(good) < max(self.min_inliers, 4):
            raise RuntimeError(
                f"{self.name}: only {len(good)} ratio-test matches (need {max(self.min_inliers, 4)}; "
                f"keypoints fixed {len(kf)}, moving {len(km)})"
            )
        src = np.float32([kf[m.queryIdx].pt for m in good])  # fixed (x, y)
        dst = np.float32([km[m.trainIdx].pt for m in good])  # moving (x, y)

        cv2.setRNGSeed(int(self.seed))
        h, inliers = cv2.findHomography(
            src,
            dst,
            cv2.RANSAC,
            ransacReprojThreshold=float(self.ransac_threshold_px * scale),
            maxIters=int(self.ransac_max_iters),
            confidence=float(self.ransac_confidence),
        )
        n_in = int(inliers.sum()) if inliers is not None else 0
        if h is None or n_in < self.min_inliers:
            raise RuntimeError(f"{self.name}: only {n_in} RANSAC inliers of {len(good)} matches (need {self.min_inliers})")
        h = np.asarray(h, dtype=np.float64)
        det = float(np.linalg.det(h[:2, :2] / h[2, 2]))
        if not np.all(np.isfinite(h)) or not 0.1 < det < 10.0:
            raise RuntimeError(f"{self.name}: degenerate homography (det of linear part {det:.3g})")
        result = MatrixResult(h / h[2, 2], fixed_shape, moving_shape)
        result.n_matches = len(good)  # diagnostics for reports
        result.n_inliers = n_in
        return result, src.astype(np.float64), dst.astype(np.float64), inliers.ravel().astype(bool)

    def register(
        self,
        fixed: np.ndarray,
        moving: np.ndarray,
        fixed_mask: np.ndarray | None = None,
        moving_mask: np.ndarray | None = None,
    ) -> MatrixResult:
        """Register ``moving`` onto ``fixed`` with a SIFT/RANSAC homography.

        Args:
            fixed: (H, W, 3) RGB uint8 or (H, W) fixed image, row-major.
            moving: (H', W', 3) RGB uint8 or (H', W') moving image, row-major.
            fixed_mask: (H, W) bool field of view, or None to estimate it.
            moving_mask: (H', W') bool field of view, or None to estimate it.

        Returns:
            :class:`MatrixResult` whose matrix maps fixed to moving pixels.

        Raises:
            RuntimeError: naming the method, for a field of view that cannot be found, does not
                fit its image or is empty after erosion; too few keypoints, matches or
                inliers; or a degenerate homography.
        """
        return self.match(fixed, moving, fixed_mask, moving_mask)[0]


@dataclass
class SiftQuadraticMethod(SiftMethod):
    """SIFT + RANSAC homography, then a robust quadratic (12-parameter) refit on the matches.

    The matches within ``candidate_px`` of the homography are refitted with a quadratic
    (Huber IRLS, ridge towards the homography: :func:`firereg.evaluation.baselines.quadratic.refine_to_quadratic`).
    Where the quadratic would fold inside the fixed field of view, or too few matches
    remain, the homography is kept; the result's ``global_note`` says which and why.
    Lengths are pixels at ``reference_size`` and scale with the image, as in :class:`SiftMethod`.
    """

    name: str = "sift-quadratic"
    #: matches within this distance of the homography enter the quadratic refit, px
    candidate_px: float = 6.0
    #: Huber threshold of the quadratic IRLS fit, px
    huber_px: float = 1.0
    #: pull of the quadratic terms towards the homography (per match, normalised coordinates)
    ridge: float = 1e-4
    #: fewer candidate matches than this → keep the homography
    min_quadratic_points: int = 12

    def register(
        self,
        fixed: np.ndarray,
        moving: np.ndarray,
        fixed_mask: np.ndarray | None = None,
        moving_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """Register ``moving`` onto ``fixed``: homography, then quadratic (arguments as :meth:`SiftMethod.register`).

        Returns:
            :class:`~firereg.evaluation.baselines.quadratic.QuadraticResult`, or the homography's
            :class:`MatrixResult` where the quadratic is rejected (``global_note`` says why).

        Raises:
            RuntimeError: as :meth:`SiftMethod.register`.
        """
        homography, src, dst, _ = self.match(fixed, moving, fixed_mask, moving_mask)
        scale = max(homography.fixed_shape) / float(self.reference_size)
        refit = QuadraticRefit(
            candidate_px=self.candidate_px * scale, huber_px=self.huber_px * scale, ridge=self.ridge,
            min_points=self.min_quadratic_points, fold_step_px=max(1, int(round(8 * scale))),
        )
        fov = None
        if fixed_mask is not None and np.asarray(fixed_mask).shape == homography.fixed_shape:
            fov = np.asarray(fixed_mask, dtype=bool)
        return refine_to_quadratic(homography, src, dst, refit, fov)


def _stretch_u8(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``values`` scaled so that 0 → 0 and the 99.5th percentile inside ``mask`` → 255, as uint8; 0 outside."""
    values = np.maximum(values, 0)
    hi = float(np.percentile(values[mask], 99.5)) if mask.any() else 0.0
    out = np.clip(np.round(values * (255.0 / hi)), 0, 255) if hi > 0 else np.zeros_like(values)
    return np.where(mask, out, 0).astype(np.uint8)


def _fill_outside(green: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``green`` with the pixels outside ``mask`` set to the median inside, so the FOV rim is no ridge."""
    fill = np.median(green[mask]) if mask.any() else 0
    return np.where(mask, green, fill).astype(green.dtype)


def keypoint_image(
    green: np.ndarray,
    mask: np.ndarray,
    representation: str = "clahe-green",
    clahe_clip_limit: float = 2.0,
    clahe_tiles: int = 8,
    vessel_sigmas_px: tuple[float, ...] = (1.0, 2.0, 3.0),
    tophat_px: float = 15.0,
) -> np.ndarray:
    """The uint8 image SIFT looks at: ``representation`` (:data:`REPRESENTATIONS`) of a green channel.

    Args:
        green: (H, W) uint8 green channel, row-major.
        mask: (H, W) bool field of view (eroded); outside it the filtered representations are 0.
        representation: a key of :data:`REPRESENTATIONS`.
        clahe_clip_limit: CLAHE clip limit (``clahe-green``, ``black-tophat``, ``clahe+vesselness``; 0 = no CLAHE).
        clahe_tiles: CLAHE tiles per side.
        vessel_sigmas_px: Gaussian scales of the Sato filter, px of this image (``vesselness``).
        tophat_px: side of the top-hat's disc, px of this image (``black-tophat``).

    Returns:
        (H, W) uint8 image.

    Raises:
        ValueError: naming an unknown ``representation``.
    """
    check_representation(representation)
    if representation == "green":
        return np.asarray(green, dtype=np.uint8)
    clahe_green = green
    if clahe_clip_limit > 0:
        clahe = cv2.createCLAHE(clipLimit=float(clahe_clip_limit), tileGridSize=(int(clahe_tiles), int(clahe_tiles)))
        clahe_green = np.where(mask, clahe.apply(green), 0).astype(np.uint8)  # no CLAHE-amplified noise outside
    if representation == "clahe-green":
        return clahe_green
    if representation == "black-tophat":
        side = max(3, int(round(tophat_px)) | 1)
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        return _stretch_u8(cv2.morphologyEx(_fill_outside(clahe_green, mask), cv2.MORPH_BLACKHAT, disc), mask)
    filled = _fill_outside(green, mask).astype(np.float32) / 255.0
    vessels = _stretch_u8(sato(filled, sigmas=vessel_sigmas_px, black_ridges=True, mode="reflect"), mask)
    if representation == "vesselness":
        return vessels
    return ((clahe_green.astype(np.uint16) + vessels) // 2).astype(np.uint8)  # clahe+vesselness


def sift_features(
    image: np.ndarray,
    mask: np.ndarray,
    n_features: int = 4000,
    contrast_threshold: float = 0.02,
):
    """SIFT keypoints and descriptors of a uint8 image (:func:`keypoint_image`), inside ``mask``.

    Args:
        image: (H, W) uint8 image, row-major.
        mask: (H, W) bool; keypoints are only detected where True.
        n_features: keep the strongest N keypoints (0 = all).
        contrast_threshold: SIFT contrast threshold.

    Returns:
        ``(keypoints, descriptors)`` as ``cv2.SIFT.detectAndCompute`` gives them (keypoints as
        ``(x, y)`` pixels; descriptors ``None`` when there are no keypoints).
    """
    sift = cv2.SIFT_create(nfeatures=int(n_features), contrastThreshold=float(contrast_threshold))
    return sift.detectAndCompute(image, mask.astype(np.uint8) * 255)
