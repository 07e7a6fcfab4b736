"""What a run writes besides checkpoints: ``log.csv``, ``train_steps.csv`` and TensorBoard scalars.

- ``log.csv`` (:data:`LOG_COLUMNS`): one row per validation (each epoch's end, and a stop
  on the budget mid-epoch);
- ``train_steps.csv`` (:data:`STEP_COLUMNS`): one row per step;
- ``tb/``: TensorBoard scalars, per step (``train/*``) and per validation (``epoch/*``,
  ``val/*``), x axis = global step.

Step numbers never repeat in either file. A fresh run starts both afresh (a folder where an
earlier attempt crashed before its first ``last.pt`` may hold its rows) and TensorBoard purges
every earlier step. On resume the rows written after the checkpoint (before a kill) are dropped
(:func:`truncate_logs`), as are a row a kill cut short and, where a file already repeats step
numbers, all but the latest rows of each; TensorBoard purges the steps after the checkpoint.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from firereg.transforms.io import atomic_output

__all__ = ["LOG_COLUMNS", "STEP_COLUMNS", "PARTS", "EpochSums", "RunLogs", "truncate_logs"]

#: columns of ``log.csv``, one row per validation: ``epoch`` (0-based), ``global_step``, the
#: epoch's mean training loss and parts (``affine_loss``: mean point distance of the affine
#: stage in network pixels with point supervision, its similarity otherwise),
#: validation FIRE AUCs and mean error (full-resolution px), ``seconds`` (run time so far,
#: all sessions), ``event``: ``epoch`` (an epoch finished) or ``budget`` (stopped mid-epoch)
LOG_COLUMNS = (
    "epoch", "global_step", "train_loss", "similarity", "smoothness", "affine_loss",
    "val_mAUC", "val_auc_S", "val_auc_P", "val_auc_A", "val_mean_error", "seconds", "event",
)
#: columns of ``train_steps.csv`` (``seconds``: wall time of the step)
STEP_COLUMNS = ("global_step", "epoch", "step_in_epoch", "loss", "similarity", "smoothness", "affine_loss", "seconds")
#: the loss parts of a step (NaN: not used by the model)
PARTS = ("loss", "similarity", "smoothness", "affine_loss")


@dataclass
class EpochSums:
    """Running sums of the loss parts over the epoch in progress (kept in checkpoints as ``epoch_sums``)."""

    sum: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in PARTS})
    count: dict[str, int] = field(default_factory=lambda: {k: 0 for k in PARTS})

    @classmethod
    def from_state(cls, state: Mapping | None) -> EpochSums:
        """The sums stored in a checkpoint (empty for None)."""
        if not state:
            return cls()
        return cls(sum=dict(state["sum"]), count=dict(state["count"]))

    def state(self) -> dict[str, dict]:
        """The checkpoint form: ``{"sum": {...}, "count": {...}}``."""
        return {"sum": dict(self.sum), "count": dict(self.count)}

    def add(self, parts: Mapping[str, float]) -> None:
        """Count a step's parts (NaN parts are skipped)."""
        for key in PARTS:
            if not math.isnan(parts[key]):
                self.sum[key] += parts[key]
                self.count[key] += 1

    def means(self) -> dict[str, float]:
        """Mean of each part over the epoch so far (NaN where never used)."""
        return {k: self.sum[k] / self.count[k] if self.count[k] else math.nan for k in PARTS}


def _append_row(path: Path, columns: Sequence[str], row: Mapping) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
        handle.flush()


def _complete(row: dict, header: Sequence[str]) -> bool:
    """Whether a log row has every column and an integer ``global_step`` (a kill can cut the last row short)."""
    return all(row.get(c) is not None for c in header) and str(row.get("global_step", "")).isdigit()


def _latest_increasing(rows: list[dict]) -> list[dict]:
    """The rows with strictly increasing ``global_step``, keeping the latest where steps repeat.

    Walking back from the last row, a row is kept if its step comes before the step of the row
    kept after it: in a log where a restarted run wrote steps 1, 2 again after 1, 2, 3 of a crashed
    attempt, the restarted run's rows remain.
    """
    kept: list[dict] = []
    for row in reversed(rows):
        if not kept or int(row["global_step"]) < int(kept[-1]["global_step"]):
            kept.append(row)
    return kept[::-1]


def _truncate_csv(path: Path, keep: Callable[[dict], bool]) -> None:
    """Keep only the complete rows of a log for which ``keep`` holds, steps strictly increasing (rewritten atomically)."""
    if not path.is_file():
        return
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        rows = [r for r in reader if header and _complete(r, header) and keep(r)]
    if not header:
        return
    rows = _latest_increasing(rows)
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def truncate_logs(out: Path, epoch: int, global_step: int) -> None:
    """Drop the log rows a checkpoint at (``epoch``, ``global_step``) has not seen (written after it, before a kill).

    ``log.csv`` keeps its ``budget`` rows up to ``global_step`` and the ``epoch`` rows of earlier
    epochs; ``train_steps.csv`` keeps the steps up to ``global_step``. Rows cut short are dropped
    and step numbers made strictly increasing (the latest row of a repeated step kept). Both are
    rewritten atomically.
    """
    _truncate_csv(out / "log.csv", lambda r: int(r["global_step"]) <= global_step
                  and (r.get("event") != "epoch" or int(r["epoch"]) < epoch))
    _truncate_csv(out / "train_steps.csv", lambda r: int(r["global_step"]) <= global_step)


class RunLogs:
    """The logs of a run folder; a disabled one (ranks other than 0) writes nothing.

    Args:
        out: the run folder.
        enabled: write (rank 0) or not.
        resumed_at: the global step of the checkpoint a resumed run starts from (TensorBoard
            drops its later steps); None for a fresh run, which removes the ``log.csv`` and
            ``train_steps.csv`` an earlier attempt left and has TensorBoard drop all its steps.
    """

    def __init__(self, out: Path, enabled: bool = True, resumed_at: int | None = None) -> None:
        self.log_path, self.steps_path = out / "log.csv", out / "train_steps.csv"
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            if resumed_at is None:  # fresh: nothing of an earlier attempt belongs to this run
                self.log_path.unlink(missing_ok=True)
                self.steps_path.unlink(missing_ok=True)
            self.writer = SummaryWriter(str(out / "tb"), purge_step=resumed_at + 1 if resumed_at is not None else 0)

    def scalar(self, tag: str, value: float, global_step: int) -> None:
        """One TensorBoard scalar."""
        if self.writer is not None:
            self.writer.add_scalar(tag, value, global_step)

    def step(self, global_step: int, epoch: int, step_in_epoch: int, parts: Mapping[str, float], seconds: float) -> None:
        """A row of ``train_steps.csv`` and the ``train/*`` scalars of one step."""
        if not self.enabled:
            return
        for key in PARTS:
            if not math.isnan(parts[key]):
                self.scalar(f"train/{key}", parts[key], global_step)
        _append_row(self.steps_path, STEP_COLUMNS, {"global_step": global_step, "epoch": epoch,
                                                    "step_in_epoch": step_in_epoch, **parts,
                                                    "seconds": round(seconds, 4)})

    def validation(self, row: Mapping, metrics: Mapping[str, float]) -> None:
        """A row of ``log.csv`` (:data:`LOG_COLUMNS`) and its ``epoch/*`` and ``val/*`` scalars."""
        if not self.enabled:
            return
        _append_row(self.log_path, LOG_COLUMNS, row)
        for key in ("train_loss", "similarity", "smoothness", "affine_loss"):
            if not math.isnan(row[key]):
                self.scalar(f"epoch/{key}", row[key], row["global_step"])
        for key, value in metrics.items():
            if math.isfinite(value):
                self.scalar(f"val/{key}", value, row["global_step"])
        self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
