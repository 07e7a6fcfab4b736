"""Global (parametric) point maps: affine, homography and quadratic — fits, application, inverse.

Every model maps **fixed** ``(x, y)`` full-resolution pixels to **moving** pixels (the
direction of :class:`firereg.evaluation.results.MatrixResult`; conventions:
:mod:`firereg.transforms.coords`). Parameters:

- ``affine``: (2, 3) matrix, ``p' = A @ (x, y, 1)``;
- ``homography``: (3, 3) matrix, ``p' ~ H @ (x, y, 1)``;
- ``quadratic``: (2, 6) coefficients ``a, b`` on the monomials
  :func:`quadratic_features` ``[1, x, y, x², xy, y²]``: ``x' = a · f(x, y)``, ``y' = b · f(x, y)``
  (12 parameters; the eye's curvature that a homography leaves, ~10 px on FIRE's P pairs).

Fits are weighted least squares (:func:`fit_model`) and robust (:func:`fit_robust`: RANSAC
or IRLS with Huber weights). A quadratic fit may be regularised towards a prior model (the
homography): a ridge on the difference of the second-order terms, measured as pixels of
displacement at the field of view's radius from the points' centroid and scaled by the
points' spread, so it pulls hard only where the matches do not constrain the curvature
(matches in a small patch), and hardly at all where they cover the field of view. The quadratic inverse is exact where it exists:
Newton iteration from the homography's inverse to 1e-6 px (:func:`invert_quadratic`);
:func:`min_jacobian_det` over :func:`fov_points` tells whether a map folds inside the FOV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firereg.evaluation.results import NotInvertibleError, check_points

__all__ = [
    "KINDS",
    "MIN_POINTS",
    "GlobalModel",
    "RobustConfig",
    "quadratic_features",
    "fit_model",
    "fit_robust",
    "homography_to_quadratic",
    "invert_quadratic",
    "fov_points",
    "min_jacobian_det",
]

#: the model kinds
KINDS = ("affine", "homography", "quadratic")
#: the points a fit of each kind needs at least
MIN_POINTS = {"affine": 3, "homography": 4, "quadratic": 6}
_SHAPES = {"affine": (2, 3), "homography": (3, 3), "quadratic": (2, 6)}


def quadratic_features(points: np.ndarray) -> np.ndarray:
    """(N, 2) ``(x, y)`` points → (N, 6) monomials ``[1, x, y, x², xy, y²]`` (float64)."""
    p = check_points(points)
    x, y = p[:, 0], p[:, 1]
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


@dataclass(frozen=True)
class GlobalModel:
    """A global map fixed → moving, full-resolution pixels.

    Attributes:
        kind: one of :data:`KINDS`.
        params: (2, 3) affine, (3, 3) homography or (2, 6) quadratic coefficients (module docstring).
    """

    kind: str
    params: np.ndarray

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown global model kind {self.kind!r}; choose one of {list(KINDS)}")
        params = np.asarray(self.params, dtype=np.float64)
        if params.shape != _SHAPES[self.kind]:
            raise ValueError(f"a {self.kind} model needs parameters of shape {_SHAPES[self.kind]}, got {params.shape}")
        object.__setattr__(self, "params", params)

    def matrix(self) -> np.ndarray:
        """The 3x3 matrix of an affine or homography model.

        Raises:
            ValueError: for a quadratic model.
        """
        if self.kind == "quadratic":
            raise ValueError("a quadratic model has no 3x3 matrix")
        return np.vstack([self.params, [0.0, 0.0, 1.0]]) if self.kind == "affine" else self.params.copy()

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) fixed ``(x, y)`` pixels to (N, 2) moving pixels."""
        p = check_points(points)
        if self.kind == "quadratic":
            return quadratic_features(p) @ self.params.T
        hom = np.c_[p, np.ones(len(p))] @ self.matrix().T
        return hom[:, :2] / hom[:, 2:3]

    def inverse(self) -> GlobalModel:
        """The inverse map (moving → fixed) of an affine or homography model, as a homography.

        Raises:
            ValueError: for a quadratic model (see :func:`invert_quadratic`).
        """
        inv = np.linalg.inv(self.matrix())
        return GlobalModel("homography", inv / inv[2, 2])

    def sampling_grid(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """``cv2.remap`` maps of this model at every pixel of a fixed image of ``shape`` = (H, W):
        (H, W) float32 moving x and y of each fixed pixel (row-major)."""
        h, w = int(shape[0]), int(shape[1])
        ys, xs = np.mgrid[0:h, 0:w]
        mapped = self.apply(np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64))
        return mapped[:, 0].reshape(h, w).astype(np.float32), mapped[:, 1].reshape(h, w).astype(np.float32)

    def jacobian(self, points: np.ndarray) -> np.ndarray:
        """(N, 2, 2) Jacobians ``d(x', y') / d(x, y)`` at (N, 2) fixed points."""
        p = check_points(points)
        if self.kind == "quadratic":
            a = self.params
            x, y = p[:, 0:1], p[:, 1:2]
            ddx = a[:, 1] + 2 * a[:, 3] * x + a[:, 4] * y  # (N, 2): d(x', y')/dx
            ddy = a[:, 2] + a[:, 4] * x + 2 * a[:, 5] * y
            return np.stack([ddx, ddy], axis=2)
        m = self.matrix()
        hom = np.c_[p, np.ones(len(p))] @ m.T  # (N, 3)
        w = hom[:, 2][:, None, None]
        num = m[None, :2, :2] * w - hom[:, :2, None] * m[None, 2:3, :2]
        return num / (w * w)


@dataclass
class RobustConfig:
    """Settings of :func:`fit_robust`; lengths are full-resolution pixels.

    Attributes:
        method: ``"huber"`` (IRLS with Huber weights) or ``"ransac"``.
        huber_px: Huber threshold: residuals above it get weight ``huber_px / r``.
        irls_iterations: IRLS iterations (stops earlier when the parameters settle).
        ransac_threshold_px: RANSAC inlier threshold.
        ransac_iterations: RANSAC samples.
        ridge: strength of the pull of the quadratic terms towards ``prior`` (per point,
            normalised coordinates; 0 = none); only for quadratic fits with a prior.
        radius: field-of-view radius the ridge measures the curvature at, px
            (:func:`fit_model`; None: the points' spread).
        seed: RANSAC sampling seed.
    """

    method: str = "huber"
    huber_px: float = 2.0
    irls_iterations: int = 20
    ransac_threshold_px: float = 4.0
    ransac_iterations: int = 1000
    ridge: float = 1e-4
    radius: float | None = None
    seed: int = 0


def _normaliser(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centroid and RMS distance (≥ 1e-9) of (N, 2) points."""
    centre = points.mean(axis=0)
    spread = float(np.sqrt(np.mean(np.sum((points - centre) ** 2, axis=1))))
    return centre, max(spread, 1e-9)


def _quadratic_transfer(centre: np.ndarray, spread: float) -> np.ndarray:
    """6x6 ``T`` with ``f(u, v) = T @ f(x, y)`` for ``(u, v) = ((x, y) - centre) / spread``."""
    a = 1.0 / spread
    b, d = -centre[0] * a, -centre[1] * a
    return np.array([
        [1, 0, 0, 0, 0, 0],
        [b, a, 0, 0, 0, 0],
        [d, 0, a, 0, 0, 0],
        [b * b, 2 * a * b, 0, a * a, 0, 0],
        [b * d, a * d, a * b, 0, a * a, 0],
        [d * d, 0, 2 * a * d, 0, 0, a * a],
    ])


def homography_to_quadratic(model: GlobalModel, points: np.ndarray) -> GlobalModel:
    """The quadratic closest (least squares) to ``model`` at (N ≥ 6, 2) fixed ``points``."""
    pts = check_points(points)
    return fit_model("quadratic", pts, model.apply(pts))


def _fit_quadratic(src, dst, w, prior: GlobalModel | None, ridge: float, radius: float | None) -> np.ndarray:
    centre, spread = _normaliser(src)
    transfer = _quadratic_transfer(centre, spread)
    feats = quadratic_features((src - centre) / spread)  # f(u, v)
    lhs = feats.T @ (feats * w[:, None])
    rhs = feats.T @ (dst * w[:, None])  # (6, 2)
    if prior is not None and ridge > 0:
        # the prior's quadratic part over the points' box, in the same normalised coordinates
        lo, hi = src.min(axis=0), src.max(axis=0)
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 9), np.linspace(lo[1], hi[1], 9))
        grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
        g_feats = quadratic_features((grid - centre) / spread)
        prior_uv = np.linalg.lstsq(g_feats, prior.apply(grid), rcond=None)[0]  # (6, 2)
        pen = np.zeros((6, 6))
        # the quadratic terms in px of displacement at ``radius`` from the centroid: their
        # coefficients in (u, v) are that times (spread / radius)^2
        ratio = (float(radius) / spread) ** 2 if radius else 1.0
        pen[3:, 3:] = np.eye(3) * ridge * float(w.sum()) * ratio**2
        lhs = lhs + pen
        rhs = rhs + pen @ prior_uv
    coef_uv = np.linalg.lstsq(lhs, rhs, rcond=None)[0]  # (6, 2)
    return coef_uv.T @ transfer  # (2, 6) on f(x, y)


def _fit_homography(src, dst, w) -> np.ndarray:
    """Weighted normalised DLT (Hartley)."""
    cs, ss = _normaliser(src)
    cd, sd = _normaliser(dst)
    ts = np.array([[1 / ss, 0, -cs[0] / ss], [0, 1 / ss, -cs[1] / ss], [0, 0, 1]])
    td = np.array([[1 / sd, 0, -cd[0] / sd], [0, 1 / sd, -cd[1] / sd], [0, 0, 1]])
    s = (src - cs) / ss
    d = (dst - cd) / sd
    n = len(s)
    one, zero = np.ones(n), np.zeros(n)
    rows_x = np.stack([s[:, 0], s[:, 1], one, zero, zero, zero, -d[:, 0] * s[:, 0], -d[:, 0] * s[:, 1], -d[:, 0]], 1)
    rows_y = np.stack([zero, zero, zero, s[:, 0], s[:, 1], one, -d[:, 1] * s[:, 0], -d[:, 1] * s[:, 1], -d[:, 1]], 1)
    sw = np.sqrt(w)[:, None]
    _, _, vt = np.linalg.svd(np.vstack([rows_x * sw, rows_y * sw]))
    h = np.linalg.inv(td) @ vt[-1].reshape(3, 3) @ ts
    if abs(h[2, 2]) < 1e-12:
        raise ValueError("degenerate homography fit (points collinear or at infinity)")
    return h / h[2, 2]


def fit_model(
    kind: str,
    src: np.ndarray,
    dst: np.ndarray,
    weights: np.ndarray | None = None,
    prior: GlobalModel | None = None,
    ridge: float = 0.0,
    radius: float | None = None,
) -> GlobalModel:
    """Weighted least-squares fit of a ``kind`` model mapping ``src`` to ``dst``.

    Args:
        kind: one of :data:`KINDS`.
        src: (N, 2) fixed ``(x, y)`` pixels.
        dst: (N, 2) moving ``(x, y)`` pixels.
        weights: (N,) non-negative weights (None: all 1).
        prior: quadratic fits only: the model the quadratic terms are pulled towards
            (None: no pull). Affine / homography fits ignore it.
        ridge: strength of that pull per unit weight: the penalty is ``ridge * sum(weights)``
            times the squared difference of the quadratic terms, measured as pixels of
            displacement at ``radius`` from the points' centroid (see the module docstring).
        radius: the field of view's radius, pixels (None: the points' RMS spread). Matches
            spread over a small part of it constrain the curvature little and are pulled harder
            (the penalty grows as ``(radius / spread)^4``).

    Returns:
        The fitted model (homographies are DLT on algebraic error, normalised).

    Raises:
        ValueError: for an unknown kind, mismatched shapes, too few weighted points or a
            degenerate configuration.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown global model kind {kind!r}; choose one of {list(KINDS)}")
    s, d = check_points(src), check_points(dst)
    if len(s) != len(d):
        raise ValueError(f"src and dst have {len(s)} and {len(d)} points")
    w = np.ones(len(s)) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (len(s),) or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be {len(s)} finite non-negative numbers")
    if int(np.count_nonzero(w)) < MIN_POINTS[kind]:
        raise ValueError(f"a {kind} fit needs at least {MIN_POINTS[kind]} points, got {int(np.count_nonzero(w))}")
    if kind == "quadratic":
        params = _fit_quadratic(s, d, w, prior, ridge, radius)
    elif kind == "homography":
        params = _fit_homography(s, d, w)
    else:
        design = np.c_[s, np.ones(len(s))] * np.sqrt(w)[:, None]
        params = np.linalg.lstsq(design, d * np.sqrt(w)[:, None], rcond=None)[0].T
    if not np.all(np.isfinite(params)):
        raise ValueError(f"degenerate {kind} fit (non-finite parameters)")
    return GlobalModel(kind, params)


def _residuals(model: GlobalModel, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return np.linalg.norm(model.apply(src) - dst, axis=1)


def fit_robust(
    kind: str,
    src: np.ndarray,
    dst: np.ndarray,
    config: RobustConfig | None = None,
    prior: GlobalModel | None = None,
) -> tuple[GlobalModel, np.ndarray]:
    """Robust fit of a ``kind`` model mapping fixed ``src`` to moving ``dst`` (pixels).

    ``huber``: IRLS from the least-squares fit, weight ``min(1, huber_px / r)`` per point.
    ``ransac``: minimal samples, the model with most inliers (residual < threshold) refitted
    by least squares on its inliers. A quadratic fit is regularised towards ``prior``
    (``config.ridge``) in every step.

    Args:
        kind: one of :data:`KINDS`.
        src: (N, 2) fixed points.
        dst: (N, 2) moving points.
        config: settings (default :class:`RobustConfig`).
        prior: the pull of a quadratic fit (the homography), or None.

    Returns:
        ``(model, inliers)``: inliers (N,) bool are the points with residual below
        ``huber_px`` (Huber) or the RANSAC threshold.

    Raises:
        ValueError: as :func:`fit_model`, or for an unknown robust method.
    """
    cfg = config or RobustConfig()
    s, d = check_points(src), check_points(dst)
    ridge = cfg.ridge if prior is not None else 0.0
    if cfg.method == "huber":
        model = fit_model(kind, s, d, prior=prior, ridge=ridge, radius=cfg.radius)
        for _ in range(int(cfg.irls_iterations)):
            r = _residuals(model, s, d)
            w = np.minimum(1.0, cfg.huber_px / np.maximum(r, 1e-12))
            new = fit_model(kind, s, d, w, prior=prior, ridge=ridge, radius=cfg.radius)
            settled = np.max(np.abs(new.apply(s) - model.apply(s))) < 1e-4
            model = new
            if settled:
                break
        return model, _residuals(model, s, d) < cfg.huber_px
    if cfg.method != "ransac":
        raise ValueError(f"unknown robust method {cfg.method!r}; choose 'huber' or 'ransac'")
    n, k = len(s), MIN_POINTS[kind]
    if n < k:
        raise ValueError(f"a {kind} fit needs at least {k} points, got {n}")
    rng = np.random.default_rng(cfg.seed)
    best = np.zeros(n, dtype=bool)
    for _ in range(int(cfg.ransac_iterations)):
        idx = rng.choice(n, size=k, replace=False)
        try:
            model = fit_model(kind, s[idx], d[idx])
        except (ValueError, np.linalg.LinAlgError):
            continue
        inliers = _residuals(model, s, d) < cfg.ransac_threshold_px
        if inliers.sum() > best.sum():
            best = inliers
    if best.sum() < k:
        raise ValueError(f"RANSAC found no {kind} model with {k} inliers among {n} points")
    for _ in range(3):  # refit on the inliers until the set settles
        model = fit_model(kind, s[best], d[best], prior=prior, ridge=ridge, radius=cfg.radius)
        inliers = _residuals(model, s, d) < cfg.ransac_threshold_px
        if inliers.sum() < k or np.array_equal(inliers, best):
            break
        best = inliers
    return model, best


def invert_quadratic(
    model: GlobalModel,
    points: np.ndarray,
    start: GlobalModel | None = None,
    tol_px: float = 1e-6,
    max_iterations: int = 50,
) -> np.ndarray:
    """Fixed points ``p`` with ``model(p) = q`` for (N, 2) moving points ``q`` (Newton iteration).

    Args:
        model: a quadratic model (fixed → moving).
        points: (N, 2) moving ``(x, y)`` pixels.
        start: a homography/affine approximation of ``model``; its inverse gives the start
            (None: the model's linearisation at the points' centroid).
        tol_px: stop when every residual ``|model(p) - q|`` is below this, pixels.
        max_iterations: Newton steps at most.

    Returns:
        (N, 2) fixed pixels.

    Raises:
        NotInvertibleError: naming how many points did not converge or landed where the
            Jacobian determinant is not positive.
    """
    q = check_points(points)
    if model.kind != "quadratic":
        raise ValueError(f"invert_quadratic needs a quadratic model, got {model.kind}")
    if len(q) == 0:
        return q.copy()
    if start is None:
        centre = q.mean(axis=0, keepdims=True)
        jac = model.jacobian(centre)[0]
        offset = model.apply(centre)[0] - jac @ centre[0]
        start = GlobalModel("affine", np.c_[jac, offset])
    p = start.inverse().apply(q)
    for _ in range(int(max_iterations)):
        r = model.apply(p) - q
        if np.max(np.abs(r)) < tol_px:
            break
        j = model.jacobian(p)
        det = j[:, 0, 0] * j[:, 1, 1] - j[:, 0, 1] * j[:, 1, 0]
        safe = np.where(np.abs(det) < 1e-12, 1e-12, det)
        step = np.stack([j[:, 1, 1] * r[:, 0] - j[:, 0, 1] * r[:, 1], -j[:, 1, 0] * r[:, 0] + j[:, 0, 0] * r[:, 1]], 1)
        p = p - step / safe[:, None]
    err = np.linalg.norm(model.apply(p) - q, axis=1)
    j = model.jacobian(p)
    det = j[:, 0, 0] * j[:, 1, 1] - j[:, 0, 1] * j[:, 1, 0]
    bad = ~np.isfinite(err) | (err >= 2 * tol_px) | (det <= 0)
    if bad.any():
        raise NotInvertibleError(
            f"quadratic map not invertible at {int(bad.sum())} of {len(q)} moving points "
            f"(Newton did not converge to {tol_px:g} px or the Jacobian determinant is not positive there)"
        )
    return p


def fov_points(shape: tuple[int, int], mask: np.ndarray | None = None, step: int = 16) -> np.ndarray:
    """(N, 2) ``(x, y)`` grid points every ``step`` px inside the field of view.

    Args:
        shape: ``(H, W)`` of the fixed image, pixels.
        mask: (H, W) bool field of view; None: the ellipse inscribed in the image.
        step: grid spacing, pixels.

    Raises:
        ValueError: if ``mask`` does not have ``shape``.
    """
    h, w = int(shape[0]), int(shape[1])
    step = max(1, int(step))
    ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != (h, w):
            raise ValueError(f"mask has shape {m.shape}, the image {(h, w)}")
        return pts[m[ys.ravel(), xs.ravel()]]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    inside = ((pts[:, 0] - cx) / (w / 2.0)) ** 2 + ((pts[:, 1] - cy) / (h / 2.0)) ** 2 <= 1.0
    return pts[inside]


def min_jacobian_det(model: GlobalModel, points: np.ndarray) -> float:
    """Smallest Jacobian determinant of ``model`` at (N, 2) points; ≤ 0 means it folds there."""
    j = model.jacobian(points)
    if len(j) == 0:
        return float("inf")
    return float(np.min(j[:, 0, 0] * j[:, 1, 1] - j[:, 0, 1] * j[:, 1, 0]))
