"""ITK-elastix baselines: rigid, affine and affine + B-spline, tuned for fundus photographs.

elastix optimises a transform ``T`` from the **fixed** to the **moving** image, the
direction of :meth:`RegistrationResult.fixed_to_moving` and of every field in firereg
(:mod:`firereg.transforms.coords`). Images are handed to elastix row-major (ITK's
``GetArrayFromImage`` layout) with spacing 1, origin 0 and identity direction, so an ITK
physical point is the project's ``(x, y)`` pixel and the transform parameters are in pixels:

- ``EulerTransform`` (2D), parameters ``[angle, tx, ty]``, centre ``c``:
  ``T(p) = R(angle) (p - c) + c + t``;
- ``AffineTransform``, parameters ``[a11 a12 a21 a22 tx ty]``, centre ``c``:
  ``T(p) = A (p - c) + c + t``.

Rigid and affine results are therefore exact 3×3 matrices (:class:`MatrixResult`); the
B-spline result is transformix's deformation field ``T(p) - p`` on the fixed grid
(:class:`DisplacementFieldResult`).

``itk`` is imported lazily so that importing this module (or the registry) stays cheap;
the first registration in a process pays ~10 s while itk loads its elastix wrappers.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from firereg.evaluation.results import (
    DisplacementFieldResult,
    MatrixResult,
    RegistrationResult,
)
from firereg.transforms.channels import select_channel
from firereg.transforms.fov import field_of_view

__all__ = [
    "ElastixMethod",
    "elastix_rigid",
    "elastix_affine",
    "elastix_bspline",
    "matrix_from_parameter_map",
    "available_threads",
]

TransformKind = Literal["rigid", "affine", "bspline"]


def available_threads() -> int:
    """Number of CPU cores this process may use (``sched_getaffinity`` where available)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def matrix_from_parameter_map(parameter_map: Any) -> np.ndarray:
    """3×3 fixed → moving matrix (pixels) of an elastix Euler/Similarity/Affine 2D parameter map.

    Assumes the images had spacing 1, origin 0 and identity direction (how this module
    builds them), so ITK physical points are ``(x, y)`` pixels.

    Args:
        parameter_map: a mapping as returned by ``ParameterObject.GetParameterMap(i)``
            (values are sequences of strings).

    Returns:
        (3, 3) float64 matrix ``M`` with ``moving = M @ (x, y, 1)``.

    Raises:
        ValueError: for a transform that is not a 2D Euler, Similarity or Affine transform.
    """
    kind = str(parameter_map["Transform"][0])
    params = np.array([float(v) for v in parameter_map["TransformParameters"]], dtype=np.float64)
    centre = np.array([float(v) for v in parameter_map["CenterOfRotationPoint"]], dtype=np.float64)
    if centre.shape != (2,):
        raise ValueError(f"expected a 2D transform, got centre of rotation {centre.tolist()}")
    if kind == "EulerTransform" and params.shape == (3,):
        angle, t = params[0], params[1:3]
        c, s = np.cos(angle), np.sin(angle)
        a = np.array([[c, -s], [s, c]])
    elif kind == "SimilarityTransform" and params.shape == (4,):
        scale, angle, t = params[0], params[1], params[2:4]
        c, s = np.cos(angle), np.sin(angle)
        a = scale * np.array([[c, -s], [s, c]])
    elif kind == "AffineTransform" and params.shape == (6,):
        a, t = params[:4].reshape(2, 2), params[4:6]
    else:
        raise ValueError(f"cannot build a matrix from {kind} with {params.size} parameters")
    m = np.eye(3)
    m[:2, :2] = a
    m[:2, 2] = centre + t - a @ centre  # T(p) = A (p - c) + c + t
    return m


@dataclass
class ElastixMethod:
    """elastix (ITK-elastix) registration of fundus photographs.

    Every setting that differs from elastix's defaults is here, with the reason. Values
    were chosen at working sizes of 384–768 px (the benchmark's ``ResizedMethod``);
    lengths in pixels scale with the working size where noted.

    Attributes:
        transform: ``"rigid"`` (Euler), ``"affine"``, or ``"bspline"`` (affine stage, then a
            B-spline stage initialised from it, both in one elastix run).
        name: label used in tables; defaults to ``"elastix-<transform>"``.
    """

    transform: TransformKind = "affine"
    name: str = ""

    # --- input ---------------------------------------------------------------------------
    #: Every length below (``*_px``) is in pixels of an image whose longest side is
    #: ``reference_size``; it is scaled by ``longest side / reference_size`` so the same
    #: method behaves alike at 512 or 768 px working size.
    reference_size: int = 512
    #: Pixels eroded off each FOV mask (fixed and moving) so the bright/dark FOV rim and the
    #: JPEG halo around it never enter the metric; without masks elastix aligns the
    #: circular border and stops near identity.
    mask_erode_px: int = 6
    #: Gaussian sigma (px) of a background estimate subtracted from the green channel
    #: (0 = off). Flattens the slow illumination gradient (vignetting, exposure) that
    #: differs between two photos, leaving vessels and optic disc; normalised convolution
    #: inside the mask, so the black border does not bleed in. Measured on 32 synthetic
    #: pairs (retina, ±25°, ±12 % scale, ±100 px shift, gamma + gain gradient + noise,
    #: 512 px): NCC succeeded (<2 px) on 20/32 without it, 26/32 at 32 px, 31/32 at
    #: 64 px, 32/32 at 96 px; small sigmas remove the large structures that give the
    #: coarse levels their capture range. 64 px keeps more of the real, radial vignetting
    #: out than 96 px; retune on FIRE-like data.
    flatten_sigma_px: float = 64.0

    # --- metric / sampling ---------------------------------------------------------------
    #: "AdvancedNormalizedCorrelation" or "AdvancedMattesMutualInformation". NCC chosen:
    #: after flattening, the two green channels are close to linearly related (MI's
    #: strength, non-linear intensity relations, buys little), NCC's cost is smoother
    #: at coarse levels (affine success on the 32 pairs above: NCC 31/32, MI 30/32 even at
    #: its best flattening, 96 px) and it is ~1.7× faster. Sub-pixel accuracy is alike
    #: (median 0.03 px); B-spline stage: MI 0.16 px vs NCC 0.19 px mean error.
    metric: str = "AdvancedNormalizedCorrelation"
    #: Histogram bins of Mattes MI (elastix default 32; unused by NCC).
    number_of_histogram_bins: int = 32
    #: Random samples per iteration; twice elastix's 2048 because vessels cover only
    #: ~10 % of the FOV (measured: 2048 → 30/32 pairs and 0.047 px median error; 4096 →
    #: 31/32 and 0.032 px, +20 % time).
    number_of_spatial_samples: int = 4096
    #: "RandomCoordinate" (off-grid samples, smoother cost; "Random" gave the same
    #: success, slightly worse accuracy). With masks, CheckNumberOfSamples must be false:
    #: samples outside the mask are dropped, so fewer than requested remain.
    image_sampler: str = "RandomCoordinate"
    #: Fresh samples every iteration (required for the stochastic optimiser to converge).
    new_samples_every_iteration: bool = True

    # --- pyramid / optimiser -------------------------------------------------------------
    #: Gaussian smoothing pyramid levels (elastix's schedule 8, 4, 2, 1); 4 captures
    #: shifts of ~100 px at 512 px; 5 was no better with 64 px flattening (16/16 both).
    number_of_resolutions: int = 4
    #: AdaptiveStochasticGradientDescent iterations per level for the linear stage
    #: (250 lost 2 of the 32 pairs above; 400 ≈ 1.5 s at 512 px).
    linear_iterations: int = 400
    #: Iterations per level for the B-spline stage (400 was no more accurate).
    bspline_iterations: int = 250
    #: ``AutomaticTransformInitialization`` method for the linear stage: "" (off: the
    #: centre of rotation stays at pixel (0, 0), a corner, which couples rotation and
    #: translation badly: 5/16 pairs), "GeometricalCenter" (centre of rotation at the
    #: image centre, no initial shift: 16/16), or "CenterOfGravity" (shifts by the
    #: difference of the intensity centroids: meaningless on flattened, zero-mean images
    #: and biased by the black border and uneven illumination otherwise: 0/16).
    initialization: str = "GeometricalCenter"
    #: "AutomaticScalesEstimation" balances rotation/matrix against translation
    #: parameters (needed since translations are in px and angles in radians).
    automatic_scales_estimation: bool = True

    # --- B-spline ------------------------------------------------------------------------
    #: Final control-point spacing, px (elastix's default 10 px is far too fine for the
    #: smooth deformation between fundus photos). On a smooth synthetic ±6 px warp over
    #: the affine: mean error 48 px → 0.16, 64 → 0.19, 96 → 0.41, 128 → 0.63 px; 64 px
    #: keeps it well constrained where vessels are sparse.
    final_grid_spacing_px: float = 64.0
    #: Multipliers of the final spacing per level, coarse → fine (256, 128, 64, 64 px).
    grid_spacing_schedule: tuple[float, ...] = (4.0, 2.0, 1.0, 1.0)
    #: Weight of TransformBendingEnergyPenalty relative to the metric (0 = off). Off:
    #: the coarse grid already regularises, 0.05 changed nothing measurable, and the
    #: penalty segfaults multi-threaded in itk-elastix 0.25.4, so when > 0 elastix runs
    #: single-threaded (2× slower).
    bending_energy_weight: float = 0.0

    # --- execution -----------------------------------------------------------------------
    #: elastix threads; default: every core this process may use (2 here).
    number_of_threads: int = field(default_factory=available_threads)
    #: Seed of elastix's random sampler, for reproducible results.
    random_seed: int = 121212
    #: Print elastix's log (off: it is long and the benchmark runs hundreds of pairs).
    log_to_console: bool = False

    def __post_init__(self) -> None:
        if self.transform not in ("rigid", "affine", "bspline"):
            raise ValueError(f"transform must be 'rigid', 'affine' or 'bspline', got {self.transform!r}")
        if not self.name:
            self.name = f"elastix-{self.transform}"

    # ------------------------------------------------------------------------------------
    def _common_map(self) -> dict[str, list[str]]:
        levels = self.number_of_resolutions
        return {
            "Registration": ["MultiResolutionRegistration"],
            "FixedImagePyramid": ["FixedSmoothingImagePyramid"],
            "MovingImagePyramid": ["MovingSmoothingImagePyramid"],
            "NumberOfResolutions": [str(levels)],
            "Metric": [self.metric],
            "NumberOfHistogramBins": [str(self.number_of_histogram_bins)],
            "ImageSampler": [self.image_sampler],
            "NumberOfSpatialSamples": [str(self.number_of_spatial_samples)],
            "NewSamplesEveryIteration": ["true" if self.new_samples_every_iteration else "false"],
            "CheckNumberOfSamples": ["false"],
            "MaximumNumberOfSamplingAttempts": ["8"],
            "RandomSeed": [str(self.random_seed)],
            "Interpolator": ["LinearInterpolator"],
            "Optimizer": ["AdaptiveStochasticGradientDescent"],
            "AutomaticParameterEstimation": ["true"],
            "ResampleInterpolator": ["FinalLinearInterpolator"],
            "Resampler": ["DefaultResampler"],
            "DefaultPixelValue": ["0"],
            "WriteResultImage": ["false"],
            "WriteIterationInfo": ["false"],
            "ErodeMask": ["false"],  # masks are eroded here; elastix's per-level erosion off
            "HowToCombineTransforms": ["Compose"],
        }

    def _linear_map(self, kind: str) -> dict[str, list[str]]:
        pm = self._common_map()
        pm["Transform"] = ["EulerTransform" if kind == "rigid" else "AffineTransform"]
        pm["MaximumNumberOfIterations"] = [str(self.linear_iterations)]
        pm["AutomaticScalesEstimation"] = ["true" if self.automatic_scales_estimation else "false"]
        if self.initialization:
            pm["AutomaticTransformInitialization"] = ["true"]
            pm["AutomaticTransformInitializationMethod"] = [self.initialization]
        else:
            pm["AutomaticTransformInitialization"] = ["false"]
        return pm

    def _bspline_map(self, scale: float = 1.0) -> dict[str, list[str]]:
        pm = self._common_map()
        pm["Transform"] = ["BSplineTransform"]
        pm["MaximumNumberOfIterations"] = [str(self.bspline_iterations)]
        pm["FinalGridSpacingInPhysicalUnits"] = [f"{self.final_grid_spacing_px * scale:g}"]
        schedule = list(self.grid_spacing_schedule)[: self.number_of_resolutions]
        schedule += [schedule[-1] if schedule else 1.0] * (self.number_of_resolutions - len(schedule))
        pm["GridSpacingSchedule"] = [f"{s:g}" for s in schedule]
        if self.bending_energy_weight > 0:
            pm["Registration"] = ["MultiMetricMultiResolutionRegistration"]
            pm["Metric"] = [self.metric, "TransformBendingEnergyPenalty"]
            pm["Metric0Weight"] = ["1.0"]
            pm["Metric1Weight"] = [f"{self.bending_energy_weight:g}"]
        return pm

    def parameter_maps(self, scale: float = 1.0) -> list[dict[str, list[str]]]:
        """The elastix parameter maps this method runs, in order.

        Args:
            scale: longest image side / ``reference_size`` (scales the B-spline spacing).
        """
        if self.transform == "rigid":
            return [self._linear_map("rigid")]
        if self.transform == "affine":
            return [self._linear_map("affine")]
        return [self._linear_map("affine"), self._bspline_map(scale)]

    def _preprocess(self, image: np.ndarray, mask: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Green channel, float32, background-flattened inside ``mask`` (0 outside)."""
        g = select_channel(image, "green")
        sigma = self.flatten_sigma_px * scale
        if sigma > 0:
            w = mask.astype(np.float32)
            num = ndimage.gaussian_filter(g * w, sigma)
            den = ndimage.gaussian_filter(w, sigma)
            g = np.where(mask, g - num / np.maximum(den, 1e-3), 0.0).astype(np.float32)
        return g

    # ------------------------------------------------------------------------------------
    def register(
        self,
        fixed: np.ndarray,
        moving: np.ndarray,
        fixed_mask: np.ndarray | None = None,
        moving_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """Register ``moving`` onto ``fixed`` with elastix.

        Args:
            fixed: (H, W, 3) RGB uint8 or (H, W) fixed image, row-major.
            moving: (H', W', 3) RGB uint8 or (H', W') moving image, row-major.
            fixed_mask: (H, W) bool field of view, or None to estimate it.
            moving_mask: (H', W') bool field of view, or None to estimate it.

        Returns:
            :class:`MatrixResult` (rigid, affine) or :class:`DisplacementFieldResult`
            (bspline), in the pixels of the arrays given.

        Raises:
            RuntimeError: naming the method, if a field of view cannot be found, does not
                fit its image or is empty after erosion, or if elastix fails (message says
                why); the benchmark records a failed pair.
        """
        fixed_shape = np.asarray(fixed).shape[:2]
        moving_shape = np.asarray(moving).shape[:2]
        scale = max(fixed_shape) / float(self.reference_size)
        erode = int(round(self.mask_erode_px * scale))
        try:
            fmask = field_of_view(fixed, fixed_mask, erode)
            mmask = field_of_view(moving, moving_mask, erode)
        except ValueError as exc:  # e.g. a blank image, or a mask eroded away
            raise RuntimeError(f"{self.name}: {exc}") from exc

        import itk  # lazy: importing itk takes seconds

        # Images and masks that OWN their memory (image_from_array copies); views of
        # temporaries silently hand elastix freed memory. Keep every reference until the end.
        f_img = itk.image_from_array(np.ascontiguousarray(self._preprocess(fixed, fmask, scale)))
        m_img = itk.image_from_array(np.ascontiguousarray(self._preprocess(moving, mmask, scale)))
        f_msk = itk.image_from_array(np.ascontiguousarray(fmask.astype(np.uint8)))
        m_msk = itk.image_from_array(np.ascontiguousarray(mmask.astype(np.uint8)))

        # TransformBendingEnergyPenalty segfaults multi-threaded in itk-elastix 0.25.4
        # (during ASGD's gradient sampling); it runs single-threaded.
        threads = 1 if (self.transform == "bspline" and self.bending_energy_weight > 0) else int(self.number_of_threads)

        parameter_object = itk.ParameterObject.New()
        for pm in self.parameter_maps(scale):
            parameter_object.AddParameterMap(pm)

        # elastix's exceptions only say "see the log": log to a temporary file (cheap) and
        # quote the log's error line when it fails.
        with tempfile.TemporaryDirectory(prefix="firereg-elastix-") as log_dir:
            try:
                _, result_parameters = itk.elastix_registration_method(
                    f_img,
                    m_img,
                    parameter_object=parameter_object,
                    fixed_mask=f_msk,
                    moving_mask=m_msk,
                    number_of_threads=threads,
                    log_to_console=bool(self.log_to_console),
                    log_to_file=True,
                    output_directory=log_dir,
                    log_file_name="elastix.log",
                )
            except Exception as exc:  # elastix raises RuntimeError with a long ITK trace
                reason = _reason_from_log(os.path.join(log_dir, "elastix.log")) or _short_reason(exc)
                raise RuntimeError(f"{self.name}: elastix failed: {reason}") from exc

        if self.transform in ("rigid", "affine"):
            n = result_parameters.GetNumberOfParameterMaps()
            matrix = np.eye(3)
            for i in range(n):  # composed: T = T_last ∘ … ∘ T_first
                matrix = matrix_from_parameter_map(result_parameters.GetParameterMap(i)) @ matrix
            if not np.all(np.isfinite(matrix)):
                raise RuntimeError(f"{self.name}: elastix returned a non-finite transform")
            return MatrixResult(matrix, fixed_shape, moving_shape)

        return self._deformation_field(m_img, result_parameters, fixed_shape, moving_shape)

    def _deformation_field(
        self, m_img: Any, result_parameters: Any, fixed_shape: tuple[int, int], moving_shape: tuple[int, int]
    ) -> DisplacementFieldResult:
        """transformix's deformation field ``T(p) - p`` of an elastix result, on the fixed grid.

        Raises:
            RuntimeError: if transformix fails or its field has the wrong shape or non-finite values.
        """
        import itk  # already loaded by register

        # transformix writes deformationField.* into its output directory (default: the cwd)
        with tempfile.TemporaryDirectory(prefix="firereg-transformix-") as out_dir:
            try:
                dfield = itk.transformix_deformation_field(
                    m_img, result_parameters, log_to_console=False, output_directory=out_dir
                )
            except Exception as exc:
                raise RuntimeError(f"{self.name}: transformix failed: {_short_reason(exc)}") from exc
        arr = np.asarray(itk.array_from_image(dfield), dtype=np.float32)  # (rows, cols, [dx, dy])
        if arr.shape != (*fixed_shape, 2):
            raise RuntimeError(f"{self.name}: deformation field has shape {arr.shape}, expected {(*fixed_shape, 2)}")
        if not np.all(np.isfinite(arr)):
            raise RuntimeError(f"{self.name}: elastix returned a non-finite deformation field")
        return DisplacementFieldResult(np.ascontiguousarray(np.moveaxis(arr, -1, 0)), moving_shape=moving_shape)


def _reason_from_log(path: str) -> str:
    """The first error description in an elastix log file, or "" if there is none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = [ln.strip() for ln in fh if ln.strip()]
    except OSError:
        return ""
    for ln in lines:
        if ln.startswith("Description:"):
            text = ln[len("Description:") :].strip()
            return re.sub(r"^ITK ERROR: \w+\(0x[0-9a-fA-F]+\):\s*", "", text)[:300]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return errors[0][:300] if errors else ""


def _short_reason(exc: BaseException) -> str:
    """The informative line of an ITK/elastix exception (they are dozens of lines long)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for key in ("Description:", "ERROR", "Error"):
        for ln in lines:
            if key in ln:
                return ln[:300]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def elastix_rigid() -> ElastixMethod:
    """elastix Euler (rotation + translation) registration."""
    return ElastixMethod(transform="rigid")


def elastix_affine() -> ElastixMethod:
    """elastix affine registration."""
    return ElastixMethod(transform="affine")


def elastix_bspline() -> ElastixMethod:
    """elastix affine, then B-spline initialised from it (one run, two parameter maps)."""
    return ElastixMethod(transform="bspline")
