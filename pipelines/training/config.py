"""Settings of one training run (:class:`TrainConfig`), their checks, and the settings stored in a run.

Two sizes are named apart (conventions: :mod:`firereg.transforms.coords`):

- ``network_size`` (the field :attr:`TrainConfig.size`, checkpoint key ``"size"``): the
  working size the network sees, images resized to ``size`` x ``size``;
- ``benchmark_size`` (:attr:`TrainConfig.benchmark_size`): the longest side the validation
  first resizes full-resolution pairs to, as ``firereg benchmark --size`` does
  (:class:`firereg.evaluation.results.ResizedMethod`), so that ``log.csv`` and the benchmark
  report the same numbers for the same checkpoint.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from firereg.evaluation.benchmark import BenchmarkConfig
from firereg.pipelines.checkpoints import CheckpointError, load_checkpoint
from firereg.pipelines.nn.losses import SIMILARITIES, SMOOTHNESS, LossConfig
from firereg.pipelines.nn.networks import AFFINE_ESTIMATORS, MODEL_TYPES
from firereg.transforms.channels import CHANNELS
from firereg.transforms.datasets import CACHE_MODES
from firereg.transforms.generated_pairs import RETINA_MODES
from firereg.transforms.pair_transforms import PairTransformConfig
from firereg.transforms.residual_pairs import PrealignConfig
from firereg.transforms.splits import DEFAULT_VAL_FRACTION

__all__ = ["AFFINE_SUPERVISION", "DEFAULT_BENCHMARK_SIZE", "TRAIN_PAIRS", "TrainConfig", "run_config"]

AFFINE_SUPERVISION = ("points", "similarity")
#: where the training pairs come from: the data folder's training split, or generated on the fly
TRAIN_PAIRS = ("folder", "generated")
#: the working size of ``firereg benchmark`` (:class:`firereg.evaluation.benchmark.BenchmarkConfig`), px
DEFAULT_BENCHMARK_SIZE: int = BenchmarkConfig(methods=[]).benchmark_size


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_num(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass
class TrainConfig:
    """Settings of one training run.

    Attributes:
        model: ``voxelmorph``, ``affine`` or ``cascade`` (affine network, then VoxelMorph).
        epochs: epochs to train (in total, counting those of a resumed run).
        lr: Adam learning rate.
        batch_size: pairs per step.
        size: the network size, px: images are resized to ``size`` x ``size`` for the
            network (stored as the checkpoint's ``"size"``).
        channel: image channel (:data:`firereg.transforms.channels.CHANNELS`).
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
            exceeds it the run validates once, saves ``last.pt`` and stops (None: no limit).
        budget_steps: optimiser steps of the whole run (all invocations together): after
            global step ``budget_steps`` the run validates once, saves ``last.pt`` and stops;
            resuming it continues only if ``budget_steps`` was raised. Unlike a wall-clock
            budget it does not depend on the machine's speed: the same settings and thread
            count give the same model (None: no limit). With both
            budgets the run stops at whichever comes first.
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
            ``budget_steps`` when set (the same on any machine), else of ``budget_minutes``
            (measured on the run's total wall time) when set, else of ``epochs``. VoxelMorph learns little on pairs the affine stage
            does not yet align.
        benchmark_size: the benchmark size, px: validation resizes each full-resolution pair
            to this longest side first (``firereg benchmark --size``), then the network
            resizes it to ``size``; default: the benchmark's default.
        train_pairs: ``folder`` (the data folder's training split, cycled every epoch) or
            ``generated`` (a fresh generated pair every item,
            :class:`firereg.transforms.generated_pairs.GeneratedPairs`; validation stays on
            the data folder's validation split).
        generated_retinas: ``generated`` only: the retinas of the pairs, ``procedural`` (one
            of its own per pair), ``photograph`` (``skimage.data.retina()``) or ``mixed``.
        photograph_share: ``mixed`` only: the share of generated pairs from the photograph, in (0, 1).
        pairs_per_epoch: ``generated`` only: items per epoch (each repeated ``repeats`` times, each time new).
        generated_shares: ``generated`` only: relative frequency of each FIRE category, e.g.
            ``{"S": 1}`` for small motions only (None: FIRE's shares).
        generated_points: ``generated`` only: control points per generated pair (what
            ``point_weight`` supervises; the pair's images are the same for any number).
        generated_prealign_px: ``generated`` only: None (raw pairs) or the match noise, px of a
            1024 px image, of the quadratic that pre-aligns every pair's moving image
            (:func:`firereg.transforms.residual_pairs.prealign_pair`), as the hybrid's keypoint
            stage does before its deformable stage: pairs for training that stage.
        features: voxelmorph only: the six ``BasicUNet`` features (None: ``VoxelMorphNet``'s
            default); stored in the checkpoint's ``net_kwargs``.
        point_weight: voxelmorph only: weight of a landmark term added to the loss, the mean
            distance (network px) between ``p + u(p)`` and the moving control point of every
            fixed control point ``p`` (0 = unsupervised VoxelMorph).
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
    budget_steps: int | None = None
    cache: str = "memory"
    integration_steps: int = 0
    patches: str | None = None
    estimator: str = "matching"
    self_pairs: float = 0.5
    repeats: int = 1
    affine_warmup: float = 0.0
    benchmark_size: int = DEFAULT_BENCHMARK_SIZE
    train_pairs: str = "folder"
    generated_retinas: str = "procedural"
    photograph_share: float = 0.0
    pairs_per_epoch: int = 256
    generated_shares: dict[str, float] | None = None
    generated_points: int = 10
    generated_prealign_px: float | None = None
    features: tuple[int, ...] | None = None
    point_weight: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.patches, os.PathLike):
            self.patches = str(self.patches)
        if isinstance(self.features, list):
            self.features = tuple(self.features)

    def _bad(self, field: str, allowed: str) -> ValueError:
        return ValueError(f"TrainConfig.{field} = {getattr(self, field)!r} is invalid: {allowed}")

    def validate(self) -> None:
        """Check every value.

        Raises:
            ValueError: naming the field, its value and what is allowed.
        """
        bad = self._bad
        if self.model not in MODEL_TYPES:
            raise bad("model", f"choose one of {list(MODEL_TYPES)}")
        if not _is_int(self.epochs) or self.epochs < 1:
            raise bad("epochs", "need an integer >= 1")
        if not _is_num(self.lr) or not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", "need a finite number > 0")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise bad("batch_size", "need an integer >= 1")
        if not _is_int(self.size) or self.size < 16:
            raise bad("size", "need an integer >= 16 (pixels)")
        if self.channel not in CHANNELS:
            raise bad("channel", f"choose one of {list(CHANNELS)}")
        if not _is_num(self.lam) or not (self.lam >= 0 and math.isfinite(self.lam)):
            raise bad("lam", "need a finite number >= 0")
        if self.similarity not in SIMILARITIES:
            raise bad("similarity", f"choose one of {list(SIMILARITIES)}")
        if self.smoothness not in SMOOTHNESS:
            raise bad("smoothness", f"choose one of {list(SMOOTHNESS)}")
        if not _is_int(self.kernel_size) or self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise bad("kernel_size", "need an odd integer >= 3")
        if _is_int(self.size) and self.kernel_size > self.size:
            raise bad("kernel_size", f"must not exceed the network size {self.size}")
        if self.affine_supervision not in AFFINE_SUPERVISION:
            raise bad("affine_supervision", f"choose one of {list(AFFINE_SUPERVISION)}")
        if not isinstance(self.augment, (bool, np.bool_)):
            raise bad("augment", "need True or False")
        if not _is_int(self.seed) or self.seed < 0:
            raise bad("seed", "need an integer >= 0")
        if not _is_num(self.val_fraction) or not 0 < self.val_fraction < 1:
            raise bad("val_fraction", "need a number in (0, 1)")
        if not _is_int(self.checkpoint_every) or self.checkpoint_every < 1:
            raise bad("checkpoint_every", "need an integer >= 1 (steps)")
        if self.budget_minutes is not None and (not _is_num(self.budget_minutes) or not self.budget_minutes > 0):
            raise bad("budget_minutes", "need a number > 0 (minutes) or None for no limit")
        if self.budget_steps is not None and (not _is_int(self.budget_steps) or self.budget_steps < 1):
            raise bad("budget_steps", "need an integer >= 1 (optimiser steps) or None for no limit")
        if self.cache not in CACHE_MODES:
            raise bad("cache", f"choose one of {list(CACHE_MODES)}")
        self._validate_model_options()

    def _validate_model_options(self) -> None:
        """The checks of the model-specific fields and of ``benchmark_size`` (see :meth:`validate`)."""
        bad = self._bad
        if not _is_int(self.integration_steps) or self.integration_steps < 0:
            raise bad("integration_steps", "need an integer >= 0")
        if self.integration_steps > 0 and self.model != "voxelmorph":
            raise bad("integration_steps", f"only the voxelmorph model integrates a velocity field, not {self.model!r}")
        if self.estimator not in AFFINE_ESTIMATORS:
            raise bad("estimator", f"choose one of {list(AFFINE_ESTIMATORS)}")
        if not _is_num(self.self_pairs) or not 0 <= self.self_pairs <= 1:
            raise bad("self_pairs", "need a probability in [0, 1]")
        if not _is_int(self.repeats) or self.repeats < 1:
            raise bad("repeats", "need an integer >= 1")
        if not _is_num(self.affine_warmup) or not 0 <= self.affine_warmup < 1:
            raise bad("affine_warmup", "need a share in [0, 1)")
        if self.patches is not None:
            if not isinstance(self.patches, str) or not self.patches:
                raise bad("patches", "need a folder path or None")
            if self.model != "affine":
                raise bad("patches", f"patch training trains only the affine model, not {self.model!r}")
        if self.features is not None and (self.model != "voxelmorph" or not isinstance(self.features, tuple)
                                          or len(self.features) != 6
                                          or not all(_is_int(f) and f >= 1 for f in self.features)):
            raise bad("features", "need None or six integers >= 1 (BasicUNet features), voxelmorph only")
        if not _is_num(self.point_weight) or not (self.point_weight >= 0 and math.isfinite(self.point_weight)):
            raise bad("point_weight", "need a finite number >= 0")
        if self.point_weight > 0 and self.model != "voxelmorph":
            raise bad("point_weight", f"only the voxelmorph model has a landmark term, not {self.model!r}")
        if not _is_int(self.benchmark_size) or self.benchmark_size < 16:
            raise bad("benchmark_size", "need an integer >= 16 (pixels, the longest side)")
        self._validate_train_pairs()

    def _validate_train_pairs(self) -> None:
        """The checks of ``train_pairs`` and the generated pairs' settings (see :meth:`validate`)."""
        bad = self._bad
        if self.train_pairs not in TRAIN_PAIRS:
            raise bad("train_pairs", f"choose one of {list(TRAIN_PAIRS)}")
        if self.train_pairs == "generated" and self.patches is not None:
            raise bad("train_pairs", "generated pairs and a patch folder (patches) are two training sources; choose one")
        if self.generated_retinas not in RETINA_MODES:
            raise bad("generated_retinas", f"choose one of {list(RETINA_MODES)}")
        if not _is_num(self.photograph_share) or not 0 <= self.photograph_share <= 1:
            raise bad("photograph_share", "need a share in [0, 1]")
        if self.generated_retinas == "mixed" and not 0 < self.photograph_share < 1:
            raise bad("photograph_share", "generated_retinas 'mixed' needs a share in (0, 1) of pairs from the photograph")
        if self.generated_retinas != "mixed" and self.photograph_share != 0:
            raise bad("photograph_share", f"only generated_retinas 'mixed' uses it, not {self.generated_retinas!r}; "
                                          "leave it 0")
        if not _is_int(self.pairs_per_epoch) or self.pairs_per_epoch < 1:
            raise bad("pairs_per_epoch", "need an integer >= 1 (generated pairs per epoch)")
        shares = self.generated_shares
        if shares is not None and (not isinstance(shares, dict) or not shares or set(shares) - {"S", "P", "A"}
                                   or not all(_is_num(v) and v >= 0 for v in shares.values()) or not sum(shares.values()) > 0):
            raise bad("generated_shares", "need None or a dict of S, P, A shares >= 0, not all 0")
        if not _is_int(self.generated_points) or self.generated_points < 3:
            raise bad("generated_points", "need an integer >= 3 (control points per generated pair)")
        prealign = self.generated_prealign_px
        if prealign is not None and (not _is_num(prealign) or not (prealign >= 0 and math.isfinite(prealign))):
            raise bad("generated_prealign_px", "need None or a finite number >= 0 (px of a 1024 px image)")

    def net_kwargs(self) -> dict:
        """Keyword arguments of :func:`firereg.pipelines.nn.networks.build_network` (stored in checkpoints)."""
        if self.model == "voxelmorph":
            kwargs: dict = {"integration_steps": int(self.integration_steps)} if self.integration_steps > 0 else {}
            if self.features is not None:
                kwargs["features"] = [int(f) for f in self.features]
            return kwargs
        return {"estimator": self.estimator}

    def prealign_config(self) -> PrealignConfig | None:
        """The generated pairs' pre-alignment (:attr:`generated_prealign_px`), or None for raw pairs."""
        if self.generated_prealign_px is None:
            return None
        return PrealignConfig(noise_px=float(self.generated_prealign_px))

    def loss_config(self) -> LossConfig:
        """The settings of :class:`firereg.pipelines.nn.losses.RegistrationLoss`."""
        return LossConfig(similarity=self.similarity, smoothness=self.smoothness, lam=self.lam, kernel_size=self.kernel_size)

    def transform_config(self) -> PairTransformConfig:
        """The training pair pipeline's settings (at the network size)."""
        self_pairs = float(self.self_pairs) if self.model != "voxelmorph" else 0.0  # VoxelMorph cannot follow large affines
        return PairTransformConfig(size=self.size, channel=self.channel, augment=bool(self.augment),
                                   self_pair_prob=self_pairs, intensity=bool(self.augment))


def run_config(out: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` stored in ``OUT/last.pt`` (to resume with the same settings).

    Fields a run written by an older version lacks (e.g. ``benchmark_size``) take their defaults.

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
