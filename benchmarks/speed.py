"""Seconds per FIRE-sized pair of ``default`` vs ``sift``, ``sift-quadratic`` and ``elastix-bspline``.

    python benchmarks/speed.py [--data DIR] [--pairs 4] [--size 512] [--threads 1]
                               [--methods SPEC ...] [--deep [--network-size 256]]

``DIR`` (default ``speed-data``) is a FIRE folder; if it does not exist it is generated first
at FIRE's 2912 x 2912 px (as ``firereg make-data DIR --size 2912 --pairs S:2,P:1,A:1``;
``--generate-size`` for another size). ``--methods`` adds any method spec of
``firereg benchmark`` (:func:`firereg.pipelines.method_specs.make_any_method`), e.g.
``hybrid:pipelines/weights/default_voxelmorph.pt`` or ``hybrid+tto10:...`` (test-time
refinement) or ``cascade:RUN``. Every method registers the first ``--pairs`` pairs the way
``firereg benchmark`` and ``firereg register`` run it: the full-resolution images are resized to
the benchmark size ``--size`` (longest side, px; :class:`firereg.evaluation.results.ResizedMethod`;
a network then resizes to its own size) and the answer is in full-resolution pixels. The
images are decoded before timing (**decoding is excluded**); the resize to the benchmark size
is included. Each method registers the first pair once untimed (warm-up). Prints, from one
run, the median seconds per pair, the ratios elastix-bspline / method and sift / method, and
the load average before and after (on a shared machine the timings are only as quiet as it is).

``--deep`` also times freshly initialised networks of every model type at ``--network-size``
(speed does not depend on the weights; on images resized beforehand, without sanity checks) and prints training steps per second (batch 1, random
pairs at ``--network-size``). Sizes and resolutions: :mod:`firereg.transforms.coords`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from firereg.evaluation.benchmark import load_pair
from firereg.evaluation.results import RegistrationMethod, ResizedMethod
from firereg.pipelines.inference.deep_method import DeepMethod
from firereg.pipelines.method_specs import make_any_method
from firereg.pipelines.nn.losses import RegistrationLoss
from firereg.pipelines.nn.networks import MODEL_TYPES, build_network
from firereg.transforms.fire_generator import GeneratorConfig, make_fire_dataset
from firereg.transforms.fire_reader import read_fire

#: the methods always timed, in print order; the ratios are against the last two
METHODS = ("default", "sift-quadratic", "sift", "elastix-bspline")
#: FIRE's image size, pixels: the size of the generated data when ``--data`` does not exist
FIRE_SIZE = 2912
#: pairs of each category in the generated data
GENERATED_PAIRS = {"S": 2, "P": 1, "A": 1}

#: one loaded pair: fixed, moving (row-major full-resolution images) and their field-of-view masks
Pair = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


def seconds_per_pair(method: RegistrationMethod, pairs: Sequence[Pair]) -> float:
    """Median wall-clock seconds of ``method.register`` over ``pairs`` (after one untimed warm-up)."""
    method.register(*pairs[0])
    times = []
    for fixed, moving, fixed_mask, moving_mask in pairs:
        start = time.perf_counter()
        method.register(fixed, moving, fixed_mask, moving_mask)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_pairs(data: Path, n_pairs: int, generate_size: int = FIRE_SIZE) -> list[Pair]:
    """The first ``n_pairs`` pairs of the FIRE folder ``data``, decoded; the folder is generated
    first (``generate_size`` px, :data:`GENERATED_PAIRS`) if it does not exist.

    Raises:
        ValueError: naming ``data`` if it holds no pairs or ``n_pairs`` < 1.
    """
    if n_pairs < 1:
        raise ValueError(f"--pairs {n_pairs}: need at least 1")
    if not data.exists():
        print(f"generating {data} ({generate_size} x {generate_size} px) ...", flush=True)
        make_fire_dataset(data, GeneratorConfig(size=generate_size, pairs=dict(GENERATED_PAIRS)), progress=False)
    manifest = read_fire(data).head(n_pairs)
    if len(manifest) == 0:
        raise ValueError(f"{data}: no pairs to time")
    return [load_pair(row) for row in manifest.to_dict("records")]


def time_specs(specs: Sequence[str], pairs: Sequence[Pair], size: int) -> dict[str, float]:
    """Median seconds per pair of each method spec at benchmark size ``size`` px, keyed by its
    label; NaN (and a printed line with the reason) for a method that fails on a pair."""
    seconds = {}
    for spec in specs:
        method = make_any_method(spec)
        label = method.name if method.name not in seconds else f"{method.name} [{spec}]"
        try:
            seconds[label] = seconds_per_pair(ResizedMethod(method, size), pairs)
        except RuntimeError as err:  # no transform (too few keypoints, a failed sanity check): no time
            print(f"{label}: failed, not timed ({err})")
            seconds[label] = float("nan")
    return seconds


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


def time_untrained(pairs: Sequence[Pair], size: int, network_size: int) -> dict[str, float]:
    """Median seconds per pair of a freshly initialised network of every model type (network
    size ``network_size`` px) on the pairs resized to benchmark size ``size`` px beforehand
    (resize excluded, and no sanity check: an untrained network may answer the identity)."""
    def resized(image: np.ndarray | None) -> np.ndarray | None:
        if image is None:
            return None
        h, w = image.shape[:2]
        new = (max(1, round(w * size / max(h, w))), max(1, round(h * size / max(h, w))))
        if image.dtype == bool:
            return cv2.resize(image.astype(np.uint8), new, interpolation=cv2.INTER_NEAREST).astype(bool)
        return cv2.resize(image, new, interpolation=cv2.INTER_AREA)

    small = [tuple(resized(a) for a in pair) for pair in pairs]
    return {
        f"{model} (untrained, {network_size} px)": seconds_per_pair(
            DeepMethod.from_network(build_network(model).eval(), model, network_size), small)
        for model in MODEL_TYPES
    }


def format_table(seconds: dict[str, float]) -> str:
    """The table of seconds per pair and the ratios elastix-bspline / method and sift / method."""
    width = max(18, *(len(name) for name in seconds))
    lines = [f"{'method':{width}} {'s/pair':>8} {'elastix-bspline / method':>25} {'sift / method':>14}"]
    for name, value in seconds.items():
        lines.append(f"{name:{width}} {value:8.3f} {seconds['elastix-bspline'] / value:24.1f}x "
                     f"{seconds['sift'] / value:13.2f}x")
    return "\n".join(lines)


def _load(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main(argv: Sequence[str] | None = None) -> None:
    """Time :data:`METHODS` and ``--methods`` and print the table (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("speed-data"),
                        help="FIRE folder (generated at --generate-size px if missing; default: speed-data)")
    parser.add_argument("--pairs", type=int, default=4, help="pairs to time")
    parser.add_argument("--size", type=int, default=512, help="benchmark size (longest side, px)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--methods", nargs="*", default=[],
                        help="more method specs (comma- or space-separated), e.g. hybrid+tto10:RUN")
    parser.add_argument("--generate-size", type=int, default=FIRE_SIZE, help="image size of generated data, px")
    parser.add_argument("--deep", action="store_true",
                        help="also time untrained networks of every model type and training steps per second")
    parser.add_argument("--network-size", type=int, default=256, help="network size of --deep, px")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    extra = [spec.strip() for text in args.methods for spec in text.split(",") if spec.strip()]
    extra = [spec for spec in dict.fromkeys(extra) if spec not in METHODS]  # each method once
    try:
        for spec in extra:
            make_any_method(spec)  # a bad spec or missing checkpoint fails before any work
        pairs = load_pairs(args.data, args.pairs, args.generate_size)
    except (ValueError, FileNotFoundError) as err:  # CheckpointError is a ValueError
        parser.error(str(err))
    shape = pairs[0][0].shape
    print(f"{len(pairs)} pairs of {args.data} ({shape[1]} x {shape[0]} px), benchmark size {args.size} px, "
          f"{torch.get_num_threads()} torch threads; decode excluded, resize to the benchmark size included")
    load_before = os.getloadavg()
    seconds = time_specs([*METHODS, *extra], pairs, args.size)
    if args.deep:
        seconds.update(time_untrained(pairs, args.size, args.network_size))
    load_after = os.getloadavg()
    print("\n" + format_table(seconds))
    print(f"\nload average (1, 5, 15 min): before {_load(load_before)}; after {_load(load_after)} "
          f"({os.cpu_count()} CPUs; other jobs on them slow every method)")
    if args.deep:
        print(f"\ntraining steps per second at network size {args.network_size} px, batch 1:")
        for model in MODEL_TYPES:
            print(f"{model:12} {training_steps_per_second(model, args.network_size):6.2f} steps/s")


if __name__ == "__main__":
    main()
