"""Training of the registration networks: a plain, explicit PyTorch loop with exact resume.

Modules by job: :mod:`~firereg.pipelines.training.config` (:class:`TrainConfig`, :func:`run_config`),
:mod:`~firereg.pipelines.training.sampling` (seeded items, the epoch order, batches),
:mod:`~firereg.pipelines.training.distributed` (devices, ranks, the process group),
:mod:`~firereg.pipelines.training.trainer` (losses, optimiser step, state),
:mod:`~firereg.pipelines.training.validation` (scoring through the benchmark's routine),
:mod:`~firereg.pipelines.training.logs` (``log.csv``, ``train_steps.csv``, TensorBoard),
:mod:`~firereg.pipelines.training.loop` (:func:`train`) and
:mod:`~firereg.pipelines.training.patches` (the affine patch mode).
"""

from firereg.pipelines.training.config import (
    AFFINE_SUPERVISION,
    DEFAULT_BENCHMARK_SIZE,
    TrainConfig,
    run_config,
)
from firereg.pipelines.training.distributed import resolve_device
from firereg.pipelines.training.logs import LOG_COLUMNS, STEP_COLUMNS
from firereg.pipelines.training.loop import train
from firereg.pipelines.training.sampling import (
    EpochOrder,
    SeededItems,
    collate_pairs,
    grid_points,
)
from firereg.pipelines.training.trainer import AFFINE_POINT_WEIGHT, Trainer
from firereg.pipelines.training.validation import validate_network

__all__ = [
    "AFFINE_POINT_WEIGHT",
    "AFFINE_SUPERVISION",
    "DEFAULT_BENCHMARK_SIZE",
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
