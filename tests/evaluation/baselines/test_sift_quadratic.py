"""``sift-quadratic`` recovers a known quadratic distortion that a homography cannot.

The pair: the fixed image is ``skimage.data.retina()`` at 384 px; the moving image shows
the fixed point ``p`` at ``Q(p)`` for a known quadratic ``Q`` (it is the fixed image sampled
at ``Q^-1``, computed exactly by Newton iteration), so ``Q`` *is* the true fixed → moving map.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from firereg.evaluation.baselines import METHODS, SiftQuadraticMethod, make_method
from firereg.evaluation.baselines.quadratic import (
    QuadraticRefit,
    QuadraticResult,
    refine_to_quadratic,
)
from firereg.evaluation.results import MatrixResult, NotInvertibleError
from firereg.transforms.fov import estimate_fov_mask
from firereg.transforms.global_models import GlobalModel, invert_quadratic

SIZE = 384
C = (SIZE - 1) / 2.0


def _bending(amplitude: float) -> GlobalModel:
    """``x' = x + 3 + A ((y - c) / c)^2``, ``y' = y - 2 + A ((x - c) / c)^2``: lines bend by ``A`` px at the rim."""
    k = amplitude / C**2
    ax = [3 + k * C * C, 1.0, -2 * k * C, 0.0, 0.0, k]
    ay = [-2 + k * C * C, -2 * k * C, 1.0, k, 0.0, 0.0]
    return GlobalModel("quadratic", np.array([ax, ay]))


@pytest.fixture(scope="module")
def quadratic_pair():
    skdata = pytest.importorskip("skimage.data")
    fixed = cv2.resize(skdata.retina(), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    fmask = estimate_fov_mask(fixed)
    true = _bending(8.0)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    back = invert_quadratic(true, grid).reshape(SIZE, SIZE, 2).astype(np.float32)  # moving pixel -> fixed
    moving = cv2.remap(fixed, back[..., 0], back[..., 1], cv2.INTER_LINEAR, borderValue=0)
    mmask = cv2.remap(fmask.astype(np.uint8), back[..., 0], back[..., 1], cv2.INTER_NEAREST) > 0
    inner = ndimage.binary_erosion(fmask, iterations=20)
    gy, gx = np.mgrid[8:SIZE:16, 8:SIZE:16]
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float64)
    pts = pts[inner[gy.ravel(), gx.ravel()]]
    return fixed, moving, fmask, mmask, true, pts


def _errors(result, true: GlobalModel, pts: np.ndarray) -> tuple[float, float]:
    """Mean fixed → moving and moving → fixed error, px."""
    forward = np.linalg.norm(result.fixed_to_moving(pts) - true.apply(pts), axis=1).mean()
    backward = np.linalg.norm(result.moving_to_fixed(true.apply(pts)) - pts, axis=1).mean()
    return float(forward), float(backward)


def test_sift_quadratic_is_registered_and_built_by_name():
    assert METHODS["sift-quadratic"] is SiftQuadraticMethod
    method = make_method("sift-quadratic")
    assert isinstance(method, SiftQuadraticMethod) and method.name == "sift-quadratic"


def test_sift_quadratic_beats_sift_on_a_known_quadratic_distortion(quadratic_pair):
    fixed, moving, fmask, mmask, true, pts = quadratic_pair
    homography = make_method("sift").register(fixed, moving, fmask, mmask)
    quadratic = make_method("sift-quadratic").register(fixed, moving, fmask, mmask)
    assert isinstance(homography, MatrixResult)
    assert isinstance(quadratic, QuadraticResult) and quadratic.invertible, getattr(quadratic, "global_note", "")
    h_fwd, h_back = _errors(homography, true, pts)
    q_fwd, q_back = _errors(quadratic, true, pts)
    assert h_fwd > 1.5  # the bending is beyond a homography (about 2.5 px)
    assert q_fwd < 0.25 and q_back < 0.25  # about 0.05 px
    assert q_fwd < 0.2 * h_fwd
    # the exact inverse: moving_to_fixed undoes fixed_to_moving
    round_trip = quadratic.moving_to_fixed(quadratic.fixed_to_moving(pts))
    assert np.max(np.abs(round_trip - pts)) < 1e-4
    # the sampling grid is fixed_to_moving at every pixel
    map_x, map_y = quadratic.sampling_grid()
    p = np.array([[100.0, 250.0]])
    np.testing.assert_allclose([map_x[250, 100], map_y[250, 100]], quadratic.fixed_to_moving(p)[0], atol=1e-3)


def test_a_folding_quadratic_falls_back_to_the_homography_and_says_why():
    rng = np.random.default_rng(0)
    src = rng.uniform(20, SIZE - 20, size=(200, 2))
    # x' = x - 0.01 (x - c)^2: folds at x = c + 50, inside the field of view
    c = 0.01
    folding = GlobalModel("quadratic", [[-c * C * C, 1 + 2 * c * C, 0, -c, 0, 0], [0, 0, 1, 0, 0, 0]])
    dst = folding.apply(src)
    homography = MatrixResult(np.eye(3), (SIZE, SIZE), (SIZE, SIZE))
    refit = QuadraticRefit(candidate_px=1e4, huber_px=1e4, ridge=0.0)
    result = refine_to_quadratic(homography, src, dst, refit)
    assert result is homography
    assert "folds inside the field of view" in result.global_note
    direct = QuadraticResult(folding, (SIZE, SIZE), (SIZE, SIZE))
    assert not direct.invertible and direct.jac_min < 0
    with pytest.raises(NotInvertibleError, match="folds"):
        direct.moving_to_fixed(src[:3])


def test_too_few_matches_keep_the_homography():
    homography = MatrixResult(np.eye(3), (SIZE, SIZE), (SIZE, SIZE))
    pts = np.random.default_rng(1).uniform(0, SIZE, size=(5, 2))
    result = refine_to_quadratic(homography, pts, pts + 1.0)
    assert result is homography and "need 12" in result.global_note
