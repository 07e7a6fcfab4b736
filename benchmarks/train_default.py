"""Train the shipped VoxelMorph of the ``default`` method (the hybrid's deformable stage), one seeded command.

    python benchmarks/train_default.py --out DIR [--threads 1]

then copy ``DIR/run/best.pt`` to ``pipelines/weights/default_voxelmorph.pt`` (see
``pipelines/weights/TRAINING_LOG.md``). The training pairs are generated on the fly from
procedural retinas only (never ``skimage.data.retina()``), category S only: the hybrid's
deformable stage (:class:`firereg.pipelines.inference.hybrid.HybridMethod`) sees pairs that
``sift-quadratic`` has already aligned globally, so it only needs to follow small residual
motions. Validation (which picks ``best.pt``) runs on ``DIR/val``, a folder of procedural S
pairs written here by :func:`firereg.transforms.fire_generator.make_fire_dataset`. The run
stops after :data:`CONFIG`'s ``budget_steps`` optimiser steps, so the same command and
thread count give the same weights on any machine. Sizes: the network sees 256 x 256 images
(:mod:`firereg.transforms.coords`); validation resizes the 1024 px pairs to 512 px first.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from firereg.pipelines.training import train
from firereg.pipelines.training.config import TrainConfig
from firereg.transforms.fire_generator import GeneratorConfig, make_fire_dataset

#: the one training configuration of the shipped weights
CONFIG = TrainConfig(
    model="voxelmorph",
    size=256,
    channel="green",
    lr=1e-4,
    lam=0.05,
    similarity="lncc",
    smoothness="diffusion",
    kernel_size=9,
    augment=True,
    seed=0,
    val_fraction=0.5,
    epochs=100,
    checkpoint_every=100,
    budget_steps=600,
    train_pairs="generated",
    generated_retinas="procedural",
    generated_shares={"S": 1.0},
    pairs_per_epoch=200,
    self_pairs=0.0,
)
#: the validation folder: procedural S pairs (half of them validate; the other half is unused)
VALIDATION = GeneratorConfig(size=1024, pairs={"S": 12}, seed=1, retina="procedural")


def main() -> None:
    """Write ``OUT/val``, train into ``OUT/run`` and print the result as JSON (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (val/ and run/ are written in it)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the weights depend on it)")
    args = parser.parse_args()
    start = time.perf_counter()
    val = make_fire_dataset(args.out / "val", VALIDATION)
    result = train(CONFIG, val, args.out / "run", progress=False, num_threads=args.threads)
    result = {key: str(value) if isinstance(value, Path) else value for key, value in result.items()}
    result["total_seconds"] = time.perf_counter() - start
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
