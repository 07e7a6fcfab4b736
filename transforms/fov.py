"""Field-of-view (FOV) masks of fundus photographs.

A fundus photograph shows the retina inside a roughly circular field of view with a
black border outside it. Intensity methods (elastix, NCC losses) align that border and
stop at identity unless a mask excludes it, so every method receives FOV masks.
Masks are boolean arrays in the layout of the image they come from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from firereg.transforms.io import reduction_factor

__all__ = ["estimate_fov_mask", "field_of_view", "read_mask"]


def estimate_fov_mask(image: np.ndarray, threshold: float | None = None, erode_px: int = 2) -> np.ndarray:
    """Estimate the field of view of a fundus photograph.

    Thresholds the brightest channel (the border is near-black in all channels), keeps
    the largest connected component, fills its holes and erodes it by ``erode_px`` to
    drop the dim rim.

    Args:
        image: (H, W) or (H, W, C) array (any layout whose first two axes are spatial),
            uint8 or float.
        threshold: intensity above which a pixel is inside; default 8 % of the
            image's 99th percentile.
        erode_px: erosion radius in pixels applied after filling.

    Returns:
        Boolean (H, W) mask, True inside the field of view.

    Raises:
        ValueError: if the image is not 2D/3D or has no pixel above the threshold.
    """
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {np.asarray(image).shape}")
    arr = arr.astype(np.float32)
    if threshold is None:
        threshold = 0.08 * float(np.percentile(arr, 99))
    mask = arr > threshold
    if not mask.any():
        raise ValueError(f"no pixel above the field-of-view threshold {threshold:.3g}; is the image empty?")
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    mask = ndimage.binary_fill_holes(mask)
    if erode_px > 0:
        mask = ndimage.binary_erosion(mask, iterations=erode_px)
    return mask


def field_of_view(image: np.ndarray, mask: np.ndarray | None = None, erode_px: int = 0) -> np.ndarray:
    """The field of view every method uses for ``image``: ``mask`` if given, else estimated, then eroded.

    The one rule shared by the networks' inputs, elastix and SIFT: a given mask (FIRE's
    ``Masks/mask.png``) wins; without one, :func:`estimate_fov_mask` finds it.

    Args:
        image: (H, W) or (H, W, C) row-major image.
        mask: (H, W) mask of the image (non-zero inside), or None to estimate it.
        erode_px: erosion radius in pixels applied after (0: none).

    Returns:
        Boolean (H, W) mask, True inside, row-major.

    Raises:
        ValueError: quoting both shapes if ``mask`` is not the image's (H, W), if no pixel is
            bright enough to estimate a field of view, or if nothing is left after erosion.
    """
    shape = np.asarray(image).shape[:2]
    if mask is None:
        fov = estimate_fov_mask(image)
    else:
        fov = np.asarray(mask).astype(bool)
        if fov.shape != shape:
            raise ValueError(f"mask has shape {fov.shape}, its image has shape {shape}")
    if erode_px > 0:
        fov = ndimage.binary_erosion(fov, iterations=int(erode_px))
    if not fov.any():
        raise ValueError(f"the field-of-view mask is empty (after erosion by {erode_px} px)")
    return fov


def read_mask(path: str | Path, shape: tuple[int, int] | None = None, max_side: int | None = None) -> np.ndarray:
    """Read a mask image (FIRE's ``Masks/mask.png``) as a boolean (H, W) array, row-major.

    Args:
        path: mask file (any bit depth or colour mode); any non-zero sample is inside.
        shape: expected full-resolution ``(H, W)``; checked when given.
        max_side: longest side, px, the caller needs: the mask is reduced by the same factor
            :func:`firereg.transforms.io.read_rgb` reduces its image by
            (:func:`firereg.transforms.io.reduction_factor`; a reduced pixel is inside when most of
            its k x k block is). None: full resolution.

    Raises:
        FileNotFoundError: naming ``path`` if it does not exist.
        ValueError: naming ``path`` if it cannot be read, is empty (no pixel inside: every
            method would fail on it) or its shape differs from ``shape``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        with Image.open(path) as im:
            flat = im.mode in ("1", "L", "I", "F") or im.mode.startswith("I;16")
            values = np.asarray(im if flat else im.convert("RGB"))
    except Exception as err:  # PIL raises several types for unreadable files
        raise ValueError(f"cannot read mask {path}: {err}") from None
    mask = values != 0 if values.ndim == 2 else (values != 0).any(axis=2)
    if shape is not None and mask.shape != tuple(shape):
        raise ValueError(f"mask {path} has shape {mask.shape}, expected {tuple(shape)}")
    if not mask.any():
        raise ValueError(f"mask {path} is empty (all black): no pixel lies inside the field of view")
    k = reduction_factor(mask.shape[::-1], max_side)
    if k > 1:
        h, w = mask.shape
        mask = mask.reshape(h // k, k, w // k, k).mean(axis=(1, 3)) >= 0.5
    return mask
