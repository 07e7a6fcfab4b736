"""Inference seconds per pair of the deep models vs elastix affine + B-spline, and training speed.

    python benchmarks/speed.py [--data DIR] [--size 256] [--pairs 4] [--runs RUN ...]

Every method registers the same pairs the way ``firereg benchmark`` runs it: the full-resolution
images are resized to the benchmark size ``--size`` (longest side, px;
:class:`firereg.evaluation.results.ResizedMethod`) and a network resizes them again to its
network size (the one in its checkpoint; for untrained networks ``--size``). Deep models come
from run folders or checkpoints (``--runs``); without any, freshly initialised networks are
timed (speed does not depend on the weights). Prints median seconds per pair and the ratio to
elastix affine + B-spline, then training steps per second (batch 1, at network size ``--size``),
all measured in this run. Sizes and resolutions: :mod:`firereg.transforms.coords`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from firereg.evaluation.baselines import make_method
from firereg.evaluation.benchmark import load_pair
from firereg.evaluation.results import RegistrationMethod, ResizedMethod
from firereg.pipelines.default_data import resolve_data
from firereg.pipelines.inference.deep_method import DeepMethod
from firereg.pipelines.nn.losses import RegistrationLoss
from firereg.pipelines.nn.networks import MODEL_TYPES, build_network
from firereg.transforms.fire_reader import read_fire

#: one loaded pair: fixed, moving (row-major full-resolution images) and their field-of-view masks
Pair = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


def median_seconds(method: RegistrationMethod, pairs: Sequence[Pair]) -> float:
    """Median wall-clock seconds of ``method.register`` over ``pairs``."""
    times = []
    for fixed, moving, fixed_mask, moving_mask in pairs:
        start = time.perf_counter()
        method.register(fixed, moving, fixed_mask, moving_mask)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_steps_per_second(model: str, network_size: int, steps: int = 5) -> float:
    """Optimiser steps per second of ``model`` on random ``network_size`` x ``network_size`` pairs, batch 1
    (the first step, which warms up allocations, is not counted)."""
    net = build_network(model).train()
    loss_fn = RegistrationLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    moving, fixed = torch.rand(1, 1, network_size, network_size), torch.rand(1, 1, network_size, network_size)
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        warped, ddf = net(moving, fixed)
        loss, _ = loss_fn(warped, fixed, ddf)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    """Time the methods on the first ``--pairs`` pairs and print the tables (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="FIRE folder (default: the generated default)")
    parser.add_argument("--size", type=int, default=256,
                        help="benchmark size (longest side, px); also the network size of untrained networks")
    parser.add_argument("--pairs", type=int, default=4, help="pairs to time")
    parser.add_argument("--runs", nargs="*", default=[], help="run folders or checkpoints of trained models")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    manifest = read_fire(resolve_data(args.data)).head(args.pairs)
    pairs = [load_pair(row) for row in manifest.to_dict("records")]
    print(f"{len(pairs)} pairs of {manifest.attrs['root']}, benchmark size {args.size} px, "
          f"{torch.get_num_threads()} torch threads")

    reference = median_seconds(ResizedMethod(make_method("elastix-bspline"), args.size), pairs)
    rows = [("elastix-bspline (affine + B-spline)", reference)]
    rows.append(("elastix-affine", median_seconds(ResizedMethod(make_method("elastix-affine"), args.size), pairs)))
    if args.runs:
        deep = [DeepMethod(run) for run in args.runs]
    else:
        deep = [DeepMethod.from_network(build_network(m).eval(), m, args.size) for m in MODEL_TYPES]
    for method in deep:
        if method.size != args.size:
            print(f"note: {method.name} runs at its network size {method.size} px")
        seconds = median_seconds(ResizedMethod(method, args.size), pairs)
        rows.append((f"{method.name} ({'checkpoint' if args.runs else 'untrained weights'})", seconds))
    print(f"\n{'method':45} {'s/pair':>8} {'elastix-bspline / method':>26}")
    for name, seconds in rows:
        print(f"{name:45} {seconds:8.3f} {reference / seconds:25.1f}x")

    print(f"\ntraining steps per second at network size {args.size} px, batch 1:")
    for model in MODEL_TYPES:
        print(f"{model:12} {training_steps_per_second(model, args.size):6.2f} steps/s")


if __name__ == "__main__":
    main()
