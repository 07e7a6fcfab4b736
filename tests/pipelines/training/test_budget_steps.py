"""A step budget (``TrainConfig.budget_steps``, firereg.pipelines.training.loop): exact, resumable, reproducible.

Two runs with the same step budget end on the same step with identical checkpoints (weights and
optimiser), and a run killed on the way and resumed with that budget ends identical to them too.
Tiny settings: the cascade (its affine warm-up counted in steps) at 64 px on the shared 5-pair data.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from firereg.pipelines.checkpoints import load_checkpoint
from firereg.pipelines.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: 3 training pairs → 3 steps per epoch; 4 steps cross one epoch end; half of them affine only
TINY = dict(model="cascade", size=64, kernel_size=5, epochs=100, affine_warmup=0.5, checkpoint_every=1,
            benchmark_size=128)


def _same_tensors(a, b) -> bool:
    """Whether two (nested) state dicts hold the same keys and bit-identical tensors."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def _events(out: Path) -> list[tuple[str, str, str]]:
    with open(out / "log.csv", newline="") as handle:
        return [(r["epoch"], r["global_step"], r["event"]) for r in csv.DictReader(handle)]


class _Killed(Exception):
    pass


def _run(data: Path, out: Path, steps: int, resume: bool = False, record: list | None = None,
         kill_at: int | None = None) -> dict:
    def on_step(info: dict) -> None:
        if record is not None:
            record.append(info["global_step"])
        if info["global_step"] == kill_at:  # after the step's checkpoint, as a kill -9 would find it
            raise _Killed

    return train(TrainConfig(**TINY, budget_steps=steps), data, out, resume=resume, progress=False,
                 num_threads=1, on_step=on_step)


@pytest.mark.slow
def test_same_step_budget_gives_identical_checkpoints_and_resumes_exactly(fire_data, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    steps_a: list[int] = []
    first = _run(fire_data, a, 4, record=steps_a)
    assert (first["stopped"], first["steps"], first["epochs"]) == ("budget", 4, 1)
    assert steps_a == [1, 2, 3, 4]
    assert _events(a) == [("0", "3", "epoch"), ("1", "4", "budget")]
    second = _run(fire_data, b, 4)
    assert second["steps"] == 4
    # killed after step 2, then resumed: the same run
    with pytest.raises(_Killed):
        _run(fire_data, c, 4, kill_at=2)
    assert load_checkpoint(c / "last.pt")["global_step"] == 2
    resumed = _run(fire_data, c, 4, resume=True)
    assert (resumed["stopped"], resumed["steps"]) == ("budget", 4)
    # killed after the last step, before its validation: the resumed run validates and stops
    d = tmp_path / "d"
    with pytest.raises(_Killed):
        _run(fire_data, d, 4, kill_at=4)
    steps_d: list[int] = []
    late = _run(fire_data, d, 4, resume=True, record=steps_d)
    assert (late["stopped"], late["steps"], steps_d) == ("budget", 4, [])
    assert _events(d) == _events(a)
    for name in ("last.pt", "best.pt"):
        ref = load_checkpoint(a / name)
        for other in (b, c, d):
            ckpt = load_checkpoint(other / name)
            assert _same_tensors(ref["state_dict"], ckpt["state_dict"]), (other, name)
            assert _same_tensors(ref["optimizer"], ckpt["optimizer"]), (other, name)
            assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (1, 1, 4)
    # the budget is spent: resuming with it trains nothing; a larger one continues
    mtime = (a / "last.pt").stat().st_mtime_ns
    again = _run(fire_data, a, 4, resume=True, record=steps_a)
    assert (again["stopped"], again["steps"], steps_a[-1]) == ("already done", 4, 4)
    assert (a / "last.pt").stat().st_mtime_ns == mtime
    more = _run(fire_data, a, 5, resume=True, record=steps_a)
    assert (more["stopped"], more["steps"], steps_a[-1]) == ("budget", 5, 5)


def test_budget_steps_is_checked_and_the_progress_label_shows_the_budget(monkeypatch):
    from firereg.pipelines.training.loop import _Run

    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"TrainConfig\.budget_steps = .*optimiser steps"):
            TrainConfig(budget_steps=bad).validate()
    TrainConfig(budget_steps=1).validate()

    def label(**fields) -> str:
        run = _Run.__new__(_Run)  # only the fields progress_label reads
        run.config, run.epoch, run.global_step = TrainConfig(**fields), 3, 120
        run.start = 0.0
        monkeypatch.setattr("firereg.pipelines.training.loop.time.monotonic", lambda: 90.0)
        return run.progress_label()

    assert label(epochs=50) == "epoch 4/50"
    assert label(epochs=100_000, budget_steps=400) == "epoch 4, budget 400 steps"
    assert label(epochs=100_000, budget_minutes=10) == "epoch 4, 1.5/10 min"
