"""firereg.evaluation.external_points on a hand-made manifest (no images): the CSV is read in point order,
known-bad pairs are ignored, and the scores are the benchmark's (rescore_points) with median and max by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from firereg.evaluation.benchmark import PAIRS_COLUMNS, rescore_points
from firereg.evaluation.external_points import (
    PointsFileError,
    predictions_table,
    read_predictions,
    score_predictions,
    write_report,
)


@pytest.fixture
def manifest() -> pd.DataFrame:
    fixed = {"S01": np.array([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]]), "A01": np.array([[5.0, 5.0], [6.0, 6.0]])}
    rows = [{"name": name, "category": name[0], "fixed_points": pts, "moving_points": pts + [1.0, -2.0]}
            for name, pts in fixed.items()]
    table = pd.DataFrame(rows)
    table.attrs["excluded"] = ["P37"]
    return table


def test_read_in_point_order_ignoring_known_bad_pairs(manifest, tmp_path):
    path = tmp_path / "pred.csv"
    path.write_text("pair,point,x,y,extra\nS01,2,51,58,a\nP37,0,1,1,b\nS01,0,11,18,c\n\nS01,1,31,38,d\n")
    predictions = read_predictions(path, manifest)
    assert list(predictions) == ["S01"]
    np.testing.assert_array_equal(predictions["S01"], [[11, 18], [31, 38], [51, 58]])
    path.write_text("pair,point,x,y\nS01,0,1,inf\n")
    with pytest.raises(PointsFileError, match=r"pred.csv, line 2: y must be a finite number"):
        read_predictions(path, manifest)


def test_scores_are_the_benchmarks(manifest, tmp_path):
    # S01 in the moving image: offsets (0, 0), (3, 4), (6, 8) → distances 0, 5, 10
    moving = manifest.set_index("name").loc["S01", "moving_points"]
    predictions = {"S01": moving + [[0, 0], [3, 4], [6, 8]]}
    points = predictions_table(predictions, "ext", "moving")
    assert list(points.columns) == ["method", "pair", "point", "space", "x", "y"] and len(points) == 3
    pairs = score_predictions(points, manifest, "ext")
    assert list(pairs.columns) == PAIRS_COLUMNS and list(pairs["pair"]) == ["S01", "A01"]  # S, P, A order
    s01 = pairs.iloc[0]
    assert (s01["mean_error"], s01["median_error"], s01["max_error"]) == pytest.approx((5.0, 5.0, 10.0))
    assert s01["mean_error"] == rescore_points(points, manifest)["mean_error"].item()
    assert pairs.iloc[1]["status"] == "failed" and np.isinf(pairs.iloc[1]["mean_error"])
    summary = write_report(pairs, points, tmp_path / "out", ["note one"])
    assert summary.loc[0, "auc_S"] == pytest.approx(20 / 25) and summary.loc[0, "auc_A"] == 0.0
    assert "- note one" in (tmp_path / "out" / "summary.md").read_text()
    with pytest.raises(ValueError, match="space must be one of moving, fixed"):
        predictions_table(predictions, "ext", "both")
