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

__all__ = ["SourceRetina", "load_source", "anatomical_change"]


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
        ValueError: naming ``source`` if it is not a readable photograph or smaller than 256 px.
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
    rgb = rgb8.astype(np.float32) / 255.0
    fov = estimate_fov_mask(rgb8, erode_px=4)
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


def anatomical_change(
    rng: np.random.Generator, source: SourceRetina, region: np.ndarray
) -> tuple[np.ndarray, dict]:
    """A copy of the source retina with lesions and changed vessel contrast (category A).

    Args:
        rng: the pair's random generator (draws are part of the dataset's definition).
        source: the source retina.
        region: (N, 2) ``(x, y)`` source pixels around which the lesions are placed.

    Returns:
        The changed (H, W, 3) float32 RGB in [0, 1] (row-major, like ``source.rgb``) and a
        record of the changes (lesions, vessel contrast change) for ``generator.json``.
    """
    rgb = source.rgb.copy()
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    lesions = []
    for _ in range(int(rng.integers(4, 10))):
        cx, cy = region[int(rng.integers(len(region)))] + rng.normal(0, 40, 2)
        sigma = rng.uniform(4, 14)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)).astype(np.float32)[..., None]
        if rng.random() < 0.5:  # hard exudate: bright yellow
            rgb = rgb + blob * np.array([0.35, 0.30, 0.05], dtype=np.float32)
            kind = "exudate"
        else:  # haemorrhage: dark red
            rgb = rgb * (1 - blob * np.array([0.35, 0.65, 0.65], dtype=np.float32))
            kind = "haemorrhage"
        lesions.append({"kind": kind, "x": float(cx), "y": float(cy), "sigma": float(sigma)})
    vessel_change = float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.35))
    rgb = rgb * (1 - vessel_change * source.vessels[..., None])
    return np.clip(rgb, 0, 1), {"lesions": lesions, "vessel_contrast_change": vessel_change}
