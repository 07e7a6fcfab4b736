"""firereg.evaluation.results: field sampling of DisplacementFieldResult, scaled results."""

from __future__ import annotations

import numpy as np
import pytest

from firereg.evaluation.results import (
    DisplacementFieldResult,
    MatrixResult,
    ResizedMethod,
    ScaledResult,
)


def _linear_field(h: int = 30, w: int = 40) -> np.ndarray:
    """Row-major (2, H, W) field dx = 0.5 x + 1, dy = -0.25 y + 0.1 x."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([0.5 * xs + 1.0, -0.25 * ys + 0.1 * xs])


def test_field_is_bilinear_between_pixels():
    result = DisplacementFieldResult(_linear_field())
    pts = np.array([[0.0, 0.0], [10.25, 3.5], [38.9, 28.1], [7.0, 12.0]])
    expected = pts + np.stack([0.5 * pts[:, 0] + 1.0, -0.25 * pts[:, 1] + 0.1 * pts[:, 0]], axis=1)
    np.testing.assert_allclose(result.fixed_to_moving(pts), expected, atol=1e-5)


def test_field_repeats_its_edge_outside_the_grid():
    field = _linear_field()
    result = DisplacementFieldResult(field)
    pts = np.array([[-5.0, 3.0], [45.0, 29.0], [12.0, -7.5], [20.0, 40.0]])
    inside = np.clip(pts, [0, 0], [39, 29])  # the nearest grid position
    expected = pts + (DisplacementFieldResult(field).fixed_to_moving(inside) - inside)
    np.testing.assert_allclose(result.fixed_to_moving(pts), expected, atol=1e-5)


def test_field_maps_more_points_than_opencv_maps_hold():
    result = DisplacementFieldResult(_linear_field())
    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(0, 39, 40_000), rng.uniform(0, 29, 40_000)]
    mapped = result.fixed_to_moving(pts)
    assert mapped.shape == (40_000, 2) and mapped.dtype == np.float64
    np.testing.assert_allclose(mapped[:, 0], 1.5 * pts[:, 0] + 1.0, atol=1e-4)
    assert result.fixed_to_moving(np.zeros((0, 2))).shape == (0, 2)


def test_scaled_result_maps_working_pixels_to_full_resolution():
    # at working size (50, 40) the moving image is shifted by 2 px in x: 4 px at full size (100, 80)
    inner = MatrixResult(np.array([[1.0, 0, 2.0], [0, 1, 0], [0, 0, 1]]), (40, 50), (40, 50))
    result = ScaledResult(inner, (80, 100), (80, 100))
    np.testing.assert_allclose(result.fixed_to_moving(np.array([[10.0, 20.0]])), [[14.0, 20.0]])
    np.testing.assert_allclose(result.moving_to_fixed(np.array([[14.0, 20.0]])), [[10.0, 20.0]])


def test_resized_method_gives_the_method_benchmark_size_images():
    seen = []

    class Spy:
        name = "spy"

        def register(self, fixed, moving, fixed_mask=None, moving_mask=None):
            seen.append((fixed.shape, fixed_mask.shape, fixed_mask.dtype))
            return MatrixResult(np.eye(3), fixed.shape[:2], moving.shape[:2])

    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)  # content: not blank
    mask = np.ones((200, 300), dtype=bool)
    result = ResizedMethod(Spy(), benchmark_size=150).register(image, image, mask, mask)
    assert seen == [((100, 150, 3), (100, 150), np.dtype(bool))]
    assert (result.fixed_shape, result.inner.fixed_shape) == ((200, 300), (100, 150))
    with pytest.raises(ValueError, match="benchmark size"):
        ResizedMethod(Spy(), 0)
