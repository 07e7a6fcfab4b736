"""The training loop: :func:`train` a registration network on a FIRE folder, with exact resume.

One run lives in one output folder ``OUT``:

- ``split.csv``: the train/validation split (made from ``seed`` by a fresh run, reused on resume);
- ``last.pt``: the training state, saved atomically every ``checkpoint_every`` steps and
  at the end of every epoch; ``best.pt``: the network with the best validation mAUC
  (ties → lower mean error). Both are :mod:`firereg.pipelines.checkpoints` checkpoints;
- ``log.csv``, ``train_steps.csv``, ``tb/``: :mod:`firereg.pipelines.training.logs`;
- ``.firereg.lock``: held (rank 0) while a process trains in ``OUT``
  (:func:`firereg.transforms.io.folder_lock`), so a second ``train`` on it stops at once.

Resuming is exact (:mod:`firereg.pipelines.training.sampling`): a resumed run skips the
batches of the epoch already done and then sees the very batches an uninterrupted run would
have seen. A ``kill -9`` loses at most ``checkpoint_every`` steps. A step budget
(``budget_steps``) counts the optimiser steps of all invocations together, so a run stopped
by it does not depend on the machine's speed and a resumed run ends on the very same step;
validation leaves the training's random state as it was. Validation scores through
the benchmark's own routine (:func:`firereg.pipelines.training.validation.validate_network`).
Distributed data-parallel training: :mod:`firereg.pipelines.training.distributed`; resuming
mid-epoch needs the same world size (the checkpoint records it), at an epoch boundary it does not.
With ``train_pairs="generated"`` the training items are fresh generated pairs
(:class:`firereg.transforms.generated_pairs.GeneratedPairs`), seeded the same way, so resume stays exact.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from monai.utils import set_determinism
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from firereg.pipelines.checkpoints import (
    check_resumable,
    check_resume_position,
    load_checkpoint,
    save_checkpoint,
)
from firereg.pipelines.training.config import TrainConfig
from firereg.pipelines.training.distributed import (
    Ranks,
    default_threads,
    resolve_device,
    setup_distributed,
)
from firereg.pipelines.training.logs import EpochSums, RunLogs, truncate_logs
from firereg.pipelines.training.patches import PatchDataset
from firereg.pipelines.training.sampling import EpochOrder, SeededItems, collate_pairs
from firereg.pipelines.training.trainer import Trainer
from firereg.pipelines.training.validation import is_better, validate_network
from firereg.transforms.datasets import fire_dataset
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.generated_pairs import GeneratedPairs
from firereg.transforms.io import folder_lock, is_atomic_temporary
from firereg.transforms.splits import (
    make_split,
    read_split,
    select_split,
    split_or_reuse,
    write_split,
)

__all__ = ["train"]

logger = logging.getLogger(__name__)


def train(
    config: TrainConfig,
    data: str | Path,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[dict], None] | None = None,
    num_threads: int | None = None,
    device: str | torch.device | None = None,
) -> dict:
    """Train a registration network on a FIRE folder (see the module docstring).

    Args:
        config: the run's settings.
        data: FIRE folder (real or generated); with ``config.train_pairs="generated"`` only its
            validation split is used (training pairs are generated on the fly).
        out: run folder (created). Without ``resume`` it must not hold a run yet.
        resume: continue the run in ``out`` from ``out/last.pt`` (same model type, network
            size, channel); ``config.epochs`` and ``config.budget_steps`` may be larger than before.
        progress: show progress bars.
        on_step: called after every step (and its checkpoint) with a dict ``epoch``,
            ``step_in_epoch``, ``global_step``, ``loss`` ... (for tests and monitoring);
            on every rank in distributed training.
        num_threads: ``torch.set_num_threads`` for the run; default ``os.cpu_count()``
            (divided by ``LOCAL_WORLD_SIZE`` under ``torchrun``). On a machine shared with
            other busy processes 1 is often much faster (no spinning threads waiting for a core).
        device: where to train (:func:`firereg.pipelines.training.distributed.resolve_device`;
            default the CPU, or ``cuda:LOCAL_RANK`` under ``torchrun`` on a CUDA machine).
            Validation and checkpoints are device independent.

    Returns:
        ``best_mauc``, ``best_mean_error``, ``epochs`` (epochs completed), ``steps``
        (global step), ``seconds`` (wall time of this call), ``stopped`` (``done``,
        ``budget`` or ``already done``), ``best``/``last`` (checkpoint paths),
        ``rank`` and ``world_size`` (1 without distributed training).

    Raises:
        ValueError: for bad config values (naming the field) or an unusable split.
        FileNotFoundError: for a missing data folder, or ``resume`` without ``out/last.pt``.
        FileExistsError: if ``out`` already holds a run and ``resume`` is False.
        firereg.transforms.io.FolderInUseError: if another firereg process is using ``out``
            (its lock, :func:`firereg.transforms.io.folder_lock`, held by rank 0 for the run).
        CheckpointError: naming ``out/last.pt`` if it is of another model type, size or channel.
    """
    config.validate()
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}")
    device = resolve_device(device)
    ranks = setup_distributed(device)
    try:
        # rank 0 holds the run folder's lock: a second firereg process on it stops at once
        with folder_lock(out, "firereg train") if ranks.main else nullcontext():
            return _Run(config, Path(data), Path(out), resume, ranks, device, progress, on_step).run(num_threads)
    finally:
        ranks.close()


def _open_checkpoint(config: TrainConfig, last_path: Path, resume: bool) -> dict | None:
    """The checkpoint to resume from (checked), or None for a fresh run in a folder without a run."""
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(f"nothing to resume: {last_path} not found")
        ckpt = load_checkpoint(last_path)
        check_resumable(ckpt, last_path, config.model, config.size, config.channel, config.net_kwargs())
        return ckpt
    if last_path.exists():
        raise FileExistsError(f"{last_path.parent} already holds a training run ({last_path}); "
                              f"resume it or choose another folder")
    return None


def _run_split(manifest: pd.DataFrame, path: Path, config: TrainConfig, resume: bool, main: bool) -> pd.DataFrame:
    """The run's split: on resume ``split.csv`` reused (:func:`firereg.transforms.splits.split_or_reuse`,
    made again from the seed if it is gone); a fresh run draws it from the seed and writes it,
    replacing any ``split.csv`` an unfinished earlier attempt left. Only rank 0 writes; the
    others draw the same split from the seed (or read the stored one on resume)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not main:
        return read_split(path) if resume and path.is_file() else make_split(manifest, config.val_fraction, config.seed)
    if resume:
        return split_or_reuse(manifest, path, val_fraction=config.val_fraction, seed=config.seed)
    split = make_split(manifest, val_fraction=config.val_fraction, seed=config.seed)
    write_split(split, path)
    return split


def _training_data(config: TrainConfig, train_manifest: pd.DataFrame, out: Path, progress: bool) -> Dataset:
    """The training items: the patch folder's patches, pairs generated on the fly (``train_pairs="generated"``,
    :class:`firereg.transforms.generated_pairs.GeneratedPairs`: a fresh pair every item, seeded by
    :class:`firereg.pipelines.training.sampling.SeededItems`), or the training pairs through the pair pipeline."""
    if config.patches is not None:
        folder = Path(config.patches)
        if not folder.is_dir():
            raise FileNotFoundError(f"patch folder not found: {folder}")
        dataset = PatchDataset(folder)
        if len(dataset) == 0:
            raise ValueError(f"patch folder {folder} holds no patches")
        return dataset
    if config.train_pairs == "generated":
        return GeneratedPairs(config.transform_config(), length=config.pairs_per_epoch, seed=config.seed,
                              retinas=config.generated_retinas, photograph_share=config.photograph_share,
                              shares=config.generated_shares, n_points=config.generated_points,
                              prealign=config.prealign_config())
    if len(train_manifest) == 0:
        raise ValueError("the split leaves no training pairs")
    return fire_dataset(
        train_manifest, config.transform_config(), cache=config.cache, cache_dir=out / "cache", progress=progress
    )


@contextmanager
def _training_rng_kept(device: torch.device) -> Iterator[None]:
    """Restore the torch (and CUDA), NumPy and Python RNG states on exit: validation (whose
    affine estimator may draw random samples) must not change the training that follows,
    so a run stopped and resumed after a validation goes on exactly as an uninterrupted one."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    np.random.set_state(numpy_state)
    random.setstate(python_state)


class _Run:
    """One invocation of :func:`train`: the run's state (position, best validation, loss sums) and its steps."""

    def __init__(
        self,
        config: TrainConfig,
        data: Path,
        out: Path,
        resume: bool,
        ranks: Ranks,
        device: torch.device,
        progress: bool,
        on_step: Callable[[dict], None] | None,
    ) -> None:
        self.start = time.monotonic()
        self.config, self.data, self.out, self.ranks, self.device = config, data, out, ranks, device
        self.resume = resume
        self.main = ranks.main
        self.progress = progress and ranks.main
        self.on_step = on_step
        self.last_path, self.best_path, self.split_path = out / "last.pt", out / "best.pt", out / "split.csv"
        # where the run is (restored from last.pt on resume)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_mauc, self.best_error, self.elapsed_before = -math.inf, math.inf, 0.0
        self.validated_step = 0  # global step of the latest validation
        self.sums = EpochSums()
        self.logs: RunLogs | None = None

    # -- set-up ------------------------------------------------------------------------------
    def _set_up(self, num_threads: int | None) -> None:
        """Threads, leftovers of a killed save, determinism, split, trainer and training items."""
        config = self.config
        torch.set_num_threads(num_threads if num_threads is not None else default_threads(self.ranks))
        if self.main and self.out.is_dir():  # temporary files of a save interrupted by a kill
            for stale in self.out.glob(".*.tmp-*"):
                if is_atomic_temporary(stale):
                    stale.unlink(missing_ok=True)
        set_determinism(seed=config.seed)
        manifest = read_fire(self.data)
        split = _run_split(manifest, self.split_path, config, self.resume, self.main)
        train_manifest = select_split(manifest, split, "train")
        self.val_manifest = select_split(manifest, split, "validation")
        if len(self.val_manifest) == 0:
            raise ValueError(f"the split {self.split_path} leaves no validation pairs")
        self.trainer = Trainer(config, self.device)
        self.dataset = SeededItems(_training_data(config, train_manifest, self.out, self.progress),
                                   config.seed, config.repeats)
        shard = EpochOrder(len(self.dataset), config.seed, 0, world_size=self.ranks.world_size).shard_size()
        self.steps_per_epoch = math.ceil(shard / config.batch_size)

    def _restore(self, ckpt: dict) -> None:
        """Continue from ``last.pt``: weights, optimiser, RNGs, position, best validation, loss sums."""
        self.trainer.load_state(ckpt)
        self.epoch, self.step_in_epoch = int(ckpt["epoch"]), int(ckpt["step_in_epoch"])
        self.global_step = int(ckpt["global_step"])
        self.best_mauc = float(ckpt.get("best_mauc", -math.inf))
        self.best_error = float(ckpt.get("best_error", math.inf))
        self.elapsed_before = float(ckpt.get("elapsed", 0.0))
        self.validated_step = int(ckpt.get("validated_step", self.global_step))
        self.sums = EpochSums.from_state(ckpt.get("epoch_sums"))
        check_resume_position(ckpt, self.last_path, self.config.batch_size, self.ranks.world_size,
                              self.steps_per_epoch)
        if self.main:
            truncate_logs(self.out, self.epoch, self.global_step)

    # -- clocks ------------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Wall time of the run, all sessions, s."""
        return self.elapsed_before + time.monotonic() - self.start

    def warming_up(self) -> bool:
        """Whether the cascade still trains only its affine stage (``affine_warmup``)."""
        config = self.config
        if config.model != "cascade" or config.affine_warmup <= 0:
            return False
        if config.budget_steps is not None:
            return self.global_step < config.budget_steps * config.affine_warmup
        if config.budget_minutes is not None:
            return self.elapsed() < 60.0 * config.budget_minutes * config.affine_warmup
        return self.epoch < config.epochs * config.affine_warmup

    def steps_done(self) -> bool:
        """Whether the run has made its ``budget_steps`` optimiser steps (the same on every rank)."""
        return self.config.budget_steps is not None and self.global_step >= self.config.budget_steps

    def over_budget(self) -> bool:
        """Whether the run made its ``budget_steps`` or this invocation ran past ``budget_minutes`` (on any rank)."""
        if self.steps_done():
            return True
        if self.config.budget_minutes is None:
            return False
        return self.ranks.any(time.monotonic() - self.start > 60.0 * self.config.budget_minutes, self.device)

    # -- checkpoints and validation ----------------------------------------------------------
    def snapshot(self, **extra) -> dict:
        """The checkpoint dict of the run as it stands."""
        return self.trainer.state(
            data=self.data, epoch=self.epoch, step_in_epoch=self.step_in_epoch, global_step=self.global_step,
            best_mauc=self.best_mauc, best_error=self.best_error, epoch_sums=self.sums.state(),
            elapsed=self.elapsed(), world_size=self.ranks.world_size, steps_per_epoch=self.steps_per_epoch,
            validated_step=self.validated_step, **extra,
        )

    def save_last(self) -> None:
        """Rank 0 saves ``last.pt``."""
        if self.main:
            save_checkpoint(self.snapshot(), self.last_path)

    def validate_and_log(self, event: str) -> None:
        """Rank 0 validates, saves ``best.pt`` if better and logs; the other ranks wait for it."""
        config = self.config
        self.validated_step = self.global_step
        if self.main:
            with _training_rng_kept(self.device):
                metrics, _ = validate_network(self.trainer.net, config.model, config.size, config.channel,
                                              self.val_manifest, self.progress, benchmark_size=config.benchmark_size)
            if is_better(metrics, self.best_mauc, self.best_error):
                self.best_mauc = metrics["mAUC"] if math.isfinite(metrics["mAUC"]) else -math.inf
                self.best_error = metrics["mean_error"]
                save_checkpoint(self.snapshot(validation=metrics, validated_epoch=self.epoch), self.best_path)
            means = self.sums.means()
            self.logs.validation({
                "epoch": self.epoch, "global_step": self.global_step, "train_loss": means["loss"],
                "similarity": means["similarity"], "smoothness": means["smoothness"],
                "affine_loss": means["affine_loss"], "val_mAUC": metrics["mAUC"], "val_auc_S": metrics["auc_S"],
                "val_auc_P": metrics["auc_P"], "val_auc_A": metrics["auc_A"],
                "val_mean_error": metrics["mean_error"], "seconds": round(self.elapsed(), 3), "event": event,
            }, metrics)
        self.ranks.barrier()

    # -- the loop ----------------------------------------------------------------------------
    def _step(self, batch: dict, bar: tqdm) -> None:
        """One optimisation step, its logs, its checkpoint (every ``checkpoint_every``) and callback."""
        t0 = time.perf_counter()
        self.trainer.affine_only = self.ranks.any(self.warming_up(), self.device)
        parts = self.trainer.step(batch)
        seconds = time.perf_counter() - t0
        self.step_in_epoch += 1
        self.global_step += 1
        self.sums.add(parts)
        self.logs.step(self.global_step, self.epoch, self.step_in_epoch, parts, seconds)
        bar.set_postfix(loss=f"{parts['loss']:.4f}", refresh=False)
        bar.set_description(self.progress_label(), refresh=False)
        bar.update()
        if self.global_step % self.config.checkpoint_every == 0:
            self.save_last()
        if self.on_step is not None:
            self.on_step({"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
                          "seconds": seconds, **parts})

    def progress_label(self) -> str:
        """The progress bar's label: the epoch and the budget (``epoch 3, budget 400 steps``: the bar
        counts the run's steps; ``epoch 3, 1.5/10 min``: minutes used of this invocation's budget),
        or ``epoch 3/50`` without a budget (the bar counts the epoch's steps)."""
        config, label = self.config, f"epoch {self.epoch + 1}"
        if config.budget_steps is not None:
            label += f", budget {config.budget_steps} steps"
        if config.budget_minutes is not None:
            label += f", {(time.monotonic() - self.start) / 60.0:.1f}/{config.budget_minutes:g} min"
        return label if config.budget_steps or config.budget_minutes else f"{label}/{config.epochs}"

    def _train_epoch(self) -> bool:
        """The rest of the current epoch; True if it stopped on the budget before its end."""
        config = self.config
        self.dataset.epoch = self.epoch
        loader = DataLoader(
            self.dataset,
            batch_size=config.batch_size,
            sampler=EpochOrder(len(self.dataset), config.seed, self.epoch, skip=self.step_in_epoch * config.batch_size,
                               rank=self.ranks.rank, world_size=self.ranks.world_size),
            collate_fn=collate_pairs,
            num_workers=0,
            generator=torch.Generator().manual_seed(config.seed + self.epoch),
        )
        budget = config.budget_steps is not None  # the bar counts the run's steps of the budget, else the epoch's
        bar = tqdm(total=config.budget_steps if budget else self.steps_per_epoch,
                   initial=self.global_step if budget else self.step_in_epoch, desc=self.progress_label(),
                   unit="step", disable=not self.progress)
        try:
            for batch in loader:
                self._step(batch, bar)
                if self.step_in_epoch < self.steps_per_epoch and self.over_budget():
                    return True
            return False
        finally:
            bar.close()

    def _loop(self) -> str:
        """Epochs until ``config.epochs`` or the budget; returns why it stopped."""
        unvalidated = self.validated_step < self.global_step  # killed between its last step and its validation
        if self.steps_done() and unvalidated and self.step_in_epoch < self.steps_per_epoch:
            self.validate_and_log("budget")
            self.save_last()
            return "budget"
        if self.epoch >= self.config.epochs or (self.steps_done() and not unvalidated):
            return "already done"  # (at the end of an epoch the loop below validates and stops)
        while self.epoch < self.config.epochs:
            if self._train_epoch():
                self.validate_and_log("budget")
                self.save_last()  # after validation: last.pt holds the best score so far
                return "budget"
            self.validate_and_log("epoch")
            self.epoch += 1
            self.step_in_epoch = 0
            self.sums = EpochSums()
            self.save_last()
            if self.epoch < self.config.epochs and self.over_budget():
                return "budget"
        return "done"

    def run(self, num_threads: int | None) -> dict:
        """Set up (or restore), train, and return the summary of :func:`train`."""
        ckpt = _open_checkpoint(self.config, self.last_path, self.resume)
        self._set_up(num_threads)
        if ckpt is not None:
            self._restore(ckpt)
        if self.ranks.enabled:
            self.trainer.distribute()  # after loading: DDP starts from rank 0's weights
        self.logs = RunLogs(self.out, enabled=self.main, resumed_at=self.global_step if ckpt is not None else None)
        try:
            stopped = self._loop()
            self.ranks.barrier()  # rank 0's last checkpoint is on disk before any rank returns
            self.best_mauc, self.best_error = self.ranks.share([self.best_mauc, self.best_error])
        finally:
            self.logs.close()
        logger.info(
            "training finished on rank %d of %d: %d epochs, %d steps (%s) in %.1f s",
            self.ranks.rank, self.ranks.world_size, self.epoch, self.global_step, stopped,
            time.monotonic() - self.start,
        )
        return {
            "best_mauc": self.best_mauc,
            "best_mean_error": self.best_error,
            "epochs": self.epoch,
            "steps": self.global_step,
            "seconds": time.monotonic() - self.start,
            "stopped": stopped,
            "best": str(self.best_path) if self.best_path.is_file() else None,
            "last": str(self.last_path),
            "rank": self.ranks.rank,
            "world_size": self.ranks.world_size,
        }
