"""The motion between the two images of a generated pair, drawn to match FIRE's statistics.

A motion maps a point of the fixed image to the same retina point in the moving image:
``F(u) = H(u) + Q(u) + e(u)`` in normalised coordinates ``u = (p - c) / R`` (``c`` the image
centre, ``R`` the field-of-view radius in px), with ``H`` a homography (similarity, shear and a
little perspective), ``Q`` a quadratic term ``C [x^2, xy, y^2]`` (the curvature of the eye:
Can et al.'s 12-parameter retinal model is ``H`` affine plus ``Q``) and ``e`` a small smooth
field (sums of sines, which no polynomial of degree 2 fits). The normalised parameters do not
depend on the image size, so displacements scale with it.

:func:`sample_motion` draws a motion per FIRE category. The distributions are calibrated on
FIRE's published ground truth (medians over pairs at 2912 px; residual = mean distance left
after the least-squares fit of a model to the 10 control points; see
:mod:`firereg.transforms.motion_stats`):

====  ==========================  ======  ==========  =========
cat   displacement median / max   affine  homography  quadratic
====  ==========================  ======  ==========  =========
S     29 / 260                    1.21    1.06        0.68
P     789 / 1797                  13.1    9.85        1.48
A     44 / 93                     5.3     4.7         3.4
====  ==========================  ======  ==========  =========

:class:`ViewTransform` maps the fixed image onto its source retina (photograph or procedural
canvas): the generator places the fixed view, the motion gives the moving image.

Points are ``(x, y)`` pixels (:mod:`firereg.transforms.coords`). ``fixed_to_moving`` is
explicit; ``moving_to_fixed`` inverts it by a fixed-point iteration that converges to machine
precision inside the field of view (``Q`` and ``e`` are small next to ``H``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["MOTION_PRIORS", "MotionPrior", "PairMotion", "ViewTransform", "random_view", "sample_motion", "sample_on_grid"]


@dataclass(frozen=True)
class MotionPrior:
    """Distribution of one category's motions, in units of the field-of-view radius ``R``.

    Attributes:
        shift_offset: the translation length is ``shift_offset`` plus a log-normal length ...
        shift_median: ... of this median ...
        shift_sigma: ... and this log-normal sigma.
        shift_range: (min, max) translation length; lengths outside are drawn again.
        far_share: share of pairs whose translation is uniform in ``far_range`` instead.
        far_range: (min, max) translation of the far pairs.
        rotation_deg: std of the rotation, degrees.
        log_scale: std of the log of the zoom.
        shear: std of the symmetric shear / anisotropy terms.
        perspective: std of each perspective coefficient ``g``.
        curvature: std of the quadratic coefficients per unit of translation length.
        curvature_base: std of the quadratic coefficients of a pair without translation.
        field: std of the amplitude of each of the three sine modes of ``e``.
        field_freq: (min, max) angular frequency of the sine modes (per unit ``R``).
    """

    shift_offset: float
    shift_median: float
    shift_sigma: float
    shift_range: tuple[float, float]
    far_share: float
    far_range: tuple[float, float]
    rotation_deg: float
    log_scale: float
    shear: float
    perspective: float
    curvature: float
    curvature_base: float
    field: float
    field_freq: tuple[float, float]


#: the calibrated priors (FIRE's R at 2912 px is about 1369 px: 0.021 R = 29 px)
MOTION_PRIORS: dict[str, MotionPrior] = {
    "S": MotionPrior(0.0, 0.02, 0.75, (0.002, 0.19), 0.04, (0.08, 0.19), 0.6, 0.004, 0.002, 0.0006, 0.001, 0.0002, 0.0008, (2.5, 4.5)),
    "P": MotionPrior(0.42, 0.11, 0.8, (0.45, 1.0), 0.2, (0.95, 1.32), 2.0, 0.01, 0.004, 0.006, 0.045, 0.001, 0.0045, (2.0, 4.0)),
    "A": MotionPrior(0.0, 0.03, 0.45, (0.004, 0.07), 0.0, (0.0, 0.0), 0.8, 0.006, 0.003, 0.001, 0.003, 0.0004, 0.0042, (2.5, 4.0)),
}


@dataclass
class PairMotion:
    """Maps fixed-image pixels to moving-image pixels (both ``size`` x ``size``).

    Attributes:
        size: width = height of both images, px.
        fov_radius: ``R``, the field-of-view radius, px; the centre is ``(size - 1) / 2``.
        homography: 3x3 rows, acting on normalised ``(x, y, 1)``.
        quadratic: 2x3 rows ``C``, the x and y displacement per ``[x^2, xy, y^2]`` (normalised).
        modes: rows ``[fx, fy, phase, ax, ay]``: ``e(u) = sum a sin(f . u + phase)`` (normalised).
    """

    size: int
    fov_radius: float
    homography: list[list[float]]
    quadratic: list[list[float]]
    modes: list[list[float]]

    @property
    def centre(self) -> float:
        """Image centre, px (the same for x and y)."""
        return (self.size - 1) / 2.0

    def _nonlinear(self, u: np.ndarray) -> np.ndarray:
        x, y = u[..., 0:1], u[..., 1:2]
        c = np.asarray(self.quadratic)
        d = x * x * c[:, 0] + x * y * c[:, 1] + y * y * c[:, 2]
        for fx, fy, phase, ax, ay in self.modes:
            d = d + np.sin(x * fx + y * fy + phase) * np.array([ax, ay])
        return d

    @staticmethod
    def _project(h: np.ndarray, u: np.ndarray) -> np.ndarray:
        w = u @ h[:2, :2].T + h[:2, 2]
        den = u @ h[2, :2] + h[2, 2]
        return w / den[..., None]

    def fixed_to_moving(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) fixed ``(x, y)`` px → moving ``(x, y)`` px (explicit)."""
        u = (np.asarray(points, dtype=np.float64) - self.centre) / self.fov_radius
        v = self._project(np.asarray(self.homography), u) + self._nonlinear(u)
        return v * self.fov_radius + self.centre

    def moving_to_fixed(self, points: np.ndarray, tol: float = 1e-12, max_iter: int = 100) -> np.ndarray:
        """(..., 2) moving ``(x, y)`` px → fixed ``(x, y)`` px (iterative inverse).

        Solves ``u = H^-1(v - Q(u) - e(u))``; points where it does not converge (far outside
        the field of view) come back as NaN.
        """
        v = (np.asarray(points, dtype=np.float64) - self.centre) / self.fov_radius
        h_inv = np.linalg.inv(np.asarray(self.homography))
        u = self._project(h_inv, v)
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(max_iter):
                u_next = self._project(h_inv, v - self._nonlinear(u))
                step = np.abs(u_next - u)
                u = u_next
                if np.nanmax(step, initial=0.0) < tol:
                    break
            bad = ~np.all(np.isfinite(u) & (step < 1e-6), axis=-1)
        u[bad] = np.nan
        return u * self.fov_radius + self.centre


def sample_on_grid(mapping, size: int, step: int = 8) -> np.ndarray:
    """(size, size, 2) float32 ``mapping`` of every pixel ``(x, y)`` of a size x size image (``[y, x]``).

    ``mapping`` ((..., 2) px → (..., 2) px, smooth) is evaluated every ``step`` px and
    interpolated bilinearly: for the views and motions here the error is far below 0.01 px at
    1024 px, at a fraction of the cost. NaN or infinite values (where an inverse diverged, far
    outside the field of view) become -1e5.
    """
    coarse = np.arange(0, size + step, step, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        values = mapping(np.stack(np.meshgrid(coarse, coarse), axis=-1))
    values = np.nan_to_num(values, nan=-1e5, posinf=-1e5, neginf=-1e5).clip(-1e5, 1e5).astype(np.float32)
    # node k sits at k * step px: pixel x samples the node index x / step
    xs = np.arange(size, dtype=np.float32) / step
    map_x, map_y = np.meshgrid(xs, xs)
    out = [cv2.remap(values[..., i], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
           for i in range(2)]
    return np.stack(out, axis=-1)


@dataclass
class ViewTransform:
    """Maps pixels of one generated image to pixels of the source retina.

    With ``u = (p - c) / r`` (unit disk = the image's field of view):
    ``w = u + k |u|^2 u + sum_j a_j sin(f_j . u + phi_j)`` (smooth distortion),
    ``v = w / (1 + g . w)`` (projective), ``q = centre + radius * R(angle) v``.
    """

    size: int
    centre: tuple[float, float]  # view centre in the source, px
    radius: float  # source px per unit of u
    angle: float  # radians
    perspective: tuple[float, float]  # g
    radial: float  # k
    modes: list[list[float]]  # rows [fx, fy, phase, ax, ay]
    fov_fraction: float = 0.47  # field-of-view radius / size

    @property
    def image_centre(self) -> float:
        return (self.size - 1) / 2.0

    @property
    def fov_radius(self) -> float:
        return self.fov_fraction * self.size

    def _distortion(self, u: np.ndarray) -> np.ndarray:
        d = self.radial * np.sum(u * u, axis=-1, keepdims=True) * u
        for fx, fy, phase, ax, ay in self.modes:
            s = np.sin(u[..., 0:1] * fx + u[..., 1:2] * fy + phase)
            d = d + s * np.array([ax, ay])
        return d

    def _rotation(self) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.array([[c, -s], [s, c]])

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) image ``(x, y)`` px → source ``(x, y)`` px."""
        u = (np.asarray(points, dtype=np.float64) - self.image_centre) / self.fov_radius
        w = u + self._distortion(u)
        v = w / (1.0 + w @ np.asarray(self.perspective))[..., None]
        return np.asarray(self.centre) + self.radius * (v @ self._rotation().T)

    def from_source(self, points: np.ndarray, tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
        """(..., 2) source ``(x, y)`` px → image ``(x, y)`` px (exact inverse, iterative)."""
        q = np.asarray(points, dtype=np.float64)
        v = ((q - np.asarray(self.centre)) / self.radius) @ self._rotation()
        w = v / (1.0 - v @ np.asarray(self.perspective))[..., None]
        u = w.copy()
        for _ in range(max_iter):  # fixed point u = w - d(u); |dd/du| << 1 so it contracts
            u_next = w - self._distortion(u)
            if np.max(np.abs(u_next - u), initial=0.0) < tol:
                u = u_next
                break
            u = u_next
        return u * self.fov_radius + self.image_centre


def random_view(
    rng: np.random.Generator, size: int, fov_radius: float, centre: np.ndarray, radius: float, max_angle: float
) -> ViewTransform:
    """A view of ``size`` px whose field of view (``fov_radius`` px) covers about ``radius`` source
    px around the source point ``centre`` ``(x, y)``, rotated by up to ``max_angle`` degrees."""
    modes = []
    for _ in range(3):
        freq = rng.uniform(1.0, 3.0) * np.array([np.cos(t := rng.uniform(0, 2 * np.pi)), np.sin(t)])
        amp = rng.uniform(0.002, 0.006) * np.array([np.cos(s := rng.uniform(0, 2 * np.pi)), np.sin(s)])
        modes.append([float(freq[0]), float(freq[1]), float(rng.uniform(0, 2 * np.pi)), float(amp[0]), float(amp[1])])
    g = rng.uniform(0.0, 0.04) * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
    return ViewTransform(
        size=size,
        centre=(float(centre[0]), float(centre[1])),
        radius=float(radius * np.exp(rng.normal(0.0, 0.03))),
        angle=float(np.deg2rad(rng.uniform(-max_angle, max_angle))),
        perspective=(float(g[0]), float(g[1])),
        radial=float(rng.uniform(-0.03, 0.03)),
        modes=modes,
        fov_fraction=float(fov_radius / size),
    )


def _shift_length(rng: np.random.Generator, prior: MotionPrior) -> float:
    if prior.far_share > 0 and rng.random() < prior.far_share:
        return float(rng.uniform(*prior.far_range))
    for _ in range(1000):
        length = prior.shift_offset + prior.shift_median * np.exp(rng.normal(0.0, prior.shift_sigma))
        if prior.shift_range[0] <= length <= prior.shift_range[1]:
            return float(length)
    return float(np.clip(length, *prior.shift_range))


def sample_motion(rng: np.random.Generator, category: str, size: int, fov_radius: float) -> PairMotion:
    """Draw the motion of one pair of FIRE category ``category`` ("S", "P" or "A").

    Args:
        rng: the pair's random generator.
        category: FIRE category; selects :data:`MOTION_PRIORS`.
        size: image width = height, px.
        fov_radius: field-of-view radius, px (the normalisation unit ``R``).

    Returns:
        The :class:`PairMotion` (its overlap is not checked here: the generator rejects draws
        whose overlap does not fit the category).

    Raises:
        ValueError: naming an unknown category.
    """
    if category not in MOTION_PRIORS:
        raise ValueError(f"unknown category {category!r}; use one of {sorted(MOTION_PRIORS)}")
    prior = MOTION_PRIORS[category]
    length = _shift_length(rng, prior)
    direction = rng.uniform(0.0, 2 * np.pi)
    shift = length * np.array([np.cos(direction), np.sin(direction)])
    angle = np.deg2rad(rng.normal(0.0, prior.rotation_deg))
    zoom = np.exp(rng.normal(0.0, prior.log_scale))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shear = np.eye(2) + rng.normal(0.0, prior.shear, (2, 2)) * np.array([[1.0, 1.0], [1.0, -1.0]])
    linear = zoom * rotation @ shear
    homography = np.eye(3)
    homography[:2, :2] = linear
    homography[:2, 2] = shift
    homography[2, :2] = rng.normal(0.0, prior.perspective, 2)
    # curvature grows with the translation (the eye turns further); its sign follows the shift
    quadratic = rng.normal(0.0, prior.curvature * length + prior.curvature_base, (2, 3))
    modes = []
    for _ in range(3):
        freq = rng.uniform(*prior.field_freq) * np.array([np.cos(t := rng.uniform(0, 2 * np.pi)), np.sin(t)])
        amp = rng.normal(0.0, prior.field, 2)
        modes.append([float(freq[0]), float(freq[1]), float(rng.uniform(0, 2 * np.pi)), float(amp[0]), float(amp[1])])
    return PairMotion(
        size=int(size),
        fov_radius=float(fov_radius),
        homography=homography.tolist(),
        quadratic=quadratic.tolist(),
        modes=modes,
    )
