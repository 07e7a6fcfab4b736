"""Tests for firereg.evaluation.fire_protocol: success rates, AUC, classification, summaries."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from firereg.evaluation.fire_protocol import (
    CATEGORIES,
    FIRE_THRESHOLDS,
    classify_errors,
    fire_auc,
    success_curves,
    success_rate,
    summarize,
)

INF = np.inf


def test_thresholds_are_1_to_25():
    assert FIRE_THRESHOLDS.tolist() == list(range(1, 26))
    assert CATEGORIES == ("S", "P", "A")


def test_auc_hand_computed():
    # errors [0.5, 3.0, 10.0, inf]; success at t counts errors < t:
    #   t = 1..3   -> only 0.5              -> 1/4  (3 thresholds; 3.0 < 3 is false)
    #   t = 4..10  -> 0.5, 3.0              -> 2/4  (7 thresholds; 10.0 < 10 is false)
    #   t = 11..25 -> 0.5, 3.0, 10.0        -> 3/4  (15 thresholds; inf never succeeds)
    # AUC = (3 * 0.25 + 7 * 0.5 + 15 * 0.75) / 25 = 15.5 / 25 = 0.62
    errors = [0.5, 3.0, 10.0, INF]
    rates = success_rate(errors)
    expected = np.array([0.25] * 3 + [0.5] * 7 + [0.75] * 15)
    np.testing.assert_allclose(rates, expected)
    assert fire_auc(errors) == pytest.approx(0.62)


def test_success_is_strict_at_threshold():
    rates = success_rate([5.0], thresholds=[4, 5, 6])
    np.testing.assert_array_equal(rates, [0.0, 0.0, 1.0])
    # 5.0 succeeds at t = 6..25 only: 20 of 25 thresholds
    assert fire_auc([5.0]) == pytest.approx(20 / 25)


def test_perfect_and_failed_extremes():
    assert fire_auc([0.0, 0.0]) == 1.0
    assert fire_auc([INF, INF]) == 0.0
    # a failed pair counts as inf: half the pairs never succeed
    assert fire_auc([0.0, INF]) == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [[1.0, math.nan], [], [[1.0, 2.0]], [-1.0]])
def test_success_rate_rejects_bad_errors(bad):
    with pytest.raises(ValueError):
        success_rate(bad)


@pytest.mark.parametrize(
    "median, largest, expected",
    [
        (2.0, 50.0, "acceptable"),  # max exactly 50 is not > 50
        (2.0, 50.01, "inaccurate"),  # max just above 50
        (20.0, 20.0, "acceptable"),  # median exactly 20 is not > 20
        (20.01, 20.01, "inaccurate"),  # median 20.01
        (0.0, 0.0, "acceptable"),
        (1.0, INF, "inaccurate"),  # not finite
    ],
)
def test_classify_errors_boundaries(median, largest, expected):
    assert classify_errors(median, largest, failed=False) == expected


def test_classify_errors_failed():
    assert classify_errors(math.nan, math.nan, failed=True) == "failed"
    assert classify_errors(0.0, 0.0, failed=True) == "failed"


def _row(method, pair, category, mean, median, mx, status="ok", seconds=1.0):
    return dict(
        method=method,
        pair=pair,
        category=category,
        mean_error=mean,
        median_error=median,
        max_error=mx,
        status=status,
        seconds=seconds,
    )


def _toy_table() -> pd.DataFrame:
    rows = [
        # m2 first: output keeps order of first appearance
        _row("m2", "S01", "S", 4.5, 4.0, 9.0, seconds=0.5),
        _row("m1", "S01", "S", 0.5, 0.4, 1.0, seconds=1.0),  # acceptable
        _row("m1", "S02", "S", 3.0, 2.0, 50.0, seconds=2.0),  # acceptable (max 50)
        _row("m1", "S03", "S", 10.0, 20.01, 30.0, seconds=3.0),  # inaccurate (median)
        _row("m1", "S04", "S", INF, INF, INF, status="failed", seconds=4.0),  # failed
        _row("m1", "P01", "P", 2.0, 1.5, 50.01, seconds=5.0),  # inaccurate (max)
        _row("m1", "P02", "P", 30.0, 25.0, 60.0, seconds=6.0),  # inaccurate
        _row("m1", "A01", "A", 0.0, 0.0, 0.0, seconds=7.0),  # acceptable
    ]
    return pd.DataFrame(rows)


def test_summarize_toy_table():
    out = summarize(_toy_table())
    assert out["method"].tolist() == ["m2", "m1"]
    assert list(out.columns) == [
        "method",
        "n_pairs",
        "auc_S",
        "auc_P",
        "auc_A",
        "mAUC",
        "median_error",
        "failed",
        "inaccurate",
        "acceptable",
        "median_seconds",
    ]
    m1 = out.set_index("method").loc["m1"]
    assert m1["n_pairs"] == 7
    # S: [0.5, 3, 10, inf] -> 0.62 (see test_auc_hand_computed)
    assert m1["auc_S"] == pytest.approx(0.62)
    # P: [2, 30] -> t = 1, 2: 0; t = 3..25: 1/2 -> 23 * 0.5 / 25 = 0.46
    assert m1["auc_P"] == pytest.approx(0.46)
    # A: [0] -> 1.0
    assert m1["auc_A"] == pytest.approx(1.0)
    assert m1["mAUC"] == pytest.approx((0.62 + 0.46 + 1.0) / 3)
    # sorted mean errors 0, 0.5, 2, 3, 10, 30, inf -> median 3
    assert m1["median_error"] == pytest.approx(3.0)
    assert (m1["failed"], m1["inaccurate"], m1["acceptable"]) == (1, 3, 3)
    assert m1["median_seconds"] == pytest.approx(4.0)

    m2 = out.set_index("method").loc["m2"]
    assert m2["n_pairs"] == 1
    # 4.5 succeeds at t = 5..25 -> 21 / 25
    assert m2["auc_S"] == pytest.approx(21 / 25)
    assert math.isnan(m2["auc_P"]) and math.isnan(m2["auc_A"])
    assert m2["mAUC"] == pytest.approx(21 / 25)  # only categories with pairs
    assert (m2["failed"], m2["inaccurate"], m2["acceptable"]) == (0, 0, 1)
    assert m2["median_seconds"] == pytest.approx(0.5)


def test_summarize_median_error_inf_when_most_fail():
    rows = [
        _row("m", "S01", "S", 1.0, 1.0, 1.0),
        _row("m", "S02", "S", INF, INF, INF, status="failed"),
        _row("m", "S03", "S", INF, INF, INF, status="failed"),
    ]
    out = summarize(pd.DataFrame(rows))
    assert math.isinf(out.loc[0, "median_error"])
    assert out.loc[0, "failed"] == 2


def test_summarize_failed_status_counts_as_inf_whatever_the_error_column_says():
    rows = [
        _row("m", "S01", "S", 0.0, 0.0, 0.0),
        _row("m", "S02", "S", 0.0, 0.0, 0.0, status="failed"),
    ]
    out = summarize(pd.DataFrame(rows))
    assert out.loc[0, "auc_S"] == pytest.approx(0.5)
    assert out.loc[0, "failed"] == 1 and out.loc[0, "acceptable"] == 1


def test_summarize_rejects_bad_tables():
    table = _toy_table()
    with pytest.raises(ValueError, match="seconds"):
        summarize(table.drop(columns=["seconds"]))
    bad = table.copy()
    bad.loc[1, "mean_error"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        summarize(bad)
    bad = table.copy()
    bad.loc[1, "category"] = "X"
    with pytest.raises(ValueError, match="categor"):
        summarize(bad)
    with pytest.raises(ValueError, match="duplicate"):
        summarize(pd.concat([table, table.iloc[[1]]], ignore_index=True))


def test_success_curves_long_format():
    curves = success_curves(_toy_table())
    assert list(curves.columns) == ["method", "category", "threshold", "success_rate"]
    # m2 has only S pairs: S and all; m1 has S, P, A and all
    assert curves[curves["method"] == "m2"]["category"].unique().tolist() == ["S", "all"]
    assert curves[curves["method"] == "m1"]["category"].unique().tolist() == ["S", "P", "A", "all"]
    assert len(curves) == 25 * (2 + 4)
    m1_all = curves[(curves["method"] == "m1") & (curves["category"] == "all")]
    np.testing.assert_array_equal(m1_all["threshold"], FIRE_THRESHOLDS)
    # all m1 errors: 0, 0.5, 2, 3, 10, 30, inf; at t = 3: 0, 0.5, 2 succeed -> 3/7
    assert m1_all.set_index("threshold").loc[3, "success_rate"] == pytest.approx(3 / 7)
    m1_s = curves[(curves["method"] == "m1") & (curves["category"] == "S")]
    np.testing.assert_allclose(m1_s["success_rate"], success_rate([0.5, 3.0, 10.0, INF]))
