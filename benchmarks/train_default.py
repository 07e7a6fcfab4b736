"""Train the shipped VoxelMorph of the ``default`` method (the hybrid's deformable stage), one seeded command.

    python benchmarks/train_default.py --out DIR [--threads 1]

then copy ``DIR/run/best.pt`` to ``pipelines/weights/default_voxelmorph.pt`` and write the
bundle's copy (``python -c "from firereg.pipelines.bundles import write_hybrid_bundle_weights;
write_hybrid_bundle_weights()"``); see ``pipelines/weights/TRAINING_LOG.md``.

The hybrid (:class:`firereg.pipelines.inference.hybrid.HybridMethod`) runs this network on a pair
that ``sift-quadratic`` has already aligned with a quadratic map, so it is trained on such pairs:
generated on the fly from procedural retinas only (never ``skimage.data.retina()``), all FIRE
categories, each moving image pre-aligned by a quadratic fitted to noisy matches of the true
motion (:func:`firereg.transforms.residual_pairs.prealign_pair`); the network follows what the
quadratic leaves (the eye's non-polynomial residual and the fit's error). Loss: local NCC +
diffusion + the distance of 64 control points per pair (:func:`firereg.pipelines.nn.losses.ddf_point_error`).
Validation (which picks ``best.pt``) runs the network alone on ``DIR/val``, pre-aligned procedural
pairs written here by :func:`firereg.transforms.fire_generator.make_fire_dataset`. The run stops
after :data:`CONFIG`'s ``budget_steps`` optimiser steps, so the same command and thread count give
the same weights on any machine. Sizes: the network sees 512 x 512 images, the benchmark size
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
    size=512,
    features=(8, 16, 32, 32, 32, 8),
    channel="green",
    lr=5e-4,
    lam=0.1,
    similarity="lncc",
    smoothness="diffusion",
    kernel_size=9,
    point_weight=1.0,
    augment=False,
    seed=0,
    val_fraction=0.75,
    epochs=100,
    checkpoint_every=100,
    budget_steps=2000,
    train_pairs="generated",
    generated_retinas="procedural",
    generated_shares={"S": 1.0, "P": 1.0, "A": 1.0},
    generated_points=64,
    generated_prealign_px=1.0,
    pairs_per_epoch=200,
    self_pairs=0.0,
)
#: the validation folder: pre-aligned procedural pairs (9 of the 12 validate; the other 3 are unused)
VALIDATION = GeneratorConfig(size=1024, pairs={"S": 4, "P": 4, "A": 4}, seed=1, retina="procedural", prealign_px=1.0)


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
