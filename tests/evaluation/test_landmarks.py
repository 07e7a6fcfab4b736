"""Tests for firereg.evaluation.landmarks: distances, pair errors, direction choice."""

from __future__ import annotations

import numpy as np
import pytest

from firereg.evaluation.landmarks import (
    PairError,
    measure_pair,
    pair_error,
    point_distances,
)
from firereg.evaluation.results import DisplacementFieldResult, MatrixResult

FIXED_PTS = np.array([[10.0, 20.0], [30.0, 5.0], [0.0, 0.0], [49.0, 39.0]])


# --- point_distances / pair_error ---------------------------------------------------


def test_point_distances_euclidean():
    mapped = np.array([[3.0, 4.0], [1.0, 1.0], [-2.0, 0.0]])
    target = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(point_distances(mapped, target), [5.0, 0.0, 2.0])


@pytest.mark.parametrize(
    "mapped_shape, target_shape",
    [((3, 2), (2, 2)), ((3, 3), (3, 3)), ((6,), (6,)), ((2, 2, 2), (2, 2, 2))],
)
def test_point_distances_shape_errors_quote_shapes(mapped_shape, target_shape):
    with pytest.raises(ValueError) as err:
        point_distances(np.zeros(mapped_shape), np.zeros(target_shape))
    assert str(mapped_shape) in str(err.value)
    assert str(target_shape) in str(err.value)


def test_pair_error_numbers():
    target = np.zeros((4, 2))
    # distances 0, 5, 10, 1 -> mean 4, median 3, max 10
    mapped = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0], [0.0, 1.0]])
    e = pair_error(mapped, target, "fixed")
    assert e == PairError(mean=4.0, median=3.0, max=10.0, n_points=4, direction="fixed")


def test_pair_error_is_frozen():
    e = pair_error(np.zeros((1, 2)), np.zeros((1, 2)), "moving")
    with pytest.raises(AttributeError):
        e.mean = 1.0  # type: ignore[misc]


def test_pair_error_rejects_bad_direction_and_empty():
    with pytest.raises(ValueError, match="direction"):
        pair_error(np.zeros((2, 2)), np.zeros((2, 2)), "both")
    with pytest.raises(ValueError, match="0 points"):
        pair_error(np.zeros((0, 2)), np.zeros((0, 2)), "fixed")


# --- measure_pair --------------------------------------------------------------------


def test_measure_pair_invertible_translation_is_fixed_direction_zero_error():
    # fixed (x, y) -> moving (x + 5, y - 3)
    matrix = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [0.0, 0.0, 1.0]])
    result = MatrixResult(matrix, fixed_shape=(40, 50), moving_shape=(40, 50))
    moving_pts = FIXED_PTS + [5.0, -3.0]
    err, mapped = measure_pair(result, FIXED_PTS, moving_pts)
    assert err.direction == "fixed"
    assert err.n_points == 4
    assert err.mean == pytest.approx(0.0, abs=1e-9)
    assert err.max == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(mapped, FIXED_PTS, atol=1e-9)  # mapped into the fixed image


def test_measure_pair_invertible_error_is_in_fixed_pixels():
    # fixed -> moving scales by 2; the moving control points are off by 4 px in x,
    # which is 2 px in the fixed image (and would be 4 px if measured in the moving image).
    matrix = np.diag([2.0, 2.0, 1.0])
    result = MatrixResult(matrix, fixed_shape=(40, 50), moving_shape=(80, 100))
    moving_pts = 2.0 * FIXED_PTS + [4.0, 0.0]
    err, mapped = measure_pair(result, FIXED_PTS, moving_pts)
    assert err.direction == "fixed"
    assert err.mean == pytest.approx(2.0)
    assert err.median == pytest.approx(2.0)
    assert err.max == pytest.approx(2.0)
    np.testing.assert_allclose(mapped, FIXED_PTS + [2.0, 0.0])


def test_measure_pair_displacement_field_is_moving_direction():
    field = np.zeros((2, 40, 50), dtype=np.float32)
    field[0] = 5.0  # x displacement
    field[1] = -3.0  # y displacement
    result = DisplacementFieldResult(field)
    assert not result.invertible
    moving_pts = FIXED_PTS + [5.0, -3.0]
    err, mapped = measure_pair(result, FIXED_PTS, moving_pts)
    assert err.direction == "moving"
    assert err.mean == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(mapped, moving_pts, atol=1e-5)  # mapped into the moving image

    # off by (3, 4) in the moving image -> 5 px
    err, _ = measure_pair(result, FIXED_PTS, moving_pts + [3.0, 4.0])
    assert err.direction == "moving"
    assert err.mean == pytest.approx(5.0, abs=1e-5)


def test_measure_pair_falls_back_when_inverse_raises():
    class ClaimsInvertible(DisplacementFieldResult):
        invertible = True  # but moving_to_fixed (base class) raises NotInvertibleError

    result = ClaimsInvertible(np.zeros((2, 40, 50), dtype=np.float32))
    err, mapped = measure_pair(result, FIXED_PTS, FIXED_PTS + [0.0, 2.0])
    assert err.direction == "moving"
    assert err.mean == pytest.approx(2.0)
    np.testing.assert_allclose(mapped, FIXED_PTS)


def test_measure_pair_shape_mismatch_quotes_shapes():
    result = MatrixResult(np.eye(3), (40, 50), (40, 50))
    with pytest.raises(ValueError) as err:
        measure_pair(result, np.zeros((4, 2)), np.zeros((3, 2)))
    assert "(4, 2)" in str(err.value) and "(3, 2)" in str(err.value)
