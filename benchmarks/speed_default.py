"""Seconds per pair of ``default`` vs ``sift``, ``sift-quadratic`` and ``elastix-bspline`` on FIRE-sized pairs.

    python benchmarks/speed_default.py --data DIR [--pairs 4] [--size 512] [--threads 1]

``DIR`` is a FIRE folder; if it does not exist it is generated first at FIRE's 2912 x 2912 px
(as ``firereg make-data DIR --size 2912 --pairs S:2,P:1,A:1``). Every method registers the
first ``--pairs`` pairs the way ``firereg benchmark`` and ``firereg register`` run it: the
full-resolution images are resized to the benchmark size ``--size`` (longest side, px;
:class:`firereg.evaluation.results.ResizedMethod`) and the answer is in full-resolution pixels.
The images are decoded before timing (decoding is excluded); the resize to the benchmark size
is included. Each method registers the first pair once untimed (warm-up). Prints the median
seconds per pair, the ratios elastix-bspline / method and sift / method, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from firereg.evaluation.benchmark import load_pair
from firereg.evaluation.results import RegistrationMethod, ResizedMethod
from firereg.pipelines.method_specs import make_any_method
from firereg.transforms.fire_generator import GeneratorConfig, make_fire_dataset
from firereg.transforms.fire_reader import read_fire

#: the methods timed, in print order; the ratios are against the last two
METHODS = ("default", "sift-quadratic", "sift", "elastix-bspline")
#: the generated data when ``--data`` does not exist: FIRE's image size, a few pairs of each category
FIRE_SIZED = GeneratorConfig(size=2912, pairs={"S": 2, "P": 1, "A": 1})

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


def main() -> None:
    """Time :data:`METHODS` and print the table (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="FIRE folder (generated at 2912 px if missing)")
    parser.add_argument("--pairs", type=int, default=4, help="pairs to time")
    parser.add_argument("--size", type=int, default=512, help="benchmark size (longest side, px)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.data.exists():
        make_fire_dataset(args.data, FIRE_SIZED, progress=False)
    manifest = read_fire(args.data).head(args.pairs)
    pairs = [load_pair(row) for row in manifest.to_dict("records")]
    shape = pairs[0][0].shape
    print(f"{len(pairs)} pairs of {args.data} ({shape[1]} x {shape[0]} px), benchmark size {args.size} px, "
          f"{torch.get_num_threads()} torch threads; decode excluded, resize included")
    load_before = os.getloadavg()
    seconds = {name: seconds_per_pair(ResizedMethod(make_any_method(name), args.size), pairs) for name in METHODS}
    load_after = os.getloadavg()
    print(f"\n{'method':18} {'s/pair':>8} {'elastix-bspline / method':>25} {'sift / method':>14}")
    for name, value in seconds.items():
        print(f"{name:18} {value:8.3f} {seconds['elastix-bspline'] / value:24.1f}x "
              f"{seconds['sift'] / value:13.2f}x")
    print(f"\nload average (1, 5, 15 min): before {', '.join(f'{v:.2f}' for v in load_before)}; "
          f"after {', '.join(f'{v:.2f}' for v in load_after)} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
