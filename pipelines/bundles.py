"""What the MONAI bundles in ``bundles/`` need on top of firereg's library.

The bundle configs (``bundles/fire_*/configs/*.yaml``) build their pieces from
:mod:`firereg.transforms`, :mod:`firereg.pipelines` and :mod:`firereg.evaluation` directly — training is
:func:`firereg.pipelines.training.train`, evaluation :func:`firereg.pipelines.training.validate_network`,
inference :func:`firereg.pipelines.register.register_pair`. This module holds only the glue:

- :func:`bundle_root`: a bundle's folder, the default ``bundle_root`` of its configs;
- :class:`VoxelMorphPairNet`, :class:`AffinePairNet`, :class:`CascadePairNet`: the networks
  of :mod:`firereg.pipelines.nn.networks` (same weights, same state-dict keys) that also take the
  model-zoo input of registration bundles, one tensor ``[moving, fixed]`` stacked on the
  channel axis, and that ``torch.jit.script`` exports by tracing (MONAI's ``Warp`` does not
  script) — what ``python -m monai.bundle ckpt_export`` needs;
- :func:`save_weights` / :func:`load_weights`: the bundle's ``models/model.pt`` (a plain
  state dict of ``network_def``, the model-zoo convention) from a firereg run folder, and
  back into ``network_def``; ``models/model_config.json`` beside it records the working
  size and channel it was trained at, and :func:`load_weights` refuses a mismatch;
- :func:`select_pairs`, :func:`evaluate_network`: the evaluation pairs and their FIRE
  metrics (``metrics.json``, ``pairs.csv``, ``summary.csv``/``.md``, ``success_rate.png``);
- :func:`find_pairs`, :func:`write_firereg_checkpoint`, :func:`register_pairs`: inference
  on every pair of a folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from torch import nn

import firereg
from firereg.evaluation.report.figures import plot_success_rate
from firereg.evaluation.report.tables import write_summary
from firereg.pipelines.checkpoints import (
    CheckpointError,
    checkpoint_state,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from firereg.pipelines.nn.networks import CascadeNet, MatchingAffineNet, VoxelMorphNet
from firereg.pipelines.training import (
    DEFAULT_BENCHMARK_SIZE,
    TrainConfig,
    validate_network,
)
from firereg.transforms.fire_reader import read_fire, truth_path
from firereg.transforms.io import atomic_to_csv, atomic_write_text
from firereg.transforms.splits import (
    DEFAULT_VAL_FRACTION,
    make_split,
    select_split,
    stored_split,
)

__all__ = [
    "MODEL_CONFIG_NAME",
    "bundles_dir",
    "bundle_root",
    "is_main_process",
    "StackedPairInput",
    "VoxelMorphPairNet",
    "AffinePairNet",
    "CascadePairNet",
    "save_weights",
    "load_weights",
    "select_pairs",
    "evaluate_network",
    "find_pairs",
    "write_firereg_checkpoint",
    "register_pairs",
]

logger = logging.getLogger(__name__)

#: written beside ``model.pt``: the settings the weights were trained with
MODEL_CONFIG_NAME = "model_config.json"

_PAIR_IMAGE_RE = re.compile(r"^(?P<pair>.+)_(?P<index>[12])\.(?:jpe?g|png|tif|tiff)$", re.IGNORECASE)


def bundles_dir() -> Path:
    """The folder of the bundles that ship with firereg: ``firereg/bundles`` of the installed
    package (a wheel's ``site-packages/firereg/bundles``, or ``bundles/`` of the source tree
    behind an editable install)."""
    return Path(firereg.__file__).resolve().parent / "bundles"


def bundle_root(name: str) -> str:
    """The folder of bundle ``name``: the current folder if it is that bundle (model-zoo
    usage, ``cd bundles/NAME``), else ``bundles/NAME`` under the current folder or in the
    installed package (:func:`bundles_dir`), else the current folder. Configs use it as the
    default ``bundle_root``; ``--bundle_root DIR`` overrides it."""
    cwd = Path.cwd()
    if cwd.name == name and (cwd / "configs").is_dir():
        return str(cwd)
    for base in (cwd / "bundles", bundles_dir()):
        if (base / name / "configs").is_dir():
            return str(base / name)
    return str(cwd)


def is_main_process() -> bool:
    """Rank 0 of a distributed run (of an initialised group, else ``$RANK``), or a single process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


# ----------------------------------------------------------------------------- networks


class _Traced(nn.Module):
    """A scriptable shell around a traced network (``forward(pair) -> (warped, ddf)``)."""

    def __init__(self, traced: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.traced = traced

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.traced(pair)


class StackedPairInput:
    """Mixin for the networks of :mod:`firereg.pipelines.nn.networks`: ``forward(pair)`` with one
    tensor ``pair = cat([moving, fixed], dim=1)`` (B, 2C, W, H) — the input of the model
    zoo's registration bundles — besides ``forward(moving, fixed)``. Both return
    ``(warped, ddf)``. The state dict is the network's own.

    ``torch.jit.script`` (what ``monai.bundle ckpt_export`` calls) cannot compile MONAI's
    ``Warp``; :meth:`__prepare_scriptable__` hands it the network traced at ``size`` x
    ``size`` instead, so the exported TorchScript model takes pairs of that size.

    Args:
        size: working size the network runs at, px (the traced input size).
        args, kwargs: the network's own arguments.
    """

    in_channels: int

    def __init__(self, *args, size: int = 256, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.size = int(size)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if fixed is None:
            pair = moving
            if pair.ndim < 3 or pair.shape[1] != 2 * self.in_channels:
                raise ValueError(
                    f"expected a stacked [moving, fixed] pair of shape (B, {2 * self.in_channels}, W, H), "
                    f"got {tuple(pair.shape)}"
                )
            moving, fixed = pair[:, : self.in_channels], pair[:, self.in_channels :]
        return super().forward(moving, fixed)  # type: ignore[misc]

    def __prepare_scriptable__(self) -> nn.Module:
        example = torch.rand(1, 2 * self.in_channels, self.size, self.size)
        was_training = self.training  # type: ignore[attr-defined]
        self.eval()  # type: ignore[attr-defined]
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                traced = torch.jit.trace(self, example, check_trace=False)
        finally:
            self.train(was_training)  # type: ignore[attr-defined]
        return _Traced(traced)


class VoxelMorphPairNet(StackedPairInput, VoxelMorphNet):
    """:class:`firereg.pipelines.nn.networks.VoxelMorphNet` with :class:`StackedPairInput`."""


class AffinePairNet(StackedPairInput, MatchingAffineNet):
    """:class:`firereg.pipelines.nn.networks.MatchingAffineNet` (the default affine estimator) with :class:`StackedPairInput`."""


class CascadePairNet(StackedPairInput, CascadeNet):
    """:class:`firereg.pipelines.nn.networks.CascadeNet` with :class:`StackedPairInput`."""


# ----------------------------------------------------------------------------- weights


def save_weights(network: nn.Module, run: str | Path, filepath: str | Path, model_type: str | None = None) -> Path | None:
    """Write the bundle's ``model.pt``: the weights of a firereg run (``best.pt``, else
    ``last.pt``) as a state dict of ``network`` (loaded strictly, so they fit the bundle's
    ``network_def``), and ``model_config.json`` beside it. Only rank 0 writes.

    Returns:
        The written path (None on other ranks).

    Raises:
        FileNotFoundError: if the run has no checkpoint.
        CheckpointError: if it holds another model type or does not fit ``network``.
    """
    if not is_main_process():
        return None
    ckpt = load_checkpoint(resolve_checkpoint(run), model_type)
    try:
        network.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {ckpt['path']} does not fit the bundle's network_def: {err}") from None
    filepath = Path(filepath)
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    save_checkpoint(state, filepath)  # a plain state dict (the model-zoo convention), saved atomically
    validation = ckpt.get("validation") or {}
    record = {
        "model_type": ckpt["model_type"],
        "size": int(ckpt["size"]),
        "channel": ckpt["channel"],
        "net_kwargs": dict(ckpt["net_kwargs"]),
        "source": str(ckpt["path"]),
        "epoch": ckpt.get("validated_epoch", ckpt.get("epoch")),
        "global_step": ckpt.get("global_step"),
        "validation": {k: _json_number(v) for k, v in validation.items()},
    }
    atomic_write_text(filepath.with_name(MODEL_CONFIG_NAME), json.dumps(record, indent=2) + "\n")
    mauc = validation.get("mAUC")
    logger.info(
        "wrote %s from %s%s", filepath, ckpt["path"],
        f" (validation mAUC {mauc:.3f})" if isinstance(mauc, float) and math.isfinite(mauc) else "",
    )
    return filepath


def load_weights(
    network: nn.Module,
    filepath: str | Path,
    size: int | None = None,
    channel: str | None = None,
    model_type: str | None = None,
) -> nn.Module:
    """Load the bundle's ``model.pt`` into ``network`` (strictly) and put it in eval mode.

    When ``model_config.json`` lies beside the file, the given ``size``, ``channel`` and
    ``model_type`` must match the ones the weights were trained with.

    Raises:
        FileNotFoundError: naming the missing file.
        ValueError: naming a setting that differs from the training.
        CheckpointError: if the weights do not fit ``network``.
    """
    filepath = Path(filepath)
    if not filepath.is_file():
        raise FileNotFoundError(
            f"bundle weights not found: {filepath}; train first (python -m monai.bundle run --config_file "
            f"configs/train.yaml) or pass --ckpt_path FILE"
        )
    record_path = filepath.with_name(MODEL_CONFIG_NAME)
    if record_path.is_file():
        trained = json.loads(record_path.read_text())
        for key, value in (("size", size), ("channel", channel), ("model_type", model_type)):
            if value is not None and key in trained and trained[key] != value:
                raise ValueError(
                    f"{filepath} was trained with {key} = {trained[key]!r} ({record_path}) but the config asks for "
                    f"{value!r}; pass --{key} {trained[key]}"
                )
    # a plain state dict (the model-zoo convention), not a firereg checkpoint: load_checkpoint does not apply
    state = torch.load(filepath, map_location="cpu", weights_only=True)
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{filepath} does not fit the bundle's network_def: {err}") from None
    return network.eval()


# ----------------------------------------------------------------------------- evaluation


def write_hybrid_bundle_weights(filepath: str | Path | None = None) -> Path:
    """Write ``bundles/fire_hybrid/models/model.pt``: the shipped VoxelMorph of the ``default`` method
    (:data:`firereg.pipelines.method_specs.DEFAULT_WEIGHTS`) as a state dict of the bundle's ``network_def``."""
    from firereg.pipelines.method_specs import DEFAULT_WEIGHTS

    ckpt = load_checkpoint(DEFAULT_WEIGHTS, "voxelmorph")
    network = VoxelMorphPairNet(**ckpt["net_kwargs"], size=int(ckpt["size"]))
    target = Path(filepath) if filepath is not None else bundles_dir() / "fire_hybrid" / "models" / "model.pt"
    written = save_weights(network, DEFAULT_WEIGHTS, target, "voxelmorph")
    target.with_name(MODEL_CONFIG_NAME).unlink(missing_ok=True)  # the bundle's settings are in its configs
    return written


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def select_pairs(
    data: str | Path,
    subset: str = "validation",
    split_file: str | Path | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    include_p37: bool = False,
) -> pd.DataFrame:
    """The manifest of the pairs to evaluate.

    Args:
        data: FIRE folder.
        subset: ``all``, ``train`` or ``validation``.
        split_file: the training run's ``split.csv``; used when it lists exactly this
            folder's pairs, else the split is made again with ``val_fraction`` and
            ``seed`` (:func:`firereg.transforms.splits.make_split`, as training makes it).
        include_p37: keep FIRE's P37 (known wrong ground truth).

    Raises:
        ValueError: for an unknown subset.
    """
    manifest = read_fire(data, exclude_known_bad=not include_p37)
    if subset == "all":
        manifest.attrs["split_source"] = "all pairs"
        return manifest
    split = stored_split(manifest, split_file) if split_file is not None else None
    source = str(split_file)
    if split is None:  # evaluation on other data: the split is made again, never written into the run
        split = make_split(manifest, val_fraction=val_fraction, seed=seed)
        source = f"make_split(val_fraction={val_fraction}, seed={seed})"
    selected = select_split(manifest, split, subset)
    selected.attrs["split_source"] = source
    return selected


def evaluate_network(
    network: nn.Module,
    model_type: str,
    size: int,
    channel: str,
    manifest: pd.DataFrame,
    output_dir: str | Path,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    benchmark_size: int = DEFAULT_BENCHMARK_SIZE,
) -> dict[str, float]:
    """Score ``network`` on the manifest's pairs with the FIRE protocol — the validation of
    :func:`firereg.pipelines.training.train` (:func:`firereg.pipelines.training.validate_network`,
    at ``benchmark_size``, px of the longest side, as ``firereg benchmark --size``; ``size`` is
    the network size) — and
    write ``metrics.json`` (AUC per category, mAUC, mean/median error in full-resolution
    px), ``pairs.csv``, ``summary.csv``, ``summary.md`` and ``success_rate.png``.

    Returns:
        The metrics (``mAUC``, ``auc_S``, ``auc_P``, ``auc_A``, ``mean_error``, ``median_error``).
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics, pairs = validate_network(network, model_type, size, channel, manifest, progress, benchmark_size)
    atomic_to_csv(pairs, out / "pairs.csv")
    root = manifest.attrs.get("root", "?")
    counts = manifest["category"].value_counts()
    notes = [
        f"data: {root}; pairs: {len(manifest)} ({', '.join(f'{c} {int(counts.get(c, 0))}' for c in 'SPA')}), "
        f"subset: {manifest.attrs.get('split', 'all')} ({manifest.attrs.get('split_source', '?')})",
        f"model: {model_type} at network size {size} px, channel {channel}; benchmark size {benchmark_size} px"
        + (f", weights {checkpoint}" if checkpoint is not None else ""),
        "P37 excluded" if manifest.attrs.get("exclude_known_bad", True) else "P37 kept",
    ]
    write_summary(pairs, out, notes)
    plot_success_rate(pairs, out / "success_rate.png")
    record = {
        **{k: _json_number(float(v)) for k, v in metrics.items()},
        "pairs": int(len(manifest)),
        "pairs_per_category": {c: int(counts.get(c, 0)) for c in "SPA"},
        "failed": int((pairs["status"] != "ok").sum()),
        "subset": manifest.attrs.get("split", "all"),
        "split": manifest.attrs.get("split_source"),
        "data": str(root),
        "model_type": model_type,
        "size": int(size),
        "benchmark_size": int(benchmark_size),
        "channel": channel,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "error_units": "full-resolution pixels",
    }
    atomic_write_text(out / "metrics.json", json.dumps(record, indent=2) + "\n")
    logger.info(
        "FIRE metrics of %s on %d pairs: mAUC %.3f (S %.3f, P %.3f, A %.3f), mean error %.2f px -> %s",
        model_type, len(manifest), metrics["mAUC"], metrics["auc_S"], metrics["auc_P"], metrics["auc_A"],
        metrics["mean_error"], out / "metrics.json",
    )
    return metrics


# ----------------------------------------------------------------------------- inference


def find_pairs(folder: str | Path) -> list[dict]:
    """Every image pair of a folder: ``<pair>_1.<ext>`` (fixed) and ``<pair>_2.<ext>``
    (moving), ``.jpg .jpeg .png .tif .tiff``, in ``folder/Images`` when that exists (a
    FIRE folder) else in ``folder``; the control points ``Ground Truth/control_points_<pair>_1_2.txt``
    come along when present.

    Returns:
        Dicts ``name``, ``fixed``, ``moving``, ``points`` (path or None), sorted by name.

    Raises:
        FileNotFoundError: naming a missing folder or one without pairs.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder of image pairs not found: {folder}")
    images = folder / "Images" if (folder / "Images").is_dir() else folder
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(images.iterdir()):
        match = _PAIR_IMAGE_RE.match(path.name)
        if match is not None and path.is_file():
            found.setdefault(match["pair"], {})[match["index"]] = path
    pairs = []
    for name in sorted(found):
        if set(found[name]) != {"1", "2"}:
            logger.warning("skipping %s: it has no partner image in %s", name, images)
            continue
        points = truth_path(folder, name)
        pairs.append({"name": name, "fixed": str(found[name]["1"]), "moving": str(found[name]["2"]),
                      "points": str(points) if points.is_file() else None})
    if not pairs:
        raise FileNotFoundError(f"no image pairs (<pair>_1.png and <pair>_2.png, or .jpg/.tif) in {images}")
    return pairs


def write_firereg_checkpoint(
    network: nn.Module,
    model_type: str,
    size: int,
    channel: str,
    filepath: str | Path,
    integration_steps: int = 0,
    features: Sequence[int] | None = None,
) -> Path:
    """Write the bundle network as a firereg checkpoint (:func:`firereg.pipelines.checkpoints.checkpoint_state`,
    saved atomically), which :func:`firereg.pipelines.register.register_pair` and ``firereg register --model`` load.
    ``features``: a VoxelMorph's ``BasicUNet`` features when not the default."""
    config = TrainConfig(model=model_type, integration_steps=integration_steps,
                         features=tuple(features) if features is not None else None)
    return save_checkpoint(checkpoint_state(network, model_type, config.net_kwargs(), size, channel), filepath)


def _pairs_table(rows: list[dict], output_dir: Path) -> pd.DataFrame:
    """``output_dir/pairs.csv`` of the registered pairs (written atomically)."""
    table = pd.DataFrame(rows)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_to_csv(table, output_dir / "pairs.csv")
    logger.info("registered %d pairs into %s", len(rows), output_dir)
    return table


def _pair_row(pair: Mapping, written: Mapping[str, Path]) -> dict:
    row = {"pair": pair["name"], "fixed": pair["fixed"], "moving": pair["moving"],
           **{key: str(path) for key, path in written.items()}}
    if "points" in written:
        table = pd.read_csv(written["points"])
        if "error_moving" in table:
            row["mean_error_moving"] = float(table["error_moving"].mean())
    return row


def register_pairs(
    pairs: Sequence[Mapping],
    checkpoint: str | Path,
    output_dir: str | Path,
    refine_steps: int = 0,
    model_type: str | None = None,
) -> pd.DataFrame:
    """Register every pair with :func:`firereg.pipelines.register.register_pair` into
    ``output_dir/<pair>/`` (``warped.png``, ``field.nii.gz``, ``field.npy``,
    ``checkerboard.png``, ``overlay.png``, and ``points_mapped.csv`` with control points);
    ``output_dir/pairs.csv`` lists them (with the mean landmark error where points exist).

    Returns:
        The ``pairs.csv`` table.
    """
    from firereg.pipelines.register import register_pair

    out = Path(output_dir)
    rows = []
    for pair in pairs:
        written = register_pair(pair["fixed"], pair["moving"], checkpoint, out / pair["name"],
                                points_path=pair.get("points"), refine_steps=refine_steps, expected_type=model_type)
        rows.append(_pair_row(pair, written))
        logger.info("registered %s -> %s", pair["name"], out / pair["name"])
    return _pairs_table(rows, out)


def register_pairs_with_method(
    pairs: Sequence[Mapping], spec: str, output_dir: str | Path, size: int = 512
) -> pd.DataFrame:
    """Register every pair with a method spec (:mod:`firereg.pipelines.method_specs`, e.g.
    ``hybrid:CHECKPOINT``) as ``firereg register --method`` does, at working size ``size`` px
    (:func:`firereg.pipelines.register.register_images`), into ``output_dir/<pair>/`` (its files
    and ``transform.json``); ``output_dir/pairs.csv`` lists them.

    Raises:
        firereg.evaluation.sanity.RegistrationFailed: naming the pair whose registration failed.
    """
    from firereg.evaluation.sanity import RegistrationFailed
    from firereg.pipelines.register import register_images

    out = Path(output_dir)
    rows = []
    for pair in pairs:
        try:
            written = register_images(pair["fixed"], pair["moving"], spec, out / pair["name"],
                                      points_path=pair.get("points"), size=size)
        except RegistrationFailed as err:
            raise RegistrationFailed(f"pair {pair['name']}: {err}") from None
        rows.append(_pair_row(pair, written))
        logger.info("registered %s -> %s", pair["name"], out / pair["name"])
    return _pairs_table(rows, out)
