"""firereg checkpoints: one format, one atomic save, one load with checks, the resume checks.

A checkpoint is a ``torch.save`` dict: ``model_type`` (voxelmorph/affine/cascade),
``net_kwargs``, ``state_dict``, ``size`` (the network size, px), ``channel``, plus training
state (``epoch``, ``step_in_epoch``, ``global_step``, ``optimizer``, ``world_size``, ``config``...).
A *run* folder holds ``best.pt`` and ``last.pt``. :func:`check_resumable` and
:func:`check_resume_position` decide whether a training run may continue from a ``last.pt``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from firereg.pipelines.nn.networks import MODEL_TYPES, build_network
from firereg.transforms.io import atomic_output

__all__ = [
    "CheckpointError",
    "resolve_checkpoint",
    "load_checkpoint",
    "load_model",
    "checkpoint_state",
    "save_checkpoint",
    "check_resumable",
    "check_resume_position",
    "TRAINING_STATE_KEYS",
]

#: the keys a checkpoint needs to resume training from it
TRAINING_STATE_KEYS = ("optimizer", "epoch", "step_in_epoch", "global_step")


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, incomplete, or of another model type."""


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file from a run folder (``best.pt``, else ``last.pt``) or a file path.

    Raises:
        FileNotFoundError: naming the path when nothing usable is there.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"run folder {path} has no best.pt or last.pt")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path, expected_type: str | None = None) -> dict:
    """Load a checkpoint dict (CPU), checking its keys and, if given, its model type.

    Raises:
        FileNotFoundError: naming the missing path.
        CheckpointError: naming the file if unreadable, incomplete or of another type.
    """
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None
    missing = {"model_type", "net_kwargs", "state_dict", "size", "channel"} - set(ckpt if isinstance(ckpt, dict) else {})
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a firereg checkpoint (missing {sorted(missing)})")
    if ckpt["model_type"] not in MODEL_TYPES:
        raise CheckpointError(f"checkpoint {path} has unknown model type {ckpt['model_type']!r}")
    if expected_type is not None and ckpt["model_type"] != expected_type:
        raise CheckpointError(
            f"checkpoint {path} holds a {ckpt['model_type']!r} model, expected {expected_type!r}"
        )
    ckpt["path"] = str(path)
    return ckpt


def load_model(path: str | Path, expected_type: str | None = None) -> tuple[torch.nn.Module, dict]:
    """The network of a checkpoint in eval mode, and the checkpoint dict."""
    ckpt = load_checkpoint(path, expected_type)
    net = build_network(ckpt["model_type"], **ckpt["net_kwargs"])
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {ckpt['path']} does not fit a {ckpt['model_type']} network: {err}") from None
    return net.eval(), ckpt


def checkpoint_state(
    net: torch.nn.Module, model_type: str, net_kwargs: Mapping, size: int, channel: str, **extra
) -> dict:
    """The checkpoint dict of a network: the keys :func:`load_checkpoint` requires, plus ``extra``.

    ``state_dict`` is copied to the CPU (detached), so the dict can be saved from any device.

    Args:
        net: the network (``build_network(model_type, **net_kwargs)`` rebuilds it).
        model_type: one of :data:`firereg.pipelines.nn.networks.MODEL_TYPES`.
        net_kwargs: the keyword arguments that build it.
        size: working size in pixels (the longest side the network sees).
        channel: the image channel it was trained on (:data:`firereg.transforms.channels.CHANNELS`).
        extra: more keys (training state, ``domain``, provenance...).

    Raises:
        ValueError: for an unknown model type.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model type {model_type!r}; choose one of {list(MODEL_TYPES)}")
    state = {key: value.detach().cpu() for key, value in net.state_dict().items()}
    return {"model_type": model_type, "net_kwargs": dict(net_kwargs), "state_dict": state,
            "size": int(size), "channel": str(channel), **extra}


def save_checkpoint(state: Mapping, path: str | Path) -> Path:
    """``torch.save`` a checkpoint dict atomically (:func:`firereg.transforms.io.atomic_output`),
    flushed to disk before the rename, so a ``kill -9`` leaves the old file or the new one."""
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        torch.save(dict(state), handle)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def check_resumable(
    ckpt: Mapping, path: str | Path, model_type: str, network_size: int, channel: str, net_kwargs: Mapping
) -> None:
    """Whether a run asking for this network may resume from ``ckpt`` (its ``last.pt``).

    Args:
        ckpt: the checkpoint dict (:func:`load_checkpoint`).
        path: its file, for the messages.
        model_type: the model type the run asks for.
        network_size: the network size the run asks for, px (checkpoint key ``"size"``).
        channel: the image channel the run asks for.
        net_kwargs: the network settings the run asks for.

    Raises:
        CheckpointError: naming ``path`` and what differs, or the training state it lacks.
    """
    for key, have, want in (
        ("model type", ckpt["model_type"], model_type),
        ("working size", int(ckpt["size"]), int(network_size)),
        ("channel", ckpt["channel"], channel),
        ("network settings", dict(ckpt["net_kwargs"]), dict(net_kwargs)),
    ):
        if have != want:
            raise CheckpointError(f"cannot resume from {path}: its {key} is {have!r} but the config asks for {want!r}")
    missing = set(TRAINING_STATE_KEYS) - set(ckpt)
    if missing:
        raise CheckpointError(f"cannot resume from {path}: it lacks training state {sorted(missing)}")


def check_resume_position(
    ckpt: Mapping, path: str | Path, batch_size: int, world_size: int, steps_per_epoch: int
) -> None:
    """Whether a run may continue mid-epoch where ``ckpt`` stopped (at an epoch boundary it always may).

    Mid-epoch the batches already done are skipped, so the batch size and the number of
    processes must be those of the checkpoint (``config.batch_size``, ``world_size``; 1 for
    checkpoints that do not record it) and the epoch must still be that long.

    Args:
        ckpt: the checkpoint dict.
        path: its file, for the messages.
        batch_size: the run's pairs per step (per process).
        world_size: the run's number of processes.
        steps_per_epoch: the run's steps per epoch.

    Raises:
        CheckpointError: naming ``path``, the stored and the asked value, and how to resume.
    """
    step_in_epoch = int(ckpt["step_in_epoch"])
    if step_in_epoch == 0:
        return
    stored_batch = (ckpt.get("config") or {}).get("batch_size", batch_size)
    if stored_batch != batch_size:
        raise CheckpointError(
            f"cannot resume from {path} mid-epoch with another batch size "
            f"({stored_batch} -> {batch_size}); resume with --batch-size {stored_batch}"
        )
    stored_world = int(ckpt.get("world_size", 1))
    if stored_world != world_size:
        raise CheckpointError(
            f"cannot resume from {path} mid-epoch with another number of processes "
            f"({stored_world} -> {world_size}); resume with {stored_world}"
        )
    if step_in_epoch > steps_per_epoch:
        raise CheckpointError(
            f"cannot resume from {path}: it is {step_in_epoch} steps into an epoch of {steps_per_epoch} "
            f"steps; the training data changed"
        )
