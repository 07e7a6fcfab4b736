"""Tests for firereg.transforms.motion_stats: the least-squares fits, residuals and per-category table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from firereg.transforms.motion_stats import (
    FIRE_REFERENCE,
    fit_affine,
    fit_homography,
    fit_quadratic,
    motion_statistics,
    pair_motion_statistics,
)


def _points(n: int = 10, size: float = 1000.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.1 * size, 0.9 * size, (n, 2))


def _residual(fit, src, dst) -> float:
    return float(np.mean(np.linalg.norm(fit(src, dst) - dst, axis=1)))


def test_pure_affine_motion_has_no_affine_residual():
    src = _points()
    dst = src @ np.array([[1.02, 0.05], [-0.04, 0.97]]).T + [30.0, -12.0]
    for fit in (fit_affine, fit_quadratic):
        assert _residual(fit, src, dst) < 1e-9, fit.__name__
    assert _residual(fit_homography, src, dst) < 1e-3  # cv2's solver stops at ~1e-5 px


def test_pure_homography_is_fit_by_the_homography_only():
    src = _points()
    h = np.array([[1.0, 0.02, 20.0], [-0.01, 1.0, 5.0], [2e-4, -1e-4, 1.0]])
    w = np.c_[src, np.ones(len(src))] @ h.T
    dst = w[:, :2] / w[:, 2:]
    assert _residual(fit_homography, src, dst) < 1e-3
    assert _residual(fit_affine, src, dst) > 1.0


def test_pure_quadratic_motion_is_fit_by_the_quadratic_only():
    src = _points()
    x, y = src.T / 1000.0
    dst = src + 1000.0 * np.stack([0.01 + 0.02 * x * x - 0.03 * x * y, -0.02 + 0.025 * y * y + 0.01 * x * y], axis=1)
    assert _residual(fit_quadratic, src, dst) < 1e-9
    assert _residual(fit_homography, src, dst) > 0.3
    assert _residual(fit_affine, src, dst) > _residual(fit_homography, src, dst)


def _manifest(tmp_path, pairs: dict[str, tuple[np.ndarray, np.ndarray]], size: int) -> pd.DataFrame:
    image = tmp_path / "fixed.png"
    Image.fromarray(np.zeros((size, size), np.uint8)).save(image)
    rows = [{"name": name, "category": name[0], "fixed": str(image), "moving": str(image),
             "fixed_points": src, "moving_points": dst} for name, (src, dst) in pairs.items()]
    return pd.DataFrame(rows)


def test_statistics_table_scales_to_fire_size(tmp_path):
    src = _points(size=1024)
    x, y = (src.T - 512) / 512
    curved = src + 20.0 * np.stack([x * x, x * y], axis=1)
    pairs = {"S01": (src, src + [3.0, 4.0]), "S02": (src, src + [6.0, 8.0]), "P01": (src, curved + [300.0, 0.0])}
    manifest = _manifest(tmp_path, pairs, 1024)
    per_pair = pair_motion_statistics(manifest)
    scale = 2912 / 1024
    assert per_pair["size_px"].tolist() == [1024] * 3
    np.testing.assert_allclose(per_pair["displacement_px"][:2], [5.0, 10.0])
    np.testing.assert_allclose(per_pair["displacement_2912"][:2], [5.0 * scale, 10.0 * scale])
    table = motion_statistics(manifest).set_index("category")
    assert table.loc["S", "pairs"] == 2 and table.loc["all", "pairs"] == 3
    assert table.loc["S", "displacement_median"] == pytest.approx(7.5 * scale)
    assert table.loc["S", "displacement_max"] == pytest.approx(10.0 * scale)
    assert table.loc["S", "affine_residual"] < 1e-6
    assert table.loc["P", "quadratic_residual"] < 1e-6 < table.loc["P", "affine_residual"]
    assert table.loc["P", "affine_residual"] > 1.0
    unscaled = motion_statistics(manifest, scaled=False).set_index("category")
    assert unscaled.loc["S", "displacement_median"] == pytest.approx(7.5)
    assert "A" not in table.index
    assert list(table.reset_index().columns) == list(FIRE_REFERENCE.columns)


def test_motion_summary_puts_fire_next_to_the_data(tmp_path):
    from firereg.transforms.data_summary import motion_summary

    src = _points(size=512)
    table = motion_summary(_manifest(tmp_path, {"S01": (src, src + [1.0, 0.0])}, 512))
    assert table["data"].tolist() == ["this", "this", "FIRE", "FIRE", "FIRE"]
    assert table["category"].tolist() == ["S", "all", "S", "P", "A"]
    assert table.loc[0, "disp_median"] == pytest.approx(2912 / 512)
    assert table.loc[3, "disp_median"] == 789.0 and table.loc[3, "homography_res"] == 9.85
