"""The source photograph a generated FIRE-format dataset is drawn from, and its anatomical changes.

:func:`load_source` reads the photograph (``skimage.data.retina()`` by default), finds its
field of view and maps its vessels (control points are picked on them);
:func:`anatomical_change` simulates the lesions and vessel changes of FIRE's category A.
Arrays are row-major and points ``(x, y)`` source pixels (see :mod:`firereg.transforms.coords`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.filters import sato

from firereg.transforms.fov import estimate_fov_mask
from firereg.transforms.io import read_rgb
from firereg.transforms.synthetic_retina import add_pathology, draw_anatomy

__all__ = ["SourceRetina", "load_source", "procedural_source", "anatomical_change"]

#: a source darker than this (99th percentile of its brightest channel, 0..255) holds no retina
MIN_BRIGHTNESS = 10


@dataclass
class SourceRetina:
    """A source photograph with its field of view and vessel map."""

    name: str
    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]
    centre: tuple[float, float]  # FOV centre (x, y) px
    radius: float  # FOV radius px
    vessels: np.ndarray  # (H, W) float32 vesselness in [0, 1]
    vessel_points: np.ndarray  # (M, 2) (x, y) px of strong vessel pixels


@lru_cache(maxsize=4)
def load_source(source: str | None = None) -> SourceRetina:
    """Load the source photograph (``skimage.data.retina()`` when None) and map its vessels.

    Args:
        source: path of a photograph (:data:`firereg.transforms.io.PHOTO_EXTENSIONS`), or None.

    Returns:
        The :class:`SourceRetina`, cached per ``source``.

    Raises:
        FileNotFoundError: naming ``source`` if missing.
        ValueError: naming ``source`` if it is not a readable photograph, smaller than 256 px, or
            blank (all black: no field of view).
    """
    if source is None:
        from skimage.data import retina

        rgb8 = retina()
        name = "skimage.data.retina()"
    else:
        rgb8 = read_rgb(source)
        name = str(Path(source))
    if min(rgb8.shape[:2]) < 256:
        raise ValueError(f"source image {name} is too small ({rgb8.shape[1]}x{rgb8.shape[0]}); need >= 256 px")
    if float(np.percentile(rgb8.max(axis=2), 99)) < MIN_BRIGHTNESS:
        raise ValueError(f"source image {name} is blank (all black): no retina to generate from")
    rgb = rgb8.astype(np.float32) / 255.0
    fov = estimate_fov_mask(rgb8, erode_px=4)
    if fov.sum() < 0.05 * fov.size:
        raise ValueError(f"source image {name} has no field of view (under 5 % of it is retina)")
    ys, xs = np.nonzero(fov)
    centre = (float(xs.mean()), float(ys.mean()))
    radius = float(np.sqrt(fov.sum() / np.pi))
    green = rgb[..., 1]
    vessels = sato(green, sigmas=[1.5, 2.5, 4.0], black_ridges=True).astype(np.float32)
    inner = ndimage.binary_erosion(fov, iterations=max(8, int(0.04 * radius)))
    vessels[~inner] = 0.0
    vessels /= max(float(vessels.max()), 1e-6)
    threshold = np.percentile(vessels[inner], 93)
    vy, vx = np.nonzero(vessels > threshold)
    step = max(1, len(vx) // 20000)
    vessel_points = np.stack([vx[::step], vy[::step]], axis=1).astype(np.float64)
    return SourceRetina(name, rgb, centre, radius, vessels, vessel_points)


def procedural_source(seed: int, size: int, unit: float) -> SourceRetina:
    """A synthetic retina (:func:`firereg.transforms.synthetic_retina.draw_anatomy`) as a source.

    Args:
        seed: the retina is a deterministic function of it.
        size: width = height of the canvas, px; the whole canvas is retina (the source's field
            of view is the inscribed disk).
        unit: field-of-view radius of one photograph of this retina, px of the canvas.

    Returns:
        The :class:`SourceRetina`; its vessel points are the junctions and the centre lines of
        vessels at least 2 px wide.
    """
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x50C3])
    anatomy = draw_anatomy(rng, (size, size), unit)
    c = (size - 1) / 2.0
    points = np.concatenate([anatomy.junctions, anatomy.vessel_points])
    inside = np.linalg.norm(points - c, axis=1) < 0.97 * size / 2
    return SourceRetina(f"procedural retina {seed}", anatomy.rgb, (c, c), size / 2.0, anatomy.vessels, points[inside])


def anatomical_change(
    rng: np.random.Generator, source: SourceRetina, region: np.ndarray, unit: float
) -> tuple[np.ndarray, dict]:
    """A copy of the source retina with FIRE category A's changes
    (:func:`firereg.transforms.synthetic_retina.add_pathology`: exudates, haemorrhages, drusen,
    vessel contrast, haze).

    Args:
        rng: the pair's random generator (draws are part of the dataset's definition).
        source: the source retina.
        region: (N, 2) ``(x, y)`` source pixels around which the lesions are placed.
        unit: field-of-view radius of a view, source px (sets the lesion sizes).

    Returns:
        The changed (H, W, 3) float32 RGB in [0, 1] (row-major, like ``source.rgb``) and a
        record of the changes for ``generator.json``.
    """
    return add_pathology(rng, source.rgb, source.vessels, region, unit)
