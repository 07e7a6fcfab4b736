"""The benchmark runner: outputs, failed methods, resume after a kill, re-scoring (``firereg benchmark``: tests/cli/test_benchmark.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from firereg.evaluation.benchmark import BenchmarkConfig, rescore_points, run_benchmark
from firereg.evaluation.results import MatrixResult
from firereg.transforms.fire_reader import read_fire


class Identity:
    name = "identity"
    identity_by_design = True  # the identity on purpose: not a failed registration (evaluation/sanity.py)

    def register(self, fixed, moving, fixed_mask=None, moving_mask=None):
        return MatrixResult(np.eye(3), fixed.shape[:2], moving.shape[:2])


class Oracle:
    """Least-squares homography of the true control points: near-perfect, invertible.

    Fitted in full-resolution pixels, so the benchmark must run it at full size (256 px).
    """

    name = "oracle"

    def __init__(self) -> None:
        self.current = None  # (fixed_points, moving_points) of the pair being registered

    def register(self, fixed, moving, fixed_mask=None, moving_mask=None):
        import cv2

        f, m = self.current
        h, _ = cv2.findHomography(f, m, 0)
        return MatrixResult(h, fixed.shape[:2], moving.shape[:2])


class Broken:
    name = "broken"

    def register(self, *args):
        raise RuntimeError("no transform today")


class Counting:
    """Identity that counts calls and can be told to 'die' (like a kill) after N pairs."""

    name = "counting"
    identity_by_design = True
    calls: list[int] = []
    die_after: int | None = None

    def register(self, fixed, moving, fixed_mask=None, moving_mask=None):
        if Counting.die_after is not None and len(Counting.calls) >= Counting.die_after:
            raise KeyboardInterrupt  # not an Exception: stops the run like a kill
        Counting.calls.append(1)
        return MatrixResult(np.eye(3), fixed.shape[:2], moving.shape[:2])


def _factory(manifest):
    oracle = Oracle()
    table = {"identity": Identity, "broken": Broken, "counting": Counting, "oracle": lambda: oracle}

    def factory(spec):
        if spec not in table:
            raise ValueError(f"unknown method {spec!r}")
        return table[spec]()

    return factory, oracle


@pytest.fixture()
def manifest(fire_data):
    return read_fire(fire_data)


def test_outputs_failed_method_and_rescoring(manifest, tmp_path, monkeypatch):
    factory, oracle = _factory(manifest)
    # the oracle needs the pair's truth: hand it over when the pair's images are read
    import firereg.evaluation.benchmark as bench

    original = bench.load_pair

    def load_pair(row, **kwargs):
        oracle.current = (np.asarray(row["fixed_points"]), np.asarray(row["moving_points"]))
        return original(row, **kwargs)

    monkeypatch.setattr(bench, "load_pair", load_pair)
    out = tmp_path / "bench"
    pairs = run_benchmark(
        manifest, BenchmarkConfig(methods=["identity", "oracle", "broken"], benchmark_size=256), out, factory=factory, progress=False
    )
    assert len(pairs) == 3 * len(manifest)
    broken = pairs[pairs["method"] == "broken"]
    assert (broken["status"] == "failed").all()
    assert broken["reason"].str.contains("RuntimeError: no transform today").all()
    assert np.isinf(broken["mean_error"]).all()
    oracle_rows = pairs[pairs["method"] == "oracle"]
    assert (oracle_rows["direction"] == "fixed").all()
    assert oracle_rows["mean_error"].max() < 3.0  # the generator's distortion is not a homography
    for name in ("pairs.csv", "points.csv", "summary.csv", "summary.md", "success_rate.png"):
        assert (out / name).is_file(), name
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["broken", "failed"] == len(manifest)
    assert summary.loc["oracle", "mAUC"] > 0.8 > summary.loc["identity", "mAUC"]
    text = (out / "summary.md").read_text()
    assert f"pairs: {len(manifest)}" in text and "P37" in text
    # points.csv: every control point in both spaces for invertible methods, and re-scorable
    points = pd.read_csv(out / "points.csv")
    n_points = sum(len(p) for p in manifest["fixed_points"])
    assert (points["method"] == "oracle").sum() == 2 * n_points
    rescored = rescore_points(points, manifest).set_index(["method", "pair"])
    for row in pairs[pairs["status"] == "ok"].itertuples():
        assert rescored.loc[(row.method, row.pair), "mean_error"] == pytest.approx(row.mean_error, abs=1e-6)
    # deformation quality: identity and the oracle homography do not fold; a failed pair has none
    assert np.allclose(pairs.loc[pairs["method"] == "identity", "jac_min"], 1.0)
    assert (pairs.loc[pairs["method"] != "broken", "folding_fraction"] == 0).all()
    assert pairs.loc[pairs["method"] == "broken", "jac_min"].isna().all()
    assert summary.loc["oracle", "folding_pct"] == 0 and "folding_pct" in text
    overlays = list((out / "overlays" / "oracle").glob("*_checkerboard.png"))
    assert len(overlays) == len(set(manifest["category"]))


def test_killed_benchmark_resumes_without_redoing_pairs(manifest, tmp_path):
    factory, _ = _factory(manifest)
    out = tmp_path / "bench"
    Counting.calls = []
    Counting.die_after = 2
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(manifest, BenchmarkConfig(methods=["counting"], benchmark_size=96), out, factory=factory, progress=False)
    assert len(list((out / "records" / "counting").glob("*.json"))) == 2
    assert not (out / "pairs.csv").exists()  # tables are written only when complete
    Counting.die_after = None
    Counting.calls = []
    pairs = run_benchmark(manifest, BenchmarkConfig(methods=["counting"], benchmark_size=96), out, factory=factory, progress=False)
    assert len(Counting.calls) == len(manifest) - 2  # finished pairs were not redone
    assert len(pairs) == len(manifest) and (pairs["status"] == "ok").all()
    Counting.calls = []
    run_benchmark(manifest, BenchmarkConfig(methods=["counting"], benchmark_size=96), out, factory=factory, progress=False)
    assert Counting.calls == []


def test_unknown_method_fails_before_any_work(manifest, tmp_path):
    factory, _ = _factory(manifest)
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        run_benchmark(manifest, BenchmarkConfig(methods=["identity", "nope"]), tmp_path / "b", factory=factory)
    assert not (tmp_path / "b").exists()
