"""Epoch time of the FIRE pair pipeline with and without MONAI caching, measured in one run.

    python benchmarks/cache_speed.py [--data DIR] [--size 512] [--epochs 3]

Prints seconds per epoch (mean over epochs after the first) for Dataset, CacheDataset and
PersistentDataset, with and without augmentation, and the speed-up ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from firereg.pipelines.default_data import resolve_data
from firereg.transforms.datasets import fire_dataset
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.pair_transforms import PairTransformConfig


def epoch_seconds(dataset, epochs: int) -> list[float]:
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="FIRE folder (default: the generated default)")
    parser.add_argument("--size", type=int, default=512, help="working size, px")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    manifest = read_fire(resolve_data(args.data))
    print(f"{len(manifest)} pairs from {manifest.attrs['root']}, working size {args.size} px, {args.epochs} epochs")
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
            print(f"{str(augment):>8} {cache:>7} {build:8.2f} {epoch:8.3f} {ratio}")


if __name__ == "__main__":
    main()
