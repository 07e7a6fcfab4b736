"""The run-folder lock (issue 14, item 2): a second firereg process on a folder that another one is
using stops at once with a one-line error naming the folder; the OS frees the lock when the
holder dies, ``kill -9`` included; a forked child never keeps its parent's folder locked."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from firereg.transforms.io import LOCK_NAME, FolderInUseError, folder_lock

HOLDER = (
    "import sys, time\n"
    "from firereg.transforms.io import folder_lock\n"
    "lock = folder_lock(sys.argv[1], 'test holder')\n"
    "lock.__enter__()\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture()
def held(tmp_path):
    """A folder locked by another process; yields (folder, process), kills it with SIGKILL after."""
    folder = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield folder, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_lock_held_elsewhere_is_refused_until_the_holder_is_killed(held):
    folder, proc = held
    start = time.monotonic()
    with pytest.raises(FolderInUseError) as err, folder_lock(folder, "second"):
        pass
    assert time.monotonic() - start < 1.0  # at once, not after waiting
    message = str(err.value)
    assert str(folder) in message and "another firereg process" in message
    assert f"test holder, pid {proc.pid}" in message and "\n" not in message
    assert isinstance(err.value, RuntimeError)  # a USER_ERROR of the CLI
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (folder / LOCK_NAME).is_file()  # the file stays; the lock does not
    with folder_lock(folder, "after the kill") as got:
        assert got == folder


def test_lock_is_reentrant_and_released(tmp_path):
    with folder_lock(tmp_path / "a", "outer"):
        with folder_lock(tmp_path / "a", "inner"):
            pass
        probe = subprocess.run([sys.executable, "-c", HOLDER.replace("time.sleep(120)", ""), str(tmp_path / "a")],
                               capture_output=True, text=True, check=False)
        assert probe.returncode != 0 and "another firereg process (outer" in probe.stderr
    probe = subprocess.run([sys.executable, "-c", HOLDER.replace("time.sleep(120)", ""), str(tmp_path / "a")],
                           capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr


def test_a_folder_made_for_nothing_is_removed_again(tmp_path):
    with pytest.raises(ValueError, match="bad input"), folder_lock(tmp_path / "new", "fails at once"):
        raise ValueError("bad input")
    assert not (tmp_path / "new").exists()
    with folder_lock(tmp_path / "used", "writes") as folder:
        (folder / "log.csv").write_text("x\n")
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == [LOCK_NAME, "log.csv"]
    with folder_lock(tmp_path, "existing"):  # a folder that was there stays, even if empty
        pass
    assert tmp_path.is_dir()


def _sleep(started) -> None:
    started.set()  # runs after the fork hooks
    time.sleep(60)


def test_forked_child_does_not_keep_the_lock(tmp_path):
    context = multiprocessing.get_context("fork")
    started = context.Event()
    with folder_lock(tmp_path, "parent"):
        child = context.Process(target=_sleep, args=(started,))
        child.start()
    try:
        assert started.wait(30)
        with folder_lock(tmp_path, "again"):  # a new open of the file: refused if the child kept a copy
            pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()


def test_benchmark_and_train_stop_at_once_on_a_locked_folder(held, fire_data):
    from firereg.evaluation.benchmark import BenchmarkConfig, run_benchmark
    from firereg.pipelines.training import TrainConfig, train
    from firereg.transforms.fire_reader import read_fire

    folder, proc = held
    manifest = read_fire(fire_data)
    with pytest.raises(FolderInUseError, match="another firereg process"):
        run_benchmark(manifest, BenchmarkConfig(methods=["identity"]), folder, progress=False)
    with pytest.raises(FolderInUseError, match="another firereg process"):
        train(TrainConfig(model="cascade", size=64, kernel_size=5, epochs=1), fire_data, folder, progress=False,
              num_threads=1)
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]  # nothing was written
    from firereg.pipelines.cli.app import app

    result = CliRunner().invoke(app, ["benchmark", "--data", str(fire_data), "--methods", "identity",
                                      "--out", str(folder), "--size", "64"])
    assert result.exit_code == 2
    expected = (f"error: {folder} is in use by another firereg process (test holder, pid {proc.pid}); "
                "wait for it to finish or choose another folder")
    assert result.stderr.strip().splitlines() == [expected]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    pairs = run_benchmark(manifest, BenchmarkConfig(methods=["identity"], benchmark_size=64), folder, progress=False)
    assert len(pairs) == len(manifest)
