"""Tests for firereg.transforms.fire_motions: exact maps both ways, and motions with FIRE's statistics."""

from __future__ import annotations

import numpy as np
import pytest

from firereg.transforms.fire_motions import PairMotion, sample_motion, sample_on_grid
from firereg.transforms.motion_stats import fit_affine, fit_homography, fit_quadratic

SIZE = 2912
RADIUS = 0.47 * SIZE


def _grid(n: int = 15) -> np.ndarray:
    xs = np.linspace(0.1 * SIZE, 0.9 * SIZE, n)
    return np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2)


@pytest.mark.parametrize("category", ["S", "P", "A"])
def test_maps_invert_each_other(category):
    rng = np.random.default_rng(1)
    for _ in range(10):
        motion = sample_motion(rng, category, SIZE, RADIUS)
        pts = _grid()
        np.testing.assert_allclose(motion.moving_to_fixed(motion.fixed_to_moving(pts)), pts, atol=1e-7)
        np.testing.assert_allclose(motion.fixed_to_moving(motion.moving_to_fixed(pts)), pts, atol=1e-7)


def test_identity_and_pure_shift():
    zero = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    pts = _grid(5)
    identity = PairMotion(SIZE, RADIUS, np.eye(3).tolist(), zero, [])
    np.testing.assert_allclose(identity.fixed_to_moving(pts), pts)
    shift = PairMotion(SIZE, RADIUS, [[1, 0, 0.1], [0, 1, -0.2], [0, 0, 1]], zero, [])
    np.testing.assert_allclose(shift.fixed_to_moving(pts) - pts, np.tile([0.1 * RADIUS, -0.2 * RADIUS], (25, 1)))


def test_sample_on_grid_matches_the_exact_map():
    motion = sample_motion(np.random.default_rng(3), "P", 256, 0.47 * 256)
    dense = sample_on_grid(motion.moving_to_fixed, 256)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float64)
    exact = motion.moving_to_fixed(np.stack([xx, yy], axis=-1))
    inside = np.all(np.isfinite(exact), axis=-1) & (np.hypot(xx - 127.5, yy - 127.5) < 120)
    assert np.abs(dense - exact)[inside].max() < 0.02


def test_unknown_category_is_named():
    with pytest.raises(ValueError, match="'Q'"):
        sample_motion(np.random.default_rng(0), "Q", 256, 120.0)


def _inside(points: np.ndarray, margin: float = 1.0) -> np.ndarray:
    return np.linalg.norm(points - (SIZE - 1) / 2, axis=-1) <= margin * RADIUS


def _motion_table(category: str, n: int, seed: int = 0) -> np.ndarray:
    """Per pair at 2912 px: displacement and the affine / homography / quadratic residuals of 10
    points spread over the overlap (as the generator places them), for motions the generator accepts."""
    rng = np.random.default_rng(seed)
    g = _grid(40)
    g = g[_inside(g)]
    rows = []
    while len(rows) < n:
        motion = sample_motion(rng, category, SIZE, RADIUS)
        overlap = _inside(motion.fixed_to_moving(g)).mean()
        if not (0.2 <= overlap <= 0.72 if category == "P" else overlap >= 0.78):
            continue
        cand = rng.uniform(0, SIZE, (3000, 2))
        cand = cand[_inside(cand, 0.9) & _inside(motion.fixed_to_moving(cand), 0.9)]
        chosen = [0]
        dist = np.linalg.norm(cand - cand[0], axis=1)
        for _ in range(9):
            chosen.append(int(np.argmax(dist)))
            dist = np.minimum(dist, np.linalg.norm(cand - cand[chosen[-1]], axis=1))
        src = cand[chosen]
        dst = motion.fixed_to_moving(src)
        rows.append([np.linalg.norm(dst - src, axis=1).mean()]
                    + [np.linalg.norm(fit(src, dst) - dst, axis=1).mean() for fit in (fit_affine, fit_homography, fit_quadratic)])
    return np.array(rows)


def test_motion_statistics_match_fire():
    """FIRE (medians at 2912 px): S 29 px, residuals 1.21 / 1.06 / 0.68; P 789 (max 1797), 13.1 / 9.85 / 1.48;
    A 44, 5.3 / 4.7 / 3.4. The sampled motions stay within a factor of about 1.6 of each."""
    s, p, a = (_motion_table(c, n) for c, n in (("S", 120), ("P", 80), ("A", 60)))
    med = {k: np.median(v, axis=0) for k, v in (("S", s), ("P", p), ("A", a))}
    assert 20 < med["S"][0] < 40 and s[:, 0].max() > 100
    assert 650 < med["P"][0] < 950 and p[:, 0].max() > 1400
    assert 30 < med["A"][0] < 60 and a[:, 0].max() < 150
    fire = {"S": (1.21, 1.06, 0.68), "P": (13.1, 9.85, 1.48), "A": (5.3, 4.7, 3.4)}
    for cat, residuals in fire.items():
        for measured, target in zip(med[cat][1:], residuals):
            assert target / 1.6 < measured < target * 1.6, (cat, med[cat], residuals)
    # the curvature: a homography leaves P's motion far from exact, a quadratic nearly exact
    assert med["P"][2] > 5 and med["P"][3] < 0.3 * med["P"][2]
