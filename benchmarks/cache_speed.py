"""Epoch time of the FIRE pair pipeline with and without MONAI caching, measured in one run.

    python benchmarks/cache_speed.py [--data DIR] [--size 512] [--epochs 3]

Prints seconds per epoch (mean over epochs after the first) for Dataset, CacheDataset and
PersistentDataset, with and without augmentation, and the speed-up ratios. ``--size`` is the
network size the training pipeline resizes pairs to (square, px; ``firereg train --size``;
resolutions: :mod:`firereg.transforms.coords`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from firereg.pipelines.default_data import resolve_data
from firereg.transforms.datasets import fire_dataset
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.pair_transforms import PairTransformConfig


def epoch_seconds(dataset: Sequence, epochs: int) -> list[float]:
    """Wall-clock seconds of each of ``epochs`` passes reading every item of ``dataset``."""
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    """Time the three caches with and without augmentation and print the table (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="FIRE folder (default: the generated default)")
    parser.add_argument("--size", type=int, default=512, help="network size, px (square)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    manifest = read_fire(resolve_data(args.data))
    print(f"{len(manifest)} pairs from {manifest.attrs['root']}, network size {args.size} px, {args.epochs} epochs")
    print(f"{'augment':>8} {'cache':>7} {'build s':>8} {'epoch s':>8} {'speed-up':>9}")
    for augment in (False, True):
        config = PairTransformConfig(size=args.size, augment=augment)
        base = None
        for cache in ("none", "memory", "disk"):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                dataset = fire_dataset(manifest, config, cache=cache, cache_dir=tmp, progress=False)
                build = time.perf_counter() - start
                times = epoch_seconds(dataset, args.epochs)
            # the first epoch of a disk cache writes it; later epochs read it
            epoch = sum(times[1:]) / max(1, len(times) - 1) if len(times) > 1 else times[0]
            base = base or epoch
            ratio = f"{base / epoch:8.1f}x" if epoch > 1e-3 else "  >1000x"
            print(f"{augment!s:>8} {cache:>7} {build:8.2f} {epoch:8.3f} {ratio}")


if __name__ == "__main__":
    main()
