"""Training's validation: the benchmark's own register-and-score routine on the validation pairs.

A network is scored exactly as ``firereg benchmark --methods TYPE:RUN --size BENCHMARK_SIZE``
scores its checkpoint: :class:`firereg.evaluation.results.ResizedMethod` resizes each
full-resolution pair to ``benchmark_size`` (longest side), the network's
:class:`firereg.pipelines.inference.deep_method.DeepMethod` resizes that to ``network_size``,
and :func:`firereg.evaluation.benchmark.score_pair` registers and measures it in
full-resolution pixels; :func:`firereg.evaluation.fire_protocol.summarize` gives the FIRE AUCs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from firereg.evaluation.benchmark import PAIRS_COLUMNS, score_pair
from firereg.evaluation.fire_protocol import summarize
from firereg.evaluation.results import ResizedMethod
from firereg.pipelines.inference.deep_method import DeepMethod
from firereg.pipelines.training.config import DEFAULT_BENCHMARK_SIZE

__all__ = ["validate_network", "is_better"]


def validate_network(
    net: nn.Module,
    model_type: str,
    network_size: int,
    channel: str,
    manifest: pd.DataFrame,
    progress: bool = False,
    benchmark_size: int = DEFAULT_BENCHMARK_SIZE,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Score a network on the manifest's pairs through the benchmark's own routine.

    Every pair goes through ``score_pair(ResizedMethod(DeepMethod.from_network(net, model_type,
    network_size, channel), benchmark_size), ...)`` (see the module docstring), so the numbers
    are those of ``firereg benchmark --size benchmark_size`` on the network's checkpoint; a pair
    whose registration fails, or that cannot be read (a truncated image, a corrupt or empty
    mask: the reason names the file), counts as failed (infinite error) and the validation goes
    on, so a damaged file never loses the epoch. A network on another device is scored by a CPU
    copy (the registration interface works on CPU arrays).

    Args:
        net: the network (its train/eval mode is restored afterwards).
        model_type: one of :data:`firereg.pipelines.nn.networks.MODEL_TYPES`.
        network_size: the size the network sees, px (the checkpoint's ``"size"``).
        channel: the image channel (:data:`firereg.transforms.channels.CHANNELS`).
        manifest: the pairs (:func:`firereg.transforms.fire_reader.read_fire`, maybe one split).
        progress: show a progress bar.
        benchmark_size: longest side, px, full-resolution pairs are resized to first.

    Returns:
        ``(metrics, pairs)``: metrics ``mAUC``, ``auc_S``, ``auc_P``, ``auc_A``,
        ``mean_error`` (mean of the per-pair mean errors, full-resolution px) and
        ``median_error``; ``pairs`` the per-pair table (the columns of the benchmark's
        ``pairs.csv``, :data:`firereg.evaluation.benchmark.PAIRS_COLUMNS`).
    """
    parameter = next(net.parameters(), None)
    if parameter is not None and parameter.device.type != "cpu":
        net = copy.deepcopy(net).cpu()
    was_training = net.training
    net.eval()
    method = ResizedMethod(DeepMethod.from_network(net, model_type, network_size, channel), benchmark_size)
    try:
        records = [
            score_pair(method, method.name, row)
            for row in tqdm(manifest.to_dict("records"), desc="validation", unit="pair", leave=False,
                            disable=not progress)
        ]
    finally:
        net.train(was_training)
    pairs = pd.DataFrame([{k: r.get(k, math.nan) for k in PAIRS_COLUMNS} for r in records], columns=PAIRS_COLUMNS)
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


def is_better(metrics: Mapping[str, float], best_mauc: float, best_error: float) -> bool:
    """Whether a validation beats the best so far: higher mAUC (NaN counts as -inf), ties → lower mean error."""
    mauc = metrics["mAUC"] if math.isfinite(metrics["mAUC"]) else -math.inf
    if mauc != best_mauc:
        return mauc > best_mauc
    return metrics["mean_error"] < best_error
