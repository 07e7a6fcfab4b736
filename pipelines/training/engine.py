"""Training engine for the registration networks: a plain, explicit PyTorch loop.

One run lives in one output folder ``OUT``:

- ``split.csv``: the train/validation split (made once from ``seed``, reused on resume);
- ``last.pt``: the training state, saved atomically every ``checkpoint_every`` steps and
  at the end of every epoch; ``best.pt``: the network with the best validation mAUC
  (ties → lower mean error). Both are :mod:`firereg.pipelines.inference.deep_method` checkpoints;
- ``log.csv``: one row per epoch (and one per budget stop), ``train_steps.csv``: one row
  per step, ``tb/``: TensorBoard scalars (per step and per epoch, x axis = global step).

Resuming is exact: the order of an epoch is a permutation drawn from
``torch.Generator().manual_seed(seed + epoch)``, and the augmentation of every item is
seeded from ``(seed, epoch, item)``, so a resumed run skips the batches of the epoch
already done and then sees the very batches an uninterrupted run would have seen.
A ``kill -9`` loses at most ``checkpoint_every`` steps.

Validation uses the same path as users: :meth:`firereg.pipelines.inference.deep_method.DeepMethod.from_network`
registers the full-resolution images of every validation pair, :func:`firereg.evaluation.landmarks.measure_pair`
scores it, :func:`firereg.evaluation.fire_protocol.summarize` gives the FIRE AUCs.

Losses per model (working-size pixels, index order = (x, y) as the networks see it):

- ``voxelmorph``: :class:`firereg.pipelines.nn.losses.RegistrationLoss` = similarity inside the
  fixed field of view + ``lam`` * smoothness of the DDF;
- ``affine``: ``affine_supervision="points"`` → :func:`firereg.pipelines.nn.losses.affine_point_loss`
  against the least-squares affine of the (augmented) control points
  (:func:`firereg.pipelines.nn.losses.fit_affine`), at a grid of points inside the image, divided by
  the working size; ``"similarity"`` → image similarity of the affinely warped image;
- ``cascade``: ``RegistrationLoss`` on the final warped image (smoothness of the
  deformable stage's DDF only, so the affine stage is not penalised for rotating or
  scaling) + the affine stage's loss as for ``affine``.

Devices and distributed data-parallel training
----------------------------------------------
``train(device=...)`` runs the network and loss on a device (default: the CPU; under
``torchrun`` with CUDA: ``cuda:LOCAL_RANK``). When ``WORLD_SIZE`` > 1 (``torchrun
--nproc_per_node N``, one process per GPU or CPU worker) or a process group is already
initialised, :func:`train` trains with ``DistributedDataParallel``: it initialises the
process group if needed (``nccl`` on CUDA, ``gloo`` on the CPU) and destroys only a group it
created; every rank takes its share of the seeded epoch order (:class:`EpochOrder`, as
``DistributedSampler`` does: padded to a multiple of the world size, rank ``r`` takes items
``r, r + W, ...``), so one step trains on ``W * batch_size`` pairs; gradients and logged
loss parts are averaged over ranks. Only rank 0 writes checkpoints, logs, TensorBoard
scalars and validates; the other ranks wait at a barrier. Resuming mid-epoch needs the
same world size (the checkpoint records it); resuming at an epoch boundary does not.
"""

from __future__ import annotations

import copy
import csv
import datetime
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from firereg.evaluation.benchmark import load_pair
from firereg.evaluation.fire_protocol import summarize
from firereg.evaluation.landmarks import measure_pair
from firereg.pipelines.checkpoints import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from firereg.pipelines.inference.deep_method import DeepMethod
from firereg.pipelines.nn.fields import affine_to_ddf
from firereg.pipelines.nn.losses import (
    SIMILARITIES,
    SMOOTHNESS,
    LossConfig,
    RegistrationLoss,
    affine_point_loss,
    fit_affine,
    match_cross_entropy,
)
from firereg.pipelines.nn.networks import (
    AFFINE_ESTIMATORS,
    MODEL_TYPES,
    CascadeNet,
    MatchingAffineNet,
    build_network,
)
from firereg.transforms.datasets import CACHE_MODES, fire_dataset
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.io import is_atomic_temporary
from firereg.transforms.pair_transforms import (
    CHANNELS,
    FIXED,
    FIXED_MASK,
    FIXED_POINTS,
    MOVING,
    MOVING_POINTS,
    PairTransformConfig,
)
from firereg.transforms.splits import (
    DEFAULT_VAL_FRACTION,
    make_split,
    read_split,
    select_split,
    write_split,
)
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

__all__ = [
    "AFFINE_SUPERVISION",
    "LOG_COLUMNS",
    "STEP_COLUMNS",
    "TrainConfig",
    "Trainer",
    "EpochOrder",
    "SeededItems",
    "collate_pairs",
    "grid_points",
    "resolve_device",
    "run_config",
    "validate_network",
    "train",
]

AFFINE_SUPERVISION = ("points", "similarity")
#: columns of ``log.csv``, one row per validation: ``epoch`` (0-based), ``global_step``, the
#: epoch's mean training loss and parts (``affine_loss``: mean point distance of the affine
#: stage in working-size pixels with point supervision, its similarity otherwise),
#: validation FIRE AUCs and mean error (full-resolution px), ``seconds`` (run time so far,
#: all sessions), ``event``: ``epoch`` (an epoch finished) or ``budget`` (stopped mid-epoch)
LOG_COLUMNS = (
    "epoch", "global_step", "train_loss", "similarity", "smoothness", "affine_loss",
    "val_mAUC", "val_auc_S", "val_auc_P", "val_auc_A", "val_mean_error", "seconds", "event",
)
#: columns of ``train_steps.csv`` (``seconds``: wall time of the step)
STEP_COLUMNS = ("global_step", "epoch", "step_in_epoch", "loss", "similarity", "smoothness", "affine_loss", "seconds")
#: weight of the point terms (pixels / working size) of a matching affine stage against its match cross-entropy
AFFINE_POINT_WEIGHT = 10.0
_PARTS = ("loss", "similarity", "smoothness", "affine_loss")
#: how long ranks wait for each other (rank 0 validates while the others wait), minutes
DISTRIBUTED_TIMEOUT_MINUTES = 60

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Settings of one training run.

    Attributes:
        model: ``voxelmorph``, ``affine`` or ``cascade`` (affine network, then VoxelMorph).
        epochs: epochs to train (in total, counting those of a resumed run).
        lr: Adam learning rate.
        batch_size: pairs per step.
        size: working size, pixels (images are resized to ``size`` x ``size``).
        channel: image channel (``green``, ``luminance``, ``red``, ``blue``).
        lam: weight of the smoothness term.
        similarity: ``lncc``, ``mse`` or ``mi``.
        smoothness: ``diffusion`` or ``bending``.
        kernel_size: local NCC window, pixels (odd).
        affine_supervision: ``points`` (supervised by the least-squares affine of the
            augmented control points) or ``similarity`` (unsupervised).
        augment: random affine of the moving image + shared flip
            (``PairTransformConfig(augment=True)``).
        seed: seeds the split, the initialisation, the epoch order and the augmentation.
        val_fraction: share of pairs for validation (45/134 = FIRE's 89/45).
        checkpoint_every: save ``last.pt`` every this many steps (and at each epoch end).
        budget_minutes: wall-clock budget of one invocation; at the end of the step that
            exceeds it the run saves ``last.pt``, validates once and stops (None: no limit).
        cache: dataset cache, ``memory``, ``disk`` (in ``OUT/cache``) or ``none``.
        integration_steps: VoxelMorph only: > 0 makes it diffeomorphic (scaling and squaring).
        patches: folder of ``.npz`` patches (:class:`firereg.pipelines.training.patches.PatchDataset`) to train
            the affine model on instead of the FIRE training pairs (validation stays on FIRE).
        estimator: affine stage of ``affine``/``cascade``: ``matching`` (feature matches +
            robust fit, :class:`firereg.pipelines.nn.networks.MatchingAffineNet`) or ``regression``
            (heads on a correlation volume, :class:`firereg.pipelines.nn.networks.AffineNet`).
        self_pairs: with ``augment``, the probability that a training item of the affine or
            cascade model is a self-supervised pair (one image of a pair against a large
            random affine of itself, :class:`firereg.transforms.pair_transforms.RandSelfPaird`).
        repeats: each training pair appears this many times per epoch (each time augmented
            anew), so an epoch — and its validation — is not just a handful of steps.
        affine_warmup: cascade only: the share of the training during which only the affine
            stage trains (VoxelMorph is skipped, so steps are about 3x cheaper); of
            ``budget_minutes`` (measured on the run's total wall time) when a budget is
            set, else of ``epochs``. VoxelMorph learns little on pairs the affine stage
            does not yet align.
    """

    model: str = "cascade"
    epochs: int = 50
    lr: float = 1e-4
    batch_size: int = 1
    size: int = 256
    channel: str = "green"
    lam: float = 0.01
    similarity: str = "lncc"
    smoothness: str = "diffusion"
    kernel_size: int = 9
    affine_supervision: str = "points"
    augment: bool = True
    seed: int = 0
    val_fraction: float = DEFAULT_VAL_FRACTION
    checkpoint_every: int = 25
    budget_minutes: float | None = None
    cache: str = "memory"
    integration_steps: int = 0
    patches: str | None = None
    estimator: str = "matching"
    self_pairs: float = 0.5
    repeats: int = 1
    affine_warmup: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.patches, os.PathLike):
            self.patches = str(self.patches)

    def validate(self) -> None:
        """Check every value.

        Raises:
            ValueError: naming the field, its value and what is allowed.
        """

        def bad(field: str, allowed: str) -> ValueError:
            return ValueError(f"TrainConfig.{field} = {getattr(self, field)!r} is invalid: {allowed}")

        def is_int(v) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_num(v) -> bool:
            return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

        if self.model not in MODEL_TYPES:
            raise bad("model", f"choose one of {list(MODEL_TYPES)}")
        if not is_int(self.epochs) or self.epochs < 1:
            raise bad("epochs", "need an integer >= 1")
        if not is_num(self.lr) or not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", "need a finite number > 0")
        if not is_int(self.batch_size) or self.batch_size < 1:
            raise bad("batch_size", "need an integer >= 1")
        if not is_int(self.size) or self.size < 16:
            raise bad("size", "need an integer >= 16 (pixels)")
        if self.channel not in CHANNELS:
            raise bad("channel", f"choose one of {list(CHANNELS)}")
        if not is_num(self.lam) or not (self.lam >= 0 and math.isfinite(self.lam)):
            raise bad("lam", "need a finite number >= 0")
        if self.similarity not in SIMILARITIES:
            raise bad("similarity", f"choose one of {list(SIMILARITIES)}")
        if self.smoothness not in SMOOTHNESS:
            raise bad("smoothness", f"choose one of {list(SMOOTHNESS)}")
        if not is_int(self.kernel_size) or self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise bad("kernel_size", "need an odd integer >= 3")
        if is_int(self.size) and self.kernel_size > self.size:
            raise bad("kernel_size", f"must not exceed the working size {self.size}")
        if self.affine_supervision not in AFFINE_SUPERVISION:
            raise bad("affine_supervision", f"choose one of {list(AFFINE_SUPERVISION)}")
        if not isinstance(self.augment, (bool, np.bool_)):
            raise bad("augment", "need True or False")
        if not is_int(self.seed) or self.seed < 0:
            raise bad("seed", "need an integer >= 0")
        if not is_num(self.val_fraction) or not 0 < self.val_fraction < 1:
            raise bad("val_fraction", "need a number in (0, 1)")
        if not is_int(self.checkpoint_every) or self.checkpoint_every < 1:
            raise bad("checkpoint_every", "need an integer >= 1 (steps)")
        if self.budget_minutes is not None and (
            not is_num(self.budget_minutes) or not (self.budget_minutes > 0)
        ):
            raise bad("budget_minutes", "need a number > 0 (minutes) or None for no limit")
        if self.cache not in CACHE_MODES:
            raise bad("cache", f"choose one of {list(CACHE_MODES)}")
        if not is_int(self.integration_steps) or self.integration_steps < 0:
            raise bad("integration_steps", "need an integer >= 0")
        if self.integration_steps > 0 and self.model != "voxelmorph":
            raise bad("integration_steps", f"only the voxelmorph model integrates a velocity field, not {self.model!r}")
        if self.estimator not in AFFINE_ESTIMATORS:
            raise bad("estimator", f"choose one of {list(AFFINE_ESTIMATORS)}")
        if not is_num(self.self_pairs) or not 0 <= self.self_pairs <= 1:
            raise bad("self_pairs", "need a probability in [0, 1]")
        if not is_int(self.repeats) or self.repeats < 1:
            raise bad("repeats", "need an integer >= 1")
        if not is_num(self.affine_warmup) or not 0 <= self.affine_warmup < 1:
            raise bad("affine_warmup", "need a share in [0, 1)")
        if self.patches is not None:
            if not isinstance(self.patches, str) or not self.patches:
                raise bad("patches", "need a folder path or None")
            if self.model != "affine":
                raise bad("patches", f"patch training trains only the affine model, not {self.model!r}")

    def net_kwargs(self) -> dict:
        """Keyword arguments of :func:`firereg.pipelines.nn.networks.build_network` (stored in checkpoints)."""
        if self.model == "voxelmorph":
            return {"integration_steps": int(self.integration_steps)} if self.integration_steps > 0 else {}
        return {"estimator": self.estimator}

    def loss_config(self) -> LossConfig:
        return LossConfig(similarity=self.similarity, smoothness=self.smoothness, lam=self.lam, kernel_size=self.kernel_size)

    def transform_config(self) -> PairTransformConfig:
        self_pairs = float(self.self_pairs) if self.model != "voxelmorph" else 0.0  # VoxelMorph cannot follow large affines
        return PairTransformConfig(size=self.size, channel=self.channel, augment=bool(self.augment),
                                   self_pair_prob=self_pairs, intensity=bool(self.augment))


# ----------------------------------------------------------------------------- data


def _item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0])


class SeededItems(torch.utils.data.Dataset):
    """Wrap a MONAI dataset so the augmentation of item ``i`` in epoch ``e`` is seeded from
    ``(seed, e, i)`` — independent of which items were loaded before (exact resume).

    With ``repeats`` > 1 the epoch holds every item that many times (item ``i`` is
    ``dataset[i % len(dataset)]``, each with its own seed). Set :attr:`epoch` before each epoch.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int, repeats: int = 1) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.repeats = int(repeats)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset) * self.repeats

    def __getitem__(self, index: int):
        transform = getattr(self.dataset, "transform", None)
        if transform is not None and hasattr(transform, "set_random_state"):
            transform.set_random_state(seed=_item_seed(self.seed, self.epoch, index))
        return self.dataset[index % len(self.dataset)]


class EpochOrder(Sampler[int]):
    """The item order of one epoch: ``randperm`` from ``torch.Generator`` seeded with
    ``seed + epoch``, without its first ``skip`` items (those already trained on).

    With ``world_size`` > 1 (distributed training) rank ``rank`` takes its shard of that
    order, as ``torch.utils.data.DistributedSampler`` does: the order is padded with its
    own first items to a multiple of ``world_size`` and the rank takes the items at
    positions ``rank, rank + world_size, ...``; ``skip`` then counts items of the shard.
    """

    def __init__(self, n: int, seed: int, epoch: int, skip: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.epoch, self.skip = int(n), int(seed), int(epoch), int(skip)
        self.rank, self.world_size = int(rank), int(world_size)
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank} and world_size {world_size}")

    def order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=generator).tolist()

    def shard_size(self) -> int:
        """Items of one rank's shard (all items without distribution)."""
        return math.ceil(self.n / self.world_size)

    def shard(self) -> list[int]:
        """This rank's items of the epoch, in order (before ``skip``)."""
        order = self.order()
        if self.world_size == 1 or not order:
            return order
        total = self.shard_size() * self.world_size
        padded = (order * math.ceil(total / len(order)))[:total]
        return padded[self.rank : total : self.world_size]

    def __iter__(self):
        return iter(self.shard()[self.skip :])

    def __len__(self) -> int:
        return max(self.shard_size() - self.skip, 0)


def _plain(x):
    return x.as_tensor() if hasattr(x, "as_tensor") else x


def collate_pairs(items: Sequence[Mapping]) -> dict:
    """Collate pair dictionaries into a batch of plain tensors.

    Images and masks (1, S, S) → (B, 1, S, S); control points (1, N, 2) (or (N, 2)) →
    (B, N_max, 2) float32, padded with NaN rows for pairs with fewer points
    (:func:`firereg.pipelines.nn.losses.fit_affine` ignores them); other tensors of one shape are
    stacked, anything else (names, paths) becomes a list.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch: dict = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key in (FIXED_POINTS, MOVING_POINTS):
            pts = [torch.as_tensor(_plain(v), dtype=torch.float32).reshape(-1, 2) for v in values]
            n = max(p.shape[0] for p in pts)
            padded = torch.full((len(pts), n, 2), float("nan"))
            for i, p in enumerate(pts):
                padded[i, : p.shape[0]] = p
            batch[key] = padded
        elif all(isinstance(v, (torch.Tensor, np.ndarray)) for v in values):
            tensors = [torch.as_tensor(_plain(v)) for v in values]
            if all(t.shape == tensors[0].shape for t in tensors):
                batch[key] = torch.stack(tensors).float() if tensors[0].is_floating_point() else torch.stack(tensors)
            else:
                batch[key] = tensors
        else:
            batch[key] = values
    return batch


def grid_points(size: int, batch: int = 1, n: int = 8, margin: float = 0.1) -> torch.Tensor:
    """(batch, n*n, 2) regular grid of pixel points inside a ``size`` x ``size`` image
    (from ``margin`` to ``1 - margin`` of the image), where the affine loss is evaluated."""
    axis = torch.linspace(margin * (size - 1), (1 - margin) * (size - 1), n)
    gx, gy = torch.meshgrid(axis, axis, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)
    return pts.unsqueeze(0).expand(batch, -1, -1).contiguous()


# ----------------------------------------------------------------------------- model + loss


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device a run trains on: ``device`` if given, else the CPU — or, in a
    ``torchrun`` process (``WORLD_SIZE`` > 1) on a machine with CUDA, ``cuda:LOCAL_RANK``.
    A bare ``cuda`` becomes ``cuda:LOCAL_RANK`` under ``torchrun``."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if device is None:
        return torch.device("cuda", local_rank) if launched and torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched:
        return torch.device("cuda", local_rank)
    return device


class _NetworkLoss(nn.Module):
    """The network and its training loss as one module, so that ``DistributedDataParallel``
    sees every forward pass (the cascade's loss calls the stages' methods, not ``forward``)."""

    def __init__(self, net: nn.Module, loss: Callable[[nn.Module, Mapping], tuple[torch.Tensor, dict[str, float]]]) -> None:
        super().__init__()
        self.net = net
        self._loss = loss

    def forward(self, batch: Mapping) -> tuple[torch.Tensor, dict[str, float]]:
        return self._loss(self.net, batch)


class Trainer:
    """The network, optimiser and loss of one run, and one optimisation step.

    Args:
        config: the run's settings (validated here).
        device: where the network and loss run (default: the CPU); batches are moved there.
    """

    def __init__(self, config: TrainConfig, device: str | torch.device | None = None) -> None:
        config.validate()
        self.config = config
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.net: nn.Module = build_network(config.model, **config.net_kwargs()).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.registration_loss = RegistrationLoss(config.loss_config()).to(self.device)
        #: what a step calls: the network and loss, wrapped by :meth:`distribute`
        self.model: nn.Module = _NetworkLoss(self.net, self._loss)
        self.world_size = 1
        #: cascade: train only the affine stage (set by the training loop during the warm-up)
        self.affine_only = False

    def distribute(self) -> None:
        """Wrap the network and loss in ``DistributedDataParallel`` (an initialised process
        group is needed): gradients are averaged over ranks, rank 0's weights are broadcast."""
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # the affine warm-up leaves VoxelMorph without gradients for a while
        unused = self.config.model == "cascade" and self.config.affine_warmup > 0
        self.model = DistributedDataParallel(_NetworkLoss(self.net, self._loss), device_ids=device_ids,
                                             find_unused_parameters=unused)
        self.world_size = dist.get_world_size()

    def to_device(self, batch: Mapping) -> dict:
        """The batch with its tensors on the trainer's device."""
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # -- loss --------------------------------------------------------------------------
    def _affine_target(self, batch: Mapping) -> torch.Tensor:
        if "affine" in batch:  # patches carry their affine
            return torch.as_tensor(batch["affine"], dtype=torch.float32, device=self.device)
        return fit_affine(batch[FIXED_POINTS], batch[MOVING_POINTS]).float()

    def _affine_stage_loss(
        self,
        net: nn.Module,
        affine_net: nn.Module,
        moving: torch.Tensor,
        fixed: torch.Tensor,
        mask: torch.Tensor | None,
        batch: Mapping,
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The affine stage's matrix (B, 2, 3), its O(1) loss, and the logged value (pixels for points).

        With point supervision a :class:`MatchingAffineNet` is trained on its final and
        coarse affines plus the cross-entropy of its matches (weight 1; the point terms are
        scaled by ``AFFINE_POINT_WEIGHT`` / size so both matter from the first step).
        """
        if isinstance(affine_net, MatchingAffineNet):
            estimate = affine_net.estimate(moving, fixed)
            matrix = estimate.matrix
        else:
            estimate, matrix = None, affine_net.predict_affine(moving, fixed)
        if self.config.affine_supervision == "points":
            size = fixed.shape[2]
            target = self._affine_target(batch)
            grid = grid_points(size, matrix.shape[0]).to(matrix.device)
            pixels = affine_point_loss(matrix, target, grid)
            if estimate is None:
                return matrix, pixels / size, float(pixels.detach())
            coarse = affine_point_loss(estimate.coarse, target, grid)
            entropy = match_cross_entropy(estimate.log_probs, estimate.cells, target, estimate.fixed_valid,
                                          estimate.moving_valid, sigma=float(affine_net.stride))
            return matrix, entropy + AFFINE_POINT_WEIGHT * (pixels + coarse) / size, float(pixels.detach())
        aligned = net.warp(moving, affine_to_ddf(matrix, fixed.shape[2:]))
        sim = self.registration_loss.similarity(aligned, fixed, mask)
        return matrix, sim, float(sim.detach())

    def compute_loss(self, batch: Mapping) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of a collated batch, and its parts (floats; NaN = not used)."""
        return self._loss(self.net, self.to_device(batch))

    def _loss(self, net: nn.Module, batch: Mapping) -> tuple[torch.Tensor, dict[str, float]]:
        moving = batch[MOVING].float()
        fixed = batch[FIXED].float()
        mask = batch.get(FIXED_MASK)
        mask = mask.float() if isinstance(mask, torch.Tensor) else None
        parts = {"similarity": float("nan"), "smoothness": float("nan"), "affine_loss": float("nan")}
        model = self.config.model
        if model == "voxelmorph":
            warped, ddf = net(moving, fixed)
            total, reg = self.registration_loss(warped, fixed, ddf, mask)
            parts.update(reg)
        elif model == "affine":
            _, total, logged = self._affine_stage_loss(net, net, moving, fixed, mask, batch)
            if self.config.affine_supervision == "similarity":
                parts["similarity"] = logged
            else:
                parts["affine_loss"] = logged
        else:  # cascade: CascadeNet.forward, keeping the affine and the deformable DDF
            cascade: CascadeNet = net  # type: ignore[assignment]
            matrix, affine_total, logged = self._affine_stage_loss(cascade, cascade.affine, moving, fixed, mask, batch)
            parts["affine_loss"] = logged
            if self.affine_only:
                total = affine_total
            else:
                aligned = cascade.warp(moving, affine_to_ddf(matrix, moving.shape[2:]))
                u = cascade.deformable.predict_ddf(aligned, fixed)
                warped = cascade.warp(moving, cascade.compose(matrix, u))
                reg_total, reg = self.registration_loss(warped, fixed, u, mask)
                total = reg_total + affine_total
                parts.update(reg)
        parts["loss"] = float(total.detach())
        return total, parts

    def step(self, batch: Mapping) -> dict[str, float]:
        """One optimisation step on a collated batch; returns the loss parts (averaged over
        ranks in distributed training).

        Raises:
            RuntimeError: if the loss is not finite (names the pairs); in distributed
                training on every rank when it is not finite on one.
        """
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        total, parts = self.model(self.to_device(batch))
        parts = self._mean_over_ranks(parts)
        if not torch.isfinite(total) or not math.isfinite(parts["loss"]):
            raise RuntimeError(f"non-finite training loss {parts} on pairs {batch.get('name', '?')}")
        total.backward()
        self.optimizer.step()
        return parts

    def _mean_over_ranks(self, parts: dict[str, float]) -> dict[str, float]:
        if self.world_size == 1:
            return parts
        keys = sorted(parts)
        values = torch.tensor([parts[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        return {k: float(v) / self.world_size for k, v in zip(keys, values.tolist())}

    # -- state ---------------------------------------------------------------------------
    def state(self, data: Path | None = None, **training_state) -> dict:
        """A checkpoint dict (see :mod:`firereg.pipelines.inference.deep_method`) with the training state."""
        return {
            "model_type": self.config.model,
            "net_kwargs": self.config.net_kwargs(),
            "state_dict": self.net.state_dict(),
            "size": int(self.config.size),
            "channel": self.config.channel,
            "config": asdict(self.config),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
            "data": str(data) if data is not None else None,
            **training_state,
        }

    def load_state(self, ckpt: Mapping) -> None:
        """Restore network, optimiser (with this config's learning rate) and RNG states."""
        try:
            self.net.load_state_dict(ckpt["state_dict"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"checkpoint {ckpt.get('path', '?')} does not fit this run: {err}") from None
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr
        if "torch_rng" in ckpt:
            torch.set_rng_state(torch.as_tensor(ckpt["torch_rng"], dtype=torch.uint8))
        if "numpy_rng" in ckpt:
            np.random.set_state(ckpt["numpy_rng"])
        if "python_rng" in ckpt:
            random.setstate(ckpt["python_rng"])


# ----------------------------------------------------------------------------- validation


def validate_network(
    net: nn.Module, model_type: str, size: int, channel: str, manifest: pd.DataFrame, progress: bool = False
) -> tuple[dict[str, float], pd.DataFrame]:
    """Score a network on the manifest's pairs exactly as users run it.

    Every pair is registered at full resolution through
    :meth:`firereg.pipelines.inference.deep_method.DeepMethod.from_network` and scored with
    :func:`firereg.evaluation.landmarks.measure_pair`; a pair whose registration fails counts as
    failed (infinite error). A network on another device is scored by a CPU copy (the
    registration interface works on CPU arrays).

    Returns:
        ``(metrics, pairs)``: metrics ``mAUC``, ``auc_S``, ``auc_P``, ``auc_A``,
        ``mean_error`` (mean of the per-pair mean errors, full-resolution px) and
        ``median_error``; ``pairs`` the per-pair table of :func:`firereg.evaluation.fire_protocol.summarize`.
    """
    parameter = next(net.parameters(), None)
    if parameter is not None and parameter.device.type != "cpu":
        net = copy.deepcopy(net).cpu()
    was_training = net.training
    net.eval()
    method = DeepMethod.from_network(net, model_type, size, channel)
    rows = []
    try:
        for row in tqdm(manifest.to_dict("records"), desc="validation", unit="pair", leave=False, disable=not progress):
            record = {"method": method.name, "pair": row["name"], "category": row["category"],
                      "mean_error": math.inf, "median_error": math.inf, "max_error": math.inf,
                      "status": "failed", "seconds": math.nan, "direction": ""}
            fixed, moving, fixed_mask, moving_mask = load_pair(row)
            try:
                start = time.perf_counter()
                result = method.register(fixed, moving, fixed_mask, moving_mask)
                record["seconds"] = time.perf_counter() - start
                error, mapped = measure_pair(result, row["fixed_points"], row["moving_points"])
                if not np.all(np.isfinite(mapped)):
                    raise RuntimeError("control points mapped to non-finite positions")
            except Exception:  # a failed registration is a result (FIRE: failed), not a crash
                pass
            else:
                record.update(mean_error=error.mean, median_error=error.median, max_error=error.max,
                              status="ok", direction=error.direction)
            rows.append(record)
    finally:
        net.train(was_training)
    pairs = pd.DataFrame(rows)
    summary = summarize(pairs).iloc[0]
    metrics = {
        "mAUC": float(summary["mAUC"]),
        "auc_S": float(summary["auc_S"]),
        "auc_P": float(summary["auc_P"]),
        "auc_A": float(summary["auc_A"]),
        "mean_error": float(pairs["mean_error"].astype(float).mean()),
        "median_error": float(summary["median_error"]),
    }
    return metrics, pairs


def _better(metrics: Mapping[str, float], best_mauc: float, best_error: float) -> bool:
    mauc = metrics["mAUC"] if math.isfinite(metrics["mAUC"]) else -math.inf
    if mauc != best_mauc:
        return mauc > best_mauc
    return metrics["mean_error"] < best_error


# ----------------------------------------------------------------------------- logs


def _empty_sums() -> dict[str, dict[str, float]]:
    """Running sums of the loss parts over the epoch in progress (kept in checkpoints)."""
    return {"sum": {k: 0.0 for k in _PARTS}, "count": {k: 0 for k in _PARTS}}


def _append_row(path: Path, columns: Sequence[str], row: Mapping) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
        handle.flush()


def _truncate_csv(path: Path, keep: Callable[[dict], bool]) -> None:
    """Keep only the rows of a log that the checkpoint we resume from has seen (atomically)."""
    if not path.is_file():
        return
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        rows = [r for r in reader if keep(r)]
    if not header:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- the run


def run_config(out: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` stored in ``OUT/last.pt`` (to resume with the same settings).

    Raises:
        FileNotFoundError: naming ``OUT/last.pt``.
        CheckpointError: if it holds no training config.
    """
    path = Path(out) / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} not found")
    ckpt = load_checkpoint(path)
    stored = ckpt.get("config")
    if not isinstance(stored, dict):
        raise CheckpointError(f"checkpoint {path} holds no training config; it was not written by firereg train")
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in stored.items() if k in known})


def _check_resumable(ckpt: Mapping, config: TrainConfig, path: Path) -> None:
    for key, have, want in (
        ("model type", ckpt["model_type"], config.model),
        ("working size", int(ckpt["size"]), int(config.size)),
        ("channel", ckpt["channel"], config.channel),
        ("network settings", dict(ckpt["net_kwargs"]), config.net_kwargs()),
    ):
        if have != want:
            raise CheckpointError(f"cannot resume from {path}: its {key} is {have!r} but the config asks for {want!r}")
    missing = {"optimizer", "epoch", "step_in_epoch", "global_step"} - set(ckpt)
    if missing:
        raise CheckpointError(f"cannot resume from {path}: it lacks training state {sorted(missing)}")


def _training_data(config: TrainConfig, train_manifest: pd.DataFrame, out: Path, progress: bool):
    if config.patches is not None:
        folder = Path(config.patches)
        if not folder.is_dir():
            raise FileNotFoundError(f"patch folder not found: {folder}")
        try:
            from firereg.pipelines.training.patches import PatchDataset
        except ImportError as err:
            raise RuntimeError(
                f"--patches needs firereg.pipelines.training.patches.PatchDataset, which cannot be imported ({err})"
            ) from None
        dataset = PatchDataset(folder)
        if len(dataset) == 0:
            raise ValueError(f"patch folder {folder} holds no patches")
        return dataset
    if len(train_manifest) == 0:
        raise ValueError("the split leaves no training pairs")
    return fire_dataset(
        train_manifest, config.transform_config(), cache=config.cache, cache_dir=out / "cache", progress=progress
    )


@dataclass
class _Ranks:
    """This process's place in distributed training (rank 0 of 1 without it)."""

    rank: int = 0
    world_size: int = 1
    owned: bool = False  # the process group was initialised by train() (which destroys it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """``flag`` of any rank (all ranks take the same decision)."""
        if not self.enabled:
            return bool(flag)
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)


def _setup_distributed(device: torch.device) -> _Ranks:
    """Join (or, under ``torchrun`` with ``WORLD_SIZE`` > 1, create) the process group."""
    if dist.is_available() and dist.is_initialized():
        return _Ranks(dist.get_rank(), dist.get_world_size(), owned=False)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _Ranks()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 asks for distributed training, but this PyTorch has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=DISTRIBUTED_TIMEOUT_MINUTES))
    logger.info("rank %d of %d joined the %s process group", dist.get_rank(), dist.get_world_size(), backend)
    return _Ranks(dist.get_rank(), dist.get_world_size(), owned=True)


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
        data: FIRE folder (real or generated).
        out: run folder (created). Without ``resume`` it must not hold a run yet.
        resume: continue the run in ``out`` from ``out/last.pt`` (same model type, size,
            channel); ``config.epochs`` may be larger than before.
        progress: show progress bars.
        on_step: called after every step (and its checkpoint) with a dict ``epoch``,
            ``step_in_epoch``, ``global_step``, ``loss`` ... (for tests and monitoring);
            on every rank in distributed training.
        num_threads: ``torch.set_num_threads`` for the run; default ``os.cpu_count()``
            (divided by ``LOCAL_WORLD_SIZE`` under ``torchrun``). On a machine shared with
            other busy processes 1 is often much faster (no spinning threads waiting for a core).
        device: where to train (:func:`resolve_device`; default the CPU, or
            ``cuda:LOCAL_RANK`` under ``torchrun`` on a CUDA machine). Validation and
            checkpoints are device independent.

    Returns:
        ``best_mauc``, ``best_mean_error``, ``epochs`` (epochs completed), ``steps``
        (global step), ``seconds`` (wall time of this call), ``stopped`` (``done``,
        ``budget`` or ``already done``), ``best``/``last`` (checkpoint paths),
        ``rank`` and ``world_size`` (1 without distributed training).

    Raises:
        ValueError: for bad config values (naming the field) or an unusable split.
        FileNotFoundError: for a missing data folder, or ``resume`` without ``out/last.pt``.
        FileExistsError: if ``out`` already holds a run and ``resume`` is False.
        CheckpointError: naming ``out/last.pt`` if it is of another model type, size or channel.
    """
    config.validate()
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}")
    device = resolve_device(device)
    ranks = _setup_distributed(device)
    try:
        return _train(config, Path(data), Path(out), resume, progress, on_step, num_threads, device, ranks)
    finally:
        if ranks.owned and dist.is_initialized():
            dist.destroy_process_group()


def _train(
    config: TrainConfig,
    data: Path,
    out: Path,
    resume: bool,
    progress: bool,
    on_step: Callable[[dict], None] | None,
    num_threads: int | None,
    device: torch.device,
    ranks: _Ranks,
) -> dict:
    start = time.monotonic()
    main = ranks.main
    progress = progress and main
    last_path, best_path = out / "last.pt", out / "best.pt"
    log_path, steps_path, split_path = out / "log.csv", out / "train_steps.csv", out / "split.csv"

    ckpt = None
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(f"nothing to resume: {last_path} not found")
        ckpt = load_checkpoint(last_path)
        _check_resumable(ckpt, config, last_path)
    elif last_path.exists():
        raise FileExistsError(f"{out} already holds a training run ({last_path}); resume it or choose another folder")

    if num_threads is None:
        cores = os.cpu_count() or 1
        num_threads = max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))) if ranks.enabled else cores
    torch.set_num_threads(num_threads)
    if main and out.is_dir():  # temporary files of a save interrupted by a kill
        for stale in out.glob(".*.tmp-*"):
            if is_atomic_temporary(stale):
                stale.unlink(missing_ok=True)
    from monai.utils import set_determinism

    set_determinism(seed=config.seed)

    manifest = read_fire(data)
    if resume and split_path.is_file():
        split = read_split(split_path)
    else:
        split = make_split(manifest, val_fraction=config.val_fraction, seed=config.seed)  # the same on every rank
        out.mkdir(parents=True, exist_ok=True)
        if main:
            write_split(split, split_path)
    train_manifest = select_split(manifest, split, "train")
    val_manifest = select_split(manifest, split, "validation")
    if len(val_manifest) == 0:
        raise ValueError(f"the split {split_path} leaves no validation pairs")

    trainer = Trainer(config, device)
    dataset = SeededItems(_training_data(config, train_manifest, out, progress), config.seed, config.repeats)
    n_items = len(dataset)
    steps_per_epoch = math.ceil(EpochOrder(n_items, config.seed, 0, world_size=ranks.world_size).shard_size()
                                / config.batch_size)

    epoch, step_in_epoch, global_step = 0, 0, 0
    best_mauc, best_error, elapsed_before = -math.inf, math.inf, 0.0
    sums = _empty_sums()
    if ckpt is not None:
        trainer.load_state(ckpt)
        epoch, step_in_epoch, global_step = int(ckpt["epoch"]), int(ckpt["step_in_epoch"]), int(ckpt["global_step"])
        best_mauc = float(ckpt.get("best_mauc", -math.inf))
        best_error = float(ckpt.get("best_error", math.inf))
        elapsed_before = float(ckpt.get("elapsed", 0.0))
        sums = {k: dict(v) for k, v in (ckpt.get("epoch_sums") or sums).items()}
        stored_batch = (ckpt.get("config") or {}).get("batch_size", config.batch_size)
        if step_in_epoch > 0 and stored_batch != config.batch_size:
            raise CheckpointError(
                f"cannot resume from {last_path} mid-epoch with another batch size "
                f"({stored_batch} -> {config.batch_size}); resume with --batch-size {stored_batch}"
            )
        stored_world = int(ckpt.get("world_size", 1))
        if step_in_epoch > 0 and stored_world != ranks.world_size:
            raise CheckpointError(
                f"cannot resume from {last_path} mid-epoch with another number of processes "
                f"({stored_world} -> {ranks.world_size}); resume with {stored_world}"
            )
        if step_in_epoch > steps_per_epoch:
            raise CheckpointError(
                f"cannot resume from {last_path}: it is {step_in_epoch} steps into an epoch of {steps_per_epoch} "
                f"steps; the training data changed"
            )
        if main:  # drop log rows the checkpoint has not seen (written after it, before a kill)
            _truncate_csv(log_path, lambda r: r.get("event") != "epoch" or int(r["epoch"]) < epoch)
            _truncate_csv(steps_path, lambda r: int(r["global_step"]) <= global_step)
    if ranks.enabled:
        trainer.distribute()  # after loading: DDP starts from rank 0's weights

    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"), purge_step=global_step + 1 if ckpt is not None else None)

    def scalar(tag: str, value: float) -> None:
        if writer is not None:
            writer.add_scalar(tag, value, global_step)

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - start

    def warming_up() -> bool:
        if config.model != "cascade" or config.affine_warmup <= 0:
            return False
        if config.budget_minutes is not None:
            return elapsed() < 60.0 * config.budget_minutes * config.affine_warmup
        return epoch < config.epochs * config.affine_warmup

    def over_budget() -> bool:
        if config.budget_minutes is None:
            return False
        return ranks.any(time.monotonic() - start > 60.0 * config.budget_minutes, device)

    def snapshot(**extra) -> dict:
        return trainer.state(
            data=data, epoch=epoch, step_in_epoch=step_in_epoch, global_step=global_step,
            best_mauc=best_mauc, best_error=best_error, epoch_sums={k: dict(v) for k, v in sums.items()},
            elapsed=elapsed(), world_size=ranks.world_size,
            steps_per_epoch=steps_per_epoch, **extra,
        )

    def save_last() -> None:
        if main:
            save_checkpoint(snapshot(), last_path)

    def validate_and_log(event: str) -> None:
        """Rank 0 validates, saves ``best.pt`` and logs; the other ranks wait for it."""
        nonlocal best_mauc, best_error
        if main:
            metrics, _ = validate_network(trainer.net, config.model, config.size, config.channel, val_manifest, progress)
            if _better(metrics, best_mauc, best_error):
                best_mauc = metrics["mAUC"] if math.isfinite(metrics["mAUC"]) else -math.inf
                best_error = metrics["mean_error"]
                save_checkpoint(snapshot(validation=metrics, validated_epoch=epoch), best_path)
            means = {k: sums["sum"][k] / sums["count"][k] if sums["count"][k] else math.nan for k in _PARTS}
            row = {
                "epoch": epoch, "global_step": global_step, "train_loss": means["loss"],
                "similarity": means["similarity"], "smoothness": means["smoothness"], "affine_loss": means["affine_loss"],
                "val_mAUC": metrics["mAUC"], "val_auc_S": metrics["auc_S"], "val_auc_P": metrics["auc_P"],
                "val_auc_A": metrics["auc_A"], "val_mean_error": metrics["mean_error"],
                "seconds": round(elapsed(), 3), "event": event,
            }
            _append_row(log_path, LOG_COLUMNS, row)
            for key in ("train_loss", "similarity", "smoothness", "affine_loss"):
                if not math.isnan(row[key]):
                    scalar(f"epoch/{key}", row[key])
            for key, value in metrics.items():
                if math.isfinite(value):
                    scalar(f"val/{key}", value)
            writer.flush()
        ranks.barrier()

    stopped = "already done" if epoch >= config.epochs else "done"
    try:
        while epoch < config.epochs:
            dataset.epoch = epoch
            loader = DataLoader(
                dataset,
                batch_size=config.batch_size,
                sampler=EpochOrder(n_items, config.seed, epoch, skip=step_in_epoch * config.batch_size,
                                   rank=ranks.rank, world_size=ranks.world_size),
                collate_fn=collate_pairs,
                num_workers=0,
                generator=torch.Generator().manual_seed(config.seed + epoch),
            )
            bar = tqdm(total=steps_per_epoch, initial=step_in_epoch, desc=f"epoch {epoch + 1}/{config.epochs}",
                       unit="step", disable=not progress)
            budget_hit = False
            for batch in loader:
                t0 = time.perf_counter()
                trainer.affine_only = ranks.any(warming_up(), device)
                parts = trainer.step(batch)
                seconds = time.perf_counter() - t0
                step_in_epoch += 1
                global_step += 1
                for key in _PARTS:
                    if not math.isnan(parts[key]):
                        sums["sum"][key] += parts[key]
                        sums["count"][key] += 1
                        scalar(f"train/{key}", parts[key])
                if main:
                    _append_row(steps_path, STEP_COLUMNS, {"global_step": global_step, "epoch": epoch,
                                                           "step_in_epoch": step_in_epoch, **parts,
                                                           "seconds": round(seconds, 4)})
                bar.set_postfix(loss=f"{parts['loss']:.4f}")
                bar.update()
                if global_step % config.checkpoint_every == 0:
                    save_last()
                if on_step is not None:
                    on_step({"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                             "seconds": seconds, **parts})
                if step_in_epoch < steps_per_epoch and over_budget():
                    budget_hit = True
                    break
            bar.close()
            if budget_hit:
                save_last()
                validate_and_log("budget")
                stopped = "budget"
                break
            validate_and_log("epoch")
            epoch += 1
            step_in_epoch = 0
            sums = _empty_sums()
            save_last()
            if epoch < config.epochs and over_budget():
                stopped = "budget"
                break
        ranks.barrier()  # rank 0's last checkpoint is on disk before any rank returns
        if ranks.enabled:  # every rank returns rank 0's best validation
            shared = [best_mauc, best_error]
            dist.broadcast_object_list(shared, src=0)
            best_mauc, best_error = shared
    finally:
        if writer is not None:
            writer.close()

    logger.info(
        "training finished on rank %d of %d: %d epochs, %d steps (%s) in %.1f s",
        ranks.rank, ranks.world_size, epoch, global_step, stopped, time.monotonic() - start,
    )
    return {
        "best_mauc": best_mauc,
        "best_mean_error": best_error,
        "epochs": epoch,
        "steps": global_step,
        "seconds": time.monotonic() - start,
        "stopped": stopped,
        "best": str(best_path) if best_path.is_file() else None,
        "last": str(last_path),
        "rank": ranks.rank,
        "world_size": ranks.world_size,
    }
