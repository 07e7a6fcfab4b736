"""Training again into a run folder: step numbers in ``train_steps.csv`` and ``log.csv`` never repeat
(firereg.pipelines.training.logs).

A fresh run into a folder where an earlier attempt crashed before its first ``last.pt`` used to
append to that attempt's rows (steps 1, 2, 1, 2, 3); a resumed run now also drops a row a kill cut
short and the rows of a log that already repeats steps.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from firereg.pipelines.checkpoints import load_checkpoint
from firereg.pipelines.training import TrainConfig, train
from firereg.pipelines.training.logs import LOG_COLUMNS, STEP_COLUMNS, truncate_logs

#: the smallest, fastest run on the shared dataset (3 steps per epoch)
TINY = dict(model="voxelmorph", size=64, kernel_size=5, augment=False)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


class Interrupt(Exception):
    """Stands for a crash: raised from the step callback."""


def _crash_at(step: int):
    def on_step(info: dict) -> None:
        if info["global_step"] == step:
            raise Interrupt
    return on_step


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _steps(out: Path) -> list[int]:
    return [int(r["global_step"]) for r in _rows(out / "train_steps.csv")]


def test_fresh_run_after_a_crash_before_any_checkpoint_starts_the_logs_afresh(fire_data, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(**TINY, epochs=1)  # checkpoint_every 25: the crash at step 2 leaves no last.pt
    with pytest.raises(Interrupt):
        train(config, fire_data, out, progress=False, num_threads=1, on_step=_crash_at(2))
    assert not (out / "last.pt").exists() and _steps(out) == [1, 2]

    losses: list[float] = []
    result = train(config, fire_data, out, progress=False, num_threads=1,
                   on_step=lambda info: losses.append(info["loss"]))
    assert result["steps"] == 3
    rows = _rows(out / "train_steps.csv")
    assert [int(r["global_step"]) for r in rows] == [1, 2, 3]  # was [1, 2, 1, 2, 3]
    assert [float(r["loss"]) for r in rows] == pytest.approx(losses)  # this run's rows, not the crashed one's
    assert [int(r["epoch"]) for r in _rows(out / "log.csv")] == [0]


def test_resume_after_a_crash_and_a_row_cut_short_keeps_steps_increasing(fire_data, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(**TINY, epochs=1, checkpoint_every=2)
    with pytest.raises(Interrupt):
        train(config, fire_data, out, progress=False, num_threads=1, on_step=_crash_at(3))
    assert load_checkpoint(out / "last.pt")["global_step"] == 2
    with open(out / "train_steps.csv", "a") as handle:
        handle.write("1,0,1,0.5")  # a kill in the middle of writing a row (steps 1, 2, 3, 1)

    result = train(config, fire_data, out, resume=True, progress=False, num_threads=1)
    assert result["steps"] == 3
    steps = _steps(out)
    assert steps == [1, 2, 3]
    assert all(a < b for a, b in zip(steps, steps[1:]))
    assert [int(r["global_step"]) for r in _rows(out / "log.csv")] == [3]


def _write(path: Path, columns, rows: list[dict], tail: str = "") -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), restval="")
        writer.writeheader()
        writer.writerows(rows)
        handle.write(tail)


def test_truncate_logs_drops_later_rows_repeats_and_rows_cut_short(tmp_path):
    # a log the old code wrote: a crashed attempt's steps 1, 2, then a restart's 1..4, then a row cut short
    steps = [{"global_step": s, "epoch": 0, "step_in_epoch": s, "loss": f"{tag}{s}"}
             for tag, run in (("old", [1, 2]), ("new", [1, 2, 3, 4])) for s in run]
    _write(tmp_path / "train_steps.csv", STEP_COLUMNS, steps, tail="5,0,5")
    log = [{"epoch": 0, "global_step": 3, "event": "budget"},  # kept: at or before the checkpoint
           {"epoch": 0, "global_step": 4, "event": "budget"},  # dropped: after it
           {"epoch": 0, "global_step": 4, "event": "epoch"}]   # dropped: the checkpoint's epoch
    _write(tmp_path / "log.csv", LOG_COLUMNS, log)

    truncate_logs(tmp_path, epoch=0, global_step=3)
    kept = _rows(tmp_path / "train_steps.csv")
    assert [(int(r["global_step"]), r["loss"]) for r in kept] == [(1, "new1"), (2, "new2"), (3, "new3")]
    assert [(int(r["global_step"]), r["event"]) for r in _rows(tmp_path / "log.csv")] == [(3, "budget")]
    assert list(_rows(tmp_path / "log.csv")[0]) == list(LOG_COLUMNS)
