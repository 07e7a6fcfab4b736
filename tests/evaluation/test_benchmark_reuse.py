"""Re-running a benchmark into the same ``--out`` (issue 14, item 1): a record is reused only when its
fingerprint (data, the pair's files, benchmark size, method and its settings, checkpoint content,
firereg version) still holds; otherwise it is recomputed, and the run says how many and why."""

from __future__ import annotations

import json
import shutil
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from firereg.evaluation.benchmark import BenchmarkConfig, run_benchmark
from firereg.evaluation.results import MatrixResult
from firereg.pipelines.method_specs import make_any_method, method_fingerprint
from firereg.transforms.fire_reader import read_fire


class Shift:
    """A translation of ``dx`` px at the working size; counts its calls (class-wide)."""

    calls: ClassVar[list[str]] = []

    def __init__(self, name: str, dx: float) -> None:
        self.name, self.dx = name, dx

    def register(self, fixed, moving, fixed_mask=None, moving_mask=None):
        Shift.calls.append(self.name)
        matrix = np.array([[1.0, 0.0, self.dx], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        return MatrixResult(matrix, fixed.shape[:2], moving.shape[:2])


def factory(spec: str) -> Shift:
    """``a`` and ``b`` are two different methods that both call themselves ``m``."""
    return {"a": Shift("m", 0.0), "b": Shift("m", 6.0), "c": Shift("c", 3.0)}[spec]


def _run(manifest, out, methods, size=96, **kwargs):
    Shift.calls = []
    return run_benchmark(manifest, BenchmarkConfig(methods=methods, benchmark_size=size), out, factory=factory,
                         progress=False, **kwargs)


def _errors(pairs: pd.DataFrame) -> np.ndarray:
    return pairs.sort_values(["method", "pair"])["mean_error"].to_numpy()


@pytest.fixture()
def manifest(fire_data):
    return read_fire(fire_data)


def test_same_label_for_another_method_is_recomputed(manifest, tmp_path):
    out = tmp_path / "bench"
    first = _run(manifest, out, ["a"])
    again = _run(manifest, out, ["b"])  # the label `m` now names another method
    assert len(Shift.calls) == len(manifest)
    fresh = _run(manifest, tmp_path / "fresh", ["b"])
    assert np.allclose(_errors(again), _errors(fresh))
    assert not np.allclose(_errors(again), _errors(first))
    summary, fresh_summary = (pd.read_csv(p / "summary.csv") for p in (out, tmp_path / "fresh"))
    assert summary["mAUC"].tolist() == fresh_summary["mAUC"].tolist()
    assert again.attrs["records"]["recomputed"] == len(manifest) and again.attrs["records"]["reused"] == 0
    assert set(again.attrs["records"]["reasons"]) == {"changed: method"}
    assert f"0 reused from an earlier run, 0 new, {len(manifest)} recomputed" in (out / "summary.md").read_text()


def test_unchanged_reused_and_size_change_recomputed(manifest, tmp_path):
    out = tmp_path / "bench"
    first = _run(manifest, out, ["c"], size=96)
    assert first.attrs["records"] == {"reused": 0, "new": len(manifest), "recomputed": 0, "reasons": []}
    again = _run(manifest, out, ["c"], size=96)
    assert Shift.calls == [] and again.attrs["records"]["reused"] == len(manifest)
    assert np.array_equal(_errors(again), _errors(first))
    assert f"records: {len(manifest)} reused" in (out / "summary.md").read_text()
    bigger = _run(manifest, out, ["c"], size=192)  # 3 px at 192 px is half the full-resolution shift of 96 px
    assert len(Shift.calls) == len(manifest)
    assert set(bigger.attrs["records"]["reasons"]) == {"changed: benchmark_size"}
    assert np.allclose(_errors(bigger), _errors(_run(manifest, tmp_path / "fresh", ["c"], size=192)))
    assert not np.allclose(_errors(bigger), _errors(first))


def test_changed_data_recomputes_what_changed(manifest, fire_data, tmp_path):
    data = tmp_path / "fire"
    shutil.copytree(fire_data, data)
    out = tmp_path / "bench"
    _run(read_fire(data), out, ["c"])
    other = tmp_path / "other"
    shutil.copytree(fire_data, other)
    moved = _run(read_fire(other), out, ["c"])  # another --data
    assert len(Shift.calls) == len(manifest) and moved.attrs["records"]["recomputed"] == len(manifest)
    assert all(r.startswith("changed: data") for r in moved.attrs["records"]["reasons"])
    # one pair's control points edited in place: only that pair is recomputed, with the new truth
    truth = other / "Ground Truth" / "control_points_S01_1_2.txt"
    rows = np.loadtxt(truth, ndmin=2)
    rows[:, 2] += 4.0  # every moving x 4 px further right
    np.savetxt(truth, rows, fmt="%.3f")
    edited = _run(read_fire(other), out, ["c"])
    assert Shift.calls == ["c"]
    assert edited.attrs["records"]["reasons"] == ["changed: pair"]
    before = moved.set_index("pair").loc["S01", "mean_error"]
    assert edited.set_index("pair").loc["S01", "mean_error"] != pytest.approx(before, abs=0.5)
    fresh = _run(read_fire(other), tmp_path / "fresh", ["c"])
    assert np.allclose(_errors(edited), _errors(fresh))


def test_damaged_and_old_records_are_recomputed(manifest, tmp_path):
    out = tmp_path / "bench"
    first = _run(manifest, out, ["c"])
    damaged = out / "records" / "c" / "S01.json"
    damaged.write_text('{"method": "c", "pair"')  # cut short by a full disk
    old = out / "records" / "c" / "P01.json"
    record = json.loads(old.read_text())
    del record["fingerprint"]  # written before records had one
    old.write_text(json.dumps(record))
    again = _run(manifest, out, ["c"])
    assert sorted(Shift.calls) == ["c", "c"]
    reasons = again.attrs["records"]["reasons"]
    assert "no fingerprint" in reasons
    assert any(r.startswith(f"damaged: {damaged}: ") for r in reasons)
    assert str(damaged) in (out / "summary.md").read_text()  # the note names the file
    assert np.array_equal(_errors(again), _errors(first))
    assert "fingerprint" in json.loads(damaged.read_text())


def test_method_fingerprint_of_baselines_and_models(cascade_run, tmp_path):
    sift = method_fingerprint("sift")
    assert sift["spec"] == "sift" and sift["settings"]["ratio"] == pytest.approx(0.8)
    assert make_any_method("sift").fingerprint == sift
    deep = method_fingerprint(f"mine=cascade+tto3:{cascade_run}")
    assert deep["label"] == "mine" and deep["model_type"] == "cascade" and deep["refine"]["steps"] == 3
    assert deep["checkpoint"] == str((cascade_run / "best.pt").resolve())
    copy = tmp_path / "copy.pt"
    shutil.copy(cascade_run / "best.pt", copy)
    assert method_fingerprint(f"cascade:{copy}")["checkpoint_sha256"] == deep["checkpoint_sha256"]
    with copy.open("ab") as handle:
        handle.write(b"\0")
    assert method_fingerprint(f"cascade:{copy}")["checkpoint_sha256"] != deep["checkpoint_sha256"]
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        method_fingerprint(f"cascade:{tmp_path / 'nothing.pt'}")


@pytest.mark.usefixtures("one_torch_thread")
def test_label_cascade_for_another_run_shows_the_new_runs_numbers(manifest, cascade_run, tmp_path):
    """The issue's reproduction: ``cascade:RUN_A`` then ``cascade:RUN_B`` into one ``--out``."""
    import torch

    run_a, run_b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(cascade_run, run_a)
    run_b.mkdir()
    ckpt = torch.load(run_a / "best.pt", map_location="cpu", weights_only=False)
    generator = torch.Generator().manual_seed(0)
    for key, value in ckpt["state_dict"].items():  # another model: the same network, other weights
        if value.is_floating_point():
            ckpt["state_dict"][key] = value + 0.3 * torch.randn(value.shape, generator=generator)
    torch.save(ckpt, run_b / "best.pt")

    def bench(spec, out):
        return run_benchmark(manifest, BenchmarkConfig(methods=[spec], benchmark_size=64), out,
                             factory=make_any_method, progress=False)

    out = tmp_path / "bench"
    a = bench(f"cascade:{run_a}", out)
    b = bench(f"cascade:{run_b}", out)
    fresh_b = bench(f"cascade:{run_b}", tmp_path / "fresh")
    assert b.attrs["records"]["recomputed"] == len(manifest)
    assert np.allclose(_errors(b), _errors(fresh_b)) and not np.allclose(_errors(b), _errors(a))
    # the checkpoint replaced in place (retrained): the same spec text, recomputed
    shutil.copy(run_a / "best.pt", run_b / "best.pt")
    again = bench(f"cascade:{run_b}", out)
    assert set(again.attrs["records"]["reasons"]) == {"changed: method"}
    assert np.allclose(_errors(again), _errors(a))
    assert bench(f"cascade:{run_b}", out).attrs["records"]["reused"] == len(manifest)


def test_fingerprint_changes_with_the_failure_thresholds(monkeypatch):
    from firereg.evaluation import sanity
    from firereg.evaluation.fingerprints import record_fingerprint

    row = {"name": "S01", "fixed": None, "moving": None, "mask": None, "fixed_points": [[1.0, 2.0]],
           "moving_points": [[3.0, 4.0]]}
    before = record_fingerprint({"spec": "identity"}, row, None, 512)
    monkeypatch.setattr(sanity, "MAX_FOLDED_SHARE", 0.5)
    after = record_fingerprint({"spec": "identity"}, row, None, 512)
    assert before["sha256"] != after["sha256"]
    assert before["parts"]["checks"]["MAX_FOLDED_SHARE"] == 0.05
