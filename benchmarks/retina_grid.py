"""Save a grid of procedural retinas next to ``skimage.data.retina()`` (docs/procedural_retinas.png).

    python benchmarks/retina_grid.py [--out docs/procedural_retinas.png] [--first-seed 0] [--tile 533]

The first tile is the real photograph; the next eight are
:func:`firereg.transforms.synthetic_retina.render_synthetic_retina`
at 1024 px, downsized to the tile, with their seeds written in the corner. The print-out
gives the rendering time per retina.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from firereg.transforms.io import atomic_output
from firereg.transforms.synthetic_retina import render_synthetic_retina


def retina_grid(seeds: list[int], tile: int = 400, size: int = 1024, columns: int = 3) -> tuple[np.ndarray, float]:
    """(H, W, 3) uint8 grid: the skimage photograph, then one tile per seed; and seconds per render."""
    from skimage.data import retina

    tiles = [cv2.resize(retina(), (tile, tile), interpolation=cv2.INTER_AREA)]
    cv2.putText(tiles[0], "skimage.data.retina()", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1)
    start = time.perf_counter()
    for seed in seeds:
        img, _ = render_synthetic_retina(seed, size)
        small = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
        cv2.putText(small, f"seed {seed}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1)
        tiles.append(small)
    per_render = (time.perf_counter() - start) / max(1, len(seeds))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0), per_render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/procedural_retinas.png"))
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--tile", type=int, default=533, help="tile width, px (3 tiles a row)")
    args = parser.parse_args()
    grid, per_render = retina_grid(list(range(args.first_seed, args.first_seed + 8)), tile=args.tile)
    # a dithered 256-colour palette (a loss like a JPEG's) keeps the PNG commit-sized
    image = Image.fromarray(grid)
    palette = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    with atomic_output(args.out) as tmp:
        image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(tmp, optimize=True)
    print(f"{args.out}: {grid.shape[1]}x{grid.shape[0]} px, {args.out.stat().st_size / 1e6:.2f} MB; "
          f"{per_render:.2f} s per 1024-px retina")


if __name__ == "__main__":
    main()
