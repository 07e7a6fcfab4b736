"""Global models: fits recover known maps, the quadratic inverse is exact, folds are found."""

from __future__ import annotations

import numpy as np
import pytest

from firereg.evaluation.results import NotInvertibleError
from firereg.transforms.global_models import (
    GlobalModel,
    RobustConfig,
    fit_model,
    fit_robust,
    fov_points,
    invert_quadratic,
    min_jacobian_det,
    quadratic_features,
)

#: a quadratic like the eye's curvature on a 1024 px image: a few px of bending at the rim
TRUE_QUADRATIC = np.array([
    [6.0, 1.02, 0.015, 1.5e-5, -1.0e-5, 2.5e-5],
    [-4.0, -0.02, 0.99, -2.0e-5, 1.2e-5, 1.0e-5],
])


def _points(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(50, 974, size=(n, 2))


def test_quadratic_features_are_the_monomials():
    f = quadratic_features(np.array([[2.0, 3.0]]))
    np.testing.assert_allclose(f, [[1, 2, 3, 4, 6, 9]])


def test_apply_matches_the_formula_and_jacobian_matches_finite_differences():
    model = GlobalModel("quadratic", TRUE_QUADRATIC)
    p = np.array([[100.0, 700.0]])
    x, y = p[0]
    expected = TRUE_QUADRATIC @ np.array([1, x, y, x * x, x * y, y * y])
    np.testing.assert_allclose(model.apply(p)[0], expected)
    h = GlobalModel("homography", [[1.01, 0.02, 5.0], [-0.01, 0.98, -3.0], [2e-5, -1e-5, 1.0]])
    for m in (model, h):
        eps = 1e-4
        num = np.stack([(m.apply(p + [eps, 0]) - m.apply(p - [eps, 0]))[0] / (2 * eps),
                        (m.apply(p + [0, eps]) - m.apply(p - [0, eps]))[0] / (2 * eps)], axis=1)
        np.testing.assert_allclose(m.jacobian(p)[0], num, atol=1e-6)


def test_bad_parameters_and_kinds_are_refused():
    with pytest.raises(ValueError, match="shape"):
        GlobalModel("quadratic", np.eye(3))
    with pytest.raises(ValueError, match="unknown global model kind"):
        fit_model("spline", _points(10), _points(10))
    with pytest.raises(ValueError, match="at least 6 points"):
        fit_model("quadratic", _points(5), _points(5))


@pytest.mark.parametrize("method", ["huber", "ransac"])
def test_robust_quadratic_fit_recovers_a_known_quadratic_from_noisy_points_with_outliers(method):
    rng = np.random.default_rng(1)
    true = GlobalModel("quadratic", TRUE_QUADRATIC)
    src = _points(300)
    dst = true.apply(src) + rng.normal(0, 0.5, size=src.shape)
    dst[:30] += rng.uniform(-60, 60, size=(30, 2))  # 10 % gross outliers
    model, inliers = fit_robust("quadratic", src, dst, RobustConfig(method=method, huber_px=1.5))
    grid = fov_points((1024, 1024), step=32)
    assert np.max(np.linalg.norm(model.apply(grid) - true.apply(grid), axis=1)) < 0.5
    assert inliers[:30].sum() <= 3 and inliers[30:].mean() > 0.8


def test_affine_and_homography_fits_are_exact_on_exact_points():
    src = _points(20)
    h = GlobalModel("homography", [[1.01, 0.02, 5.0], [-0.01, 0.98, -3.0], [2e-5, -1e-5, 1.0]])
    a = GlobalModel("affine", [[0.9, 0.1, 4.0], [-0.1, 1.1, -2.0]])
    for true in (h, a):
        fit = fit_model(true.kind, src, true.apply(src))
        np.testing.assert_allclose(fit.apply(src), true.apply(src), atol=1e-6)


def test_ridge_pulls_an_unconstrained_quadratic_towards_the_homography():
    h = GlobalModel("homography", [[1.01, 0.02, 5.0], [-0.01, 0.98, -3.0], [1e-5, -1e-5, 1.0]])
    rng = np.random.default_rng(2)
    src = rng.uniform(480, 540, size=(40, 2))  # matches only in a small patch: curvature unconstrained
    dst = h.apply(src) + rng.normal(0, 1.0, size=src.shape)
    grid = fov_points((1024, 1024), step=32)
    free = fit_model("quadratic", src, dst)
    pulled = fit_model("quadratic", src, dst, prior=h, ridge=1e-3, radius=512.0)
    err_free = np.max(np.linalg.norm(free.apply(grid) - h.apply(grid), axis=1))
    err_pulled = np.max(np.linalg.norm(pulled.apply(grid) - h.apply(grid), axis=1))
    assert err_pulled < 0.25 * err_free
    assert err_pulled < 15.0  # what is left: the linear part extrapolated from a 60 px patch
    # matches over the whole field of view: the same ridge changes the fit by little
    src = _points(200)
    true = GlobalModel("quadratic", TRUE_QUADRATIC)
    dst = true.apply(src) + rng.normal(0, 0.5, size=src.shape)
    spread_fit = fit_model("quadratic", src, dst, prior=h, ridge=1e-3, radius=512.0)
    assert np.max(np.linalg.norm(spread_fit.apply(grid) - true.apply(grid), axis=1)) < 1.0


def test_inverse_round_trip_is_exact():
    model = GlobalModel("quadratic", TRUE_QUADRATIC)
    start = fit_model("homography", _points(50), model.apply(_points(50)))
    p = fov_points((1024, 1024), step=16)
    back = invert_quadratic(model, model.apply(p), start)
    assert np.max(np.abs(back - p)) < 1e-4
    back_no_start = invert_quadratic(model, model.apply(p))
    assert np.max(np.abs(back_no_start - p)) < 1e-4


def test_fold_is_detected_and_inverse_refuses_where_the_map_folds():
    # x' = x - 0.002 (x - 512)^2 folds at x = 762 (dx'/dx = 0): inside the 1024 px FOV
    c = 0.002
    folding = GlobalModel("quadratic", [[-c * 512**2, 1 + 2 * c * 512, 0, -c, 0, 0], [0, 0, 1, 0, 0, 0]])
    grid = fov_points((1024, 1024), step=16)
    assert min_jacobian_det(folding, grid) < 0
    assert min_jacobian_det(GlobalModel("quadratic", TRUE_QUADRATIC), grid) > 0.5
    # the moving x reached from both sides of the fold: one preimage has det < 0; moving points
    # beyond the fold's maximum have no preimage at all
    with pytest.raises(NotInvertibleError, match="not invertible"):
        invert_quadratic(folding, np.array([[700.0, 500.0], [5000.0, 500.0]]))


def test_fov_points_respect_the_mask():
    mask = np.zeros((64, 64), dtype=bool)
    mask[:32] = True
    pts = fov_points((64, 64), mask, step=4)
    assert len(pts) == 8 * 16 and pts[:, 1].max() < 32
    assert len(fov_points((64, 64), step=4)) < 256  # the inscribed ellipse drops the corners
    with pytest.raises(ValueError, match="mask has shape"):
        fov_points((64, 65), mask)


def test_sampling_grid_maps_every_fixed_pixel_as_apply_does():
    quadratic = GlobalModel("quadratic", [[2.0, 1.01, 0.02, 1e-4, -2e-4, 3e-4], [-1.0, 0.01, 0.98, 2e-4, 1e-4, -1e-4]])
    homography = GlobalModel("homography", [[1.02, 0.01, 3.0], [-0.02, 0.99, -2.0], [1e-5, -2e-5, 1.0]])
    for model in (quadratic, homography):
        map_x, map_y = model.sampling_grid((30, 40))
        assert map_x.shape == map_y.shape == (30, 40) and map_x.dtype == np.float32
        for x, y in ((0, 0), (39, 0), (12, 29), (39, 29)):
            assert np.allclose([map_x[y, x], map_y[y, x]], model.apply(np.array([[x, y]], dtype=float))[0], atol=1e-4)


def test_inverse_of_a_homography_maps_back():
    h = GlobalModel("homography", [[1.02, 0.01, 3.0], [-0.02, 0.99, -2.0], [1e-5, -2e-5, 1.0]])
    points = np.array([[0.0, 0.0], [100.0, 50.0], [300.0, 280.0]])
    assert np.allclose(h.inverse().apply(h.apply(points)), points, atol=1e-9)
    with pytest.raises(ValueError, match="no 3x3 matrix"):
        GlobalModel("quadratic", np.zeros((2, 6))).inverse()
