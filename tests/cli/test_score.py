"""``firereg score`` (firereg.pipelines.cli.score): external predictions scored with the benchmark's protocol,
numbers checked by hand, bad CSVs named by line, ``--merge`` into a benchmark folder. Data: the shared
``fire_data`` fixture (S01, S02, P01, P02, A01; tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from firereg.pipelines.cli.app import app
from firereg.transforms.fire_reader import read_fire

runner = CliRunner()


def _write_predictions(path: Path, fire_data: Path, offset=(3.0, 4.0), space: str = "moving",
                       skip: tuple[str, ...] = ("A01",)) -> Path:
    """Ground truth + ``offset`` for every pair but ``skip``, in the image ``space`` names."""
    lines = ["pair,point,x,y"]
    for row in read_fire(fire_data).itertuples():
        if row.name in skip:
            continue
        for i, (x, y) in enumerate(row.moving_points if space == "moving" else row.fixed_points):
            lines.append(f"{row.name},{i},{float(x + offset[0])!r},{float(y + offset[1])!r}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("space", ["moving", "fixed"])
def test_score_a_known_offset(fire_data, tmp_path, space):
    points = _write_predictions(tmp_path / "superretina.csv", fire_data, offset=(3.3, 4.4), space=space)
    out = tmp_path / "score"
    result = runner.invoke(app, ["score", "--data", str(fire_data), "--points", str(points), "--space", space,
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("pairs.csv", "points.csv", "summary.csv", "summary.md", "success_rate.png"):
        assert (out / name).is_file()
    pairs = pd.read_csv(out / "pairs.csv").set_index("pair")
    ok = pairs.drop(index="A01")
    assert set(ok["method"]) == {"superretina"} and set(ok["direction"]) == {space}
    # every point is off by (3.3, 4.4): 5.5 px, for the mean, the median and the max (clear of the
    # integer thresholds, where a rounding of 1e-15 px would flip success)
    for column in ("mean_error", "median_error", "max_error"):
        np.testing.assert_allclose(ok[column], 5.5, rtol=0, atol=1e-9)
    assert pairs.loc["A01", "status"] == "failed" and pairs.loc["A01", "reason"] == "no predictions"
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    # by hand: error 5.5 < t for t = 6..25, i.e. 20 of 25 thresholds; A01 failed: AUC 0
    assert summary["auc_S"] == pytest.approx(0.8) and summary["auc_P"] == pytest.approx(0.8)
    assert summary["auc_A"] == 0.0 and summary["mAUC"] == pytest.approx(1.6 / 3)
    assert summary["failed"] == 1 and summary["median_error"] == pytest.approx(5.5)
    assert "0.533" in (out / "summary.md").read_text() and "superretina" in result.stdout


def test_score_names_what_is_wrong_in_the_csv(fire_data, tmp_path):
    good = _write_predictions(tmp_path / "good.csv", fire_data).read_text().splitlines()
    header, rows = good[0], good[1:]
    n_s01 = sum(r.startswith("S01,") for r in rows)
    first = rows[0].split(",")[0]  # the pair of the first row (point 0)
    n_first = sum(r.startswith(f"{first},") for r in rows)
    cases = {
        "columns": ("pair,point,x\nS01,0,1\n", ["columns.csv", "missing column(s) y"]),
        "unknown": ("\n".join([header, *rows[:3], "Q99,0,1,2"]), ["unknown.csv, line 5", "unknown pair 'Q99'"]),
        "missing": ("\n".join([header, *rows[1:]]), ["missing.csv", f"pair {first}", "point(s) 0", f"{n_first} control points"]),
        "text": ("\n".join([header, rows[0], "S01,1,abc,2", *rows[2:]]), ["text.csv, line 3", "x is not a number: 'abc'"]),
        "twice": ("\n".join([header, *rows[:2], rows[1]]), ["twice.csv, line 4", "point 1 given twice", "line 3"]),
        "range": ("\n".join([header, f"S01,{n_s01},1,2"]), ["range.csv, line 2", f"got point {n_s01}"]),
        "fraction": ("\n".join([header, "S01,0.5,1,2"]), ["fraction.csv, line 2", "integer point number"]),
        "empty": (header + "\n", ["empty.csv", "no predictions"]),
    }
    for name, (text, words) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        result = runner.invoke(app, ["score", "--data", str(fire_data), "--points", str(path), "--out", str(tmp_path / "o")])
        assert result.exit_code == 2, (name, result.output)
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert all(w in result.stderr for w in words), (name, words, result.stderr)
    result = runner.invoke(app, ["score", "--data", str(fire_data), "--points", str(tmp_path / "none.csv"),
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "none.csv" in result.stderr
    result = runner.invoke(app, ["score", "--data", str(fire_data), "--points", str(tmp_path / "good.csv"),
                                 "--space", "both", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--space" in result.stderr
    assert not (tmp_path / "o").exists()  # nothing written for bad input


def test_score_merge_adds_the_method_to_a_benchmark(fire_data, tmp_path):
    bench = tmp_path / "bench"
    result = runner.invoke(app, ["benchmark", "--data", str(fire_data), "--methods", "identity", "--size", "64",
                                 "--out", str(bench)])
    assert result.exit_code == 0, result.output
    before = pd.read_csv(bench / "pairs.csv")
    points = _write_predictions(tmp_path / "ext.csv", fire_data, offset=(3.3, 4.4), skip=())
    args = ["score", "--data", str(fire_data), "--points", str(points), "--out", str(tmp_path / "score"), "--merge", str(bench)]
    for _ in range(2):  # merging again replaces the method's rows
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    after = pd.read_csv(bench / "pairs.csv")
    assert len(after) == 2 * len(before)
    pd.testing.assert_frame_equal(after[after["method"] == "identity"].reset_index(drop=True), before)
    np.testing.assert_allclose(after.loc[after["method"] == "ext", "mean_error"], 5.5, atol=1e-9)
    summary = pd.read_csv(bench / "summary.csv").set_index("method")
    assert list(summary.index) == ["identity", "ext"] and summary.loc["ext", "mAUC"] == pytest.approx(0.8)
    text = (bench / "summary.md").read_text()
    assert "| ext |" in text and "| identity |" in text and "- data: " in text and text.count("merged ext:") == 1
    assert set(pd.read_csv(bench / "points.csv")["method"]) == {"identity", "ext"}
    assert "ext" in json.loads((bench / "merged_methods.json").read_text())
    # the benchmark's own label is refused, before anything is written
    result = runner.invoke(app, [*args[:-4], "--out", str(tmp_path / "clash"), "--merge", str(bench),
                                 "--method-label", "identity"])
    assert result.exit_code == 2 and "'identity'" in result.stderr and "--method-label" in result.stderr
    assert not (tmp_path / "clash").exists()
