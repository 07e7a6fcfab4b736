"""A benchmark survives damaged inputs (failed records with the reason, other pairs scored), decodes
large images at reduced size with exact full-resolution points, labels its data honestly, names
a damaged record, and its worker processes die with it (``kill -9``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from firereg.evaluation.benchmark import (
    BenchmarkConfig,
    data_label,
    load_pair,
    run_benchmark,
    score_pair,
)
from firereg.evaluation.results import MatrixResult, ResizedMethod
from firereg.transforms.fire_reader import FIRE_PAIRS, read_fire


class Shift:
    """A translation by (dx, dy) pixels of the images it is given; records the shapes it saw."""

    name = "shift"
    identity_by_design = True  # (dx, dy) = (0, 0) is the identity on purpose

    def __init__(self, dx: float = 0.0, dy: float = 0.0) -> None:
        self.dx, self.dy = dx, dy
        self.shapes: list[tuple[int, ...]] = []

    def register(self, fixed, moving, fixed_mask=None, moving_mask=None):
        self.shapes.append(fixed.shape)
        matrix = np.array([[1.0, 0.0, self.dx], [0.0, 1.0, self.dy], [0.0, 0.0, 1.0]])
        return MatrixResult(matrix, fixed.shape[:2], moving.shape[:2])


def _factory(spec: str) -> Shift:
    if spec != "shift":
        raise ValueError(f"unknown method {spec!r}")
    return Shift()


def _copy(fire_data: Path, tmp_path: Path) -> Path:
    root = tmp_path / "fire"
    shutil.copytree(fire_data, root)
    return root


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _run(root: Path, out: Path, **config) -> pd.DataFrame:
    return run_benchmark(read_fire(root), BenchmarkConfig(methods=["shift"], benchmark_size=64, **config), out,
                         factory=_factory, progress=False)


def test_truncated_image_fails_its_pair_only(fire_data, tmp_path):
    root = _copy(fire_data, tmp_path)
    _truncate(root / "Images" / "S01_2.jpg")
    pairs = _run(root, tmp_path / "bench").set_index("pair")
    assert pairs.loc["S01", "status"] == "failed"
    reason = pairs.loc["S01", "reason"]
    assert "cannot read the pair" in reason and "S01_2.jpg" in reason and "truncated" in reason
    assert np.isinf(pairs.loc["S01", "mean_error"])
    others = pairs.drop(index="S01")
    assert (others["status"] == "ok").all() and len(others) == 4
    assert (tmp_path / "bench" / "summary.md").is_file()


def test_corrupt_mask_fails_every_pair_with_the_reason(fire_data, tmp_path):
    root = _copy(fire_data, tmp_path)
    (root / "Masks" / "mask.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is no PNG")
    pairs = _run(root, tmp_path / "bench")
    assert (pairs["status"] == "failed").all()
    assert pairs["reason"].str.contains("cannot read mask").all()
    assert pairs["reason"].str.contains("mask.png", regex=False).all()


def test_empty_mask_fails_every_pair_naming_it(fire_data, tmp_path):
    root = _copy(fire_data, tmp_path)
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(root / "Masks" / "mask.png")
    pairs = _run(root, tmp_path / "bench")
    assert (pairs["status"] == "failed").all() and pairs["reason"].str.contains("is empty").all()


def test_size_mismatch_names_both_images_and_both_sizes(fire_data, tmp_path):
    root = _copy(fire_data, tmp_path)
    moving = root / "Images" / "P01_2.jpg"
    with Image.open(moving) as im:
        wide = Image.new("RGB", (300, 256))
        wide.paste(im, (0, 0))
    wide.save(moving, quality=95)
    row = read_fire(root).set_index("name").loc["P01"].to_dict() | {"name": "P01"}
    with pytest.raises(ValueError) as info:
        load_pair(row)
    message = str(info.value)
    for part in ("P01_1.jpg", "P01_2.jpg", "256x256", "300x256", "mask.png"):
        assert part in message, part
    record = score_pair(ResizedMethod(Shift(), 64), "shift", row)
    assert record["status"] == "failed" and "300x256" in record["reason"] and "P01_2.jpg" in record["reason"]


def test_reduced_decoding_keeps_points_in_full_resolution_pixels(fire_data):
    """256 px images at benchmark size 64 are decoded at 1/4; a shift of 1 working px is 4 full px."""
    row = read_fire(fire_data).iloc[0].to_dict()
    method = Shift(dx=1.0, dy=-0.5)
    record = score_pair(ResizedMethod(method, 64), "shift", row)
    assert record["status"] == "ok", record["reason"]
    assert method.shapes == [(64, 64, 3)]
    fixed_points = np.asarray(row["fixed_points"])
    mapped = np.array([[p["x"], p["y"]] for p in record["points"] if p["space"] == "moving"])
    np.testing.assert_allclose(mapped, fixed_points + [4.0, -2.0], atol=1e-9)
    expected = np.linalg.norm(fixed_points + [4.0, -2.0] - np.asarray(row["moving_points"]), axis=1)
    # the error is measured in the fixed image (the shift is invertible): same distances
    assert record["mean_error"] == pytest.approx(expected.mean(), abs=1e-9)
    assert record["jac_min"] == pytest.approx(1.0)


def test_data_label_is_honest(fire_data, tmp_path):
    assert data_label(fire_data).startswith("generated from")
    root = _copy(fire_data, tmp_path)
    (root / "generator.json").unlink()
    assert data_label(root).startswith("FIRE-layout folder")
    assert data_label(root, "my clinic's photos") == "my clinic's photos"
    fake = tmp_path / "fire-like"
    (fake / "Images").mkdir(parents=True)
    (fake / "Ground Truth").mkdir()
    for name in FIRE_PAIRS:
        (fake / "Ground Truth" / f"control_points_{name}_1_2.txt").write_text("1 1 1 1\n")
        for index in (1, 2):
            (fake / "Images" / f"{name}_{index}.jpg").write_bytes(b"")
    assert len(FIRE_PAIRS) == 134 and data_label(fake) == "real FIRE"
    (fake / "Images" / "S01_1.jpg").unlink()
    assert data_label(fake).startswith("FIRE-layout folder")
    _run(root, tmp_path / "bench")
    assert "FIRE-layout folder" in (tmp_path / "bench" / "summary.md").read_text()
    _run(root, tmp_path / "bench2", data_label="real FIRE (my copy)")
    assert "real FIRE (my copy)" in (tmp_path / "bench2" / "summary.md").read_text()


def test_damaged_record_is_named(tmp_path):
    from firereg.evaluation.benchmark import _read_record

    path = tmp_path / "S01.json"
    path.write_text("")
    with pytest.raises(ValueError, match=r"S01\.json.*damaged.*Expecting value"):
        _read_record(path)
    with pytest.raises(ValueError, match=r"S02\.json.*missing"):
        _read_record(tmp_path / "S02.json")
    path.write_text(json.dumps({"pair": "S01"}))
    assert _read_record(path) == {"pair": "S01"}


_ORPHAN_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    import numpy as np

    from firereg.evaluation.benchmark import BenchmarkConfig, run_benchmark
    from firereg.evaluation.results import MatrixResult
    from firereg.transforms.fire_reader import read_fire

    PIDS = Path(sys.argv[3])


    class Slow:
        name = "slow"
        identity_by_design = True

        def register(self, fixed, moving, fixed_mask=None, moving_mask=None):
            (PIDS / str(os.getpid())).touch()
            time.sleep(120)
            return MatrixResult(np.eye(3), fixed.shape[:2], moving.shape[:2])


    def factory(spec):
        return Slow()


    run_benchmark(read_fire(sys.argv[1]), BenchmarkConfig(methods=["slow"], benchmark_size=64, workers=2),
                  sys.argv[2], factory=factory, progress=False)
    """
)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_benchmark_leaves_no_orphaned_workers(fire_data, tmp_path):
    script = tmp_path / "bench.py"
    script.write_text(_ORPHAN_SCRIPT)
    pids = tmp_path / "pids"
    pids.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), str(fire_data), str(tmp_path / "out"), str(pids)], env=env)
    try:
        deadline = time.monotonic() + 90
        while len(list(pids.iterdir())) < 2:
            assert proc.poll() is None, "the benchmark ended before its workers started"
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
        workers = [int(p.name) for p in pids.iterdir()]
        assert all(_alive(pid) for pid in workers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), f"orphaned workers still alive: {workers}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in pids.iterdir():  # never leave a sleeping worker behind, even when the test fails
            try:
                os.kill(int(p.name), signal.SIGKILL)
            except OSError:
                pass
