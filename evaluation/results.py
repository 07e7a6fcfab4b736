"""The one interface every registration method implements (see shared DESIGN.md).

A method registers a *moving* image onto a *fixed* image and returns a
:class:`RegistrationResult`. Points are ``(x, y)`` full-resolution pixels and image arrays
are row-major (``YX``); fields map fixed → moving. The conventions are written
down once, in :mod:`firereg.transforms.coords`.

Every result can
- map points of the fixed image into the moving image (``fixed_to_moving``), which is
  what a displacement field sampled by MONAI ``Warp`` and what elastix/transformix give;
- map points of the moving image into the fixed image where the transform is invertible
  (``moving_to_fixed``; raises :class:`NotInvertibleError` otherwise);
- warp the moving image onto the fixed image grid (``warp_moving``).
"""

from __future__ import annotations

import abc
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
from scipy.ndimage import map_coordinates

from firereg.evaluation.sanity import check_inputs, check_result, images_identical
from firereg.transforms.coords import scale_points, size_of

__all__ = [
    "NotInvertibleError",
    "RegistrationResult",
    "MatrixResult",
    "DisplacementFieldResult",
    "ScaledResult",
    "RegistrationMethod",
    "ResizedMethod",
    "check_points",
]


class NotInvertibleError(RuntimeError):
    """Raised by ``moving_to_fixed`` when a result's transform has no usable inverse."""


def check_points(points: np.ndarray) -> np.ndarray:
    """Return ``points`` as a float64 (N, 2) array, or raise ``ValueError`` quoting the shape."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2) as (x, y) pixels, got {pts.shape}")
    return pts


class RegistrationResult(abc.ABC):
    """A registration of a moving image onto a fixed image, in full-resolution pixels.

    Attributes:
        fixed_shape: ``(H, W)`` of the fixed image, pixels.
        moving_shape: ``(H, W)`` of the moving image, pixels.
    """

    #: whether ``moving_to_fixed`` is available
    invertible: bool = False

    def __init__(self, fixed_shape: tuple[int, int], moving_shape: tuple[int, int]) -> None:
        self.fixed_shape = (int(fixed_shape[0]), int(fixed_shape[1]))
        self.moving_shape = (int(moving_shape[0]), int(moving_shape[1]))

    @abc.abstractmethod
    def fixed_to_moving(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) ``(x, y)`` points of the fixed image to the moving image, pixels."""

    def moving_to_fixed(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) ``(x, y)`` points of the moving image to the fixed image, pixels.

        Raises:
            NotInvertibleError: if the transform has no usable inverse.
        """
        raise NotInvertibleError(f"{type(self).__name__} cannot map moving points to the fixed image")

    def sampling_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """For every fixed pixel, the moving-image position it samples: ``(map_x, map_y)``.

        Returns two float32 arrays of shape ``fixed_shape`` (OpenCV ``remap`` maps).
        """
        h, w = self.fixed_shape
        ys, xs = np.mgrid[0:h, 0:w]
        pts = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
        mapped = self.fixed_to_moving(pts)
        return (
            mapped[:, 0].reshape(h, w).astype(np.float32),
            mapped[:, 1].reshape(h, w).astype(np.float32),
        )

    def warp_moving(self, moving: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Resample the moving image ``(H, W[, C])`` onto the fixed grid; outside is 0.

        Raises:
            ValueError: if ``moving`` does not have ``moving_shape``.
        """
        moving = np.asarray(moving)
        if tuple(moving.shape[:2]) != self.moving_shape:
            raise ValueError(
                f"moving image has shape {moving.shape[:2]}, the registration expects {self.moving_shape}"
            )
        map_x, map_y = self.sampling_grid()
        src = moving.astype(np.float32) if moving.dtype == bool else moving
        out = cv2.remap(src, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out.astype(moving.dtype) if moving.dtype == bool else out


class MatrixResult(RegistrationResult):
    """A homography/affine ``matrix`` (3×3) mapping fixed ``(x, y, 1)`` to moving pixels."""

    def __init__(self, matrix: np.ndarray, fixed_shape: tuple[int, int], moving_shape: tuple[int, int]) -> None:
        super().__init__(fixed_shape, moving_shape)
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (3, 3):
            raise ValueError(f"matrix must be 3x3, got {m.shape}")
        self.matrix = m
        self.invertible = bool(abs(np.linalg.det(m)) > 1e-12)

    @staticmethod
    def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
        pts = check_points(points)
        hom = np.c_[pts, np.ones(len(pts))] @ matrix.T
        return hom[:, :2] / hom[:, 2:3]

    def fixed_to_moving(self, points: np.ndarray) -> np.ndarray:
        return self._apply(self.matrix, points)

    def moving_to_fixed(self, points: np.ndarray) -> np.ndarray:
        if not self.invertible:
            raise NotInvertibleError(f"singular matrix {self.matrix.tolist()}")
        return self._apply(np.linalg.inv(self.matrix), points)


class DisplacementFieldResult(RegistrationResult):
    """A dense row-major displacement field on the fixed grid, fixed → moving.

    Args:
        field: (2, H, W) array, channel 0 = dx, channel 1 = dy, in pixels of the moving
            image, defined at every fixed pixel (the row-major field layout of
            :mod:`firereg.transforms.coords`).
        moving_shape: ``(H, W)`` of the moving image; defaults to the field's grid.
    """

    def __init__(self, field: np.ndarray, moving_shape: tuple[int, int] | None = None) -> None:
        f = np.asarray(field, dtype=np.float32)
        if f.ndim != 3 or f.shape[0] != 2:
            raise ValueError(f"field must have shape (2, H, W), got {f.shape}")
        super().__init__(f.shape[1:], moving_shape or f.shape[1:])
        self.field = f

    def fixed_to_moving(self, points: np.ndarray) -> np.ndarray:
        pts = check_points(points)
        if len(pts) == 0:
            return pts.copy()
        # bilinear sampling of the field at the points; outside the grid the edge value is
        # repeated (mode="nearest"); map_coordinates indexes (row, col) = (y, x)
        rows_cols = pts[:, ::-1].T
        disp = [
            map_coordinates(self.field[c], rows_cols, order=1, mode="nearest", output=np.float64) for c in range(2)
        ]
        return pts + np.stack(disp, axis=1)

    def sampling_grid(self) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.fixed_shape
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        return xs + self.field[0], ys + self.field[1]


class ScaledResult(RegistrationResult):
    """A result computed on resized images, presented in full-resolution pixels.

    Points are scaled with :func:`firereg.transforms.coords.scale_points` (pixel-centre convention).
    """

    def __init__(
        self,
        inner: RegistrationResult,
        fixed_shape: tuple[int, int],
        moving_shape: tuple[int, int],
    ) -> None:
        super().__init__(fixed_shape, moving_shape)
        self.inner = inner
        self.invertible = inner.invertible

    def _sizes(self) -> tuple[tuple[int, int], ...]:
        """``(width, height)`` of the full fixed, full moving, working fixed and working moving images."""
        shapes = (self.fixed_shape, self.moving_shape, self.inner.fixed_shape, self.inner.moving_shape)
        return tuple(size_of(shape) for shape in shapes)

    def fixed_to_moving(self, points: np.ndarray) -> np.ndarray:
        full_f, full_m, work_f, work_m = self._sizes()
        inner = self.inner.fixed_to_moving(scale_points(check_points(points), full_f, work_f))
        return scale_points(inner, work_m, full_m)

    def moving_to_fixed(self, points: np.ndarray) -> np.ndarray:
        full_f, full_m, work_f, work_m = self._sizes()
        inner = self.inner.moving_to_fixed(scale_points(check_points(points), full_m, work_m))
        return scale_points(inner, work_f, full_f)


@runtime_checkable
class RegistrationMethod(Protocol):
    """What the benchmark calls. ``name`` is the label used in every table and plot."""

    name: str

    def register(
        self,
        fixed: np.ndarray,
        moving: np.ndarray,
        fixed_mask: np.ndarray | None = None,
        moving_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """Register ``moving`` onto ``fixed``.

        Args:
            fixed: (H, W, 3) RGB uint8 (or (H, W)) fixed image, row-major.
            moving: (H', W', 3) RGB uint8 (or (H', W')) moving image, row-major.
            fixed_mask: (H, W) bool field of view of the fixed image, or None.
            moving_mask: (H', W') bool field of view of the moving image, or None.

        Returns:
            The registration, in the pixels of the arrays given.
        """
        ...


class ResizedMethod:
    """Run ``method`` at the benchmark size and answer in full-resolution pixels.

    Every registration is checked (:mod:`firereg.evaluation.sanity`): inputs without usable
    content (blank, flat or all masked) and results that are no real registration
    (non-finite, folded, degenerate, or the identity on images that differ) raise
    :class:`firereg.evaluation.sanity.RegistrationFailed` with the reason. A method whose
    ``identity_by_design`` attribute is true (the identity baseline) may return the identity.

    Args:
        method: the method to run.
        benchmark_size: longest side, pixels, of the images ``method`` is given (a deep
            method resizes further, to its network size).

    Raises:
        ValueError: if ``benchmark_size`` is not positive.
    """

    def __init__(self, method: RegistrationMethod, benchmark_size: int) -> None:
        if benchmark_size <= 0:
            raise ValueError(f"benchmark size must be positive, got {benchmark_size}")
        self.method = method
        self.benchmark_size = int(benchmark_size)
        self.name = method.name

    def _resize(self, image: np.ndarray | None, nearest: bool = False) -> np.ndarray | None:
        if image is None:
            return None
        h, w = image.shape[:2]
        scale = self.benchmark_size / max(h, w)
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
        if new == (w, h):
            return image
        if image.dtype == bool:
            return cv2.resize(image.astype(np.uint8), new, interpolation=cv2.INTER_NEAREST).astype(bool)
        return cv2.resize(image, new, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)

    def register(
        self,
        fixed: np.ndarray,
        moving: np.ndarray,
        fixed_mask: np.ndarray | None = None,
        moving_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """Register at the benchmark size; see :meth:`RegistrationMethod.register` for the arguments.

        Raises:
            RegistrationFailed: (:mod:`firereg.evaluation.sanity`) when an image has no usable
                content or the result is no real registration; the message is the reason.
            ValueError: if a mask's shape differs from its image's.
        """
        images = [self._resize(fixed), self._resize(moving)]
        masks = [self._resize(fixed_mask), self._resize(moving_mask)]
        fixed_fov = check_inputs(*images, *masks)
        inner = self.method.register(*images, *masks)
        check_result(inner, fixed_fov, images_identical(*images), bool(getattr(self.method, "identity_by_design", False)))
        return ScaledResult(inner, fixed.shape[:2], moving.shape[:2])
