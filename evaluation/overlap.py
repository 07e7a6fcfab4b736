"""Overlap of segmentations: the Dice coefficient per label.

``Dice(A, B) = 2 |A ∩ B| / (|A| + |B|)`` for two sets of pixels/voxels. Two kinds of input:

- **label maps** (integer arrays, 0 = background): one Dice per label value, by default
  every nonzero value found in either map (:func:`dice_per_label`);
- **binary masks** (bool, or any array where nonzero = inside): one Dice (:func:`dice`).

When both sets are empty the Dice is undefined and reported as NaN (not 1): an absent
structure says nothing about the registration. :func:`mean_dice` ignores NaNs. The Dice
itself is MONAI's (:func:`monai.metrics.compute_dice` on one-hot masks, in float64).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice

__all__ = ["dice", "dice_per_label", "mean_dice"]


def _as_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric or boolean array, got dtype object")
    return arr


def _check_shapes(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"the two segmentations must have one shape, got {a.shape} and {b.shape}")


def _dice_of_masks(masks_a: np.ndarray, masks_b: np.ndarray) -> np.ndarray:
    """Dice of each pair of boolean masks stacked on axis 0 (L, *spatial) → (L,); NaN where both are empty.

    MONAI scores a pair whose ground truth is empty as 1 (both empty) or NaN, never as
    "undefined only when both are empty", so that case is set here.
    """
    n = len(masks_a)
    if n == 1:  # MONAI reads one channel as class indices (and scores it in float32): give it two
        masks_a, masks_b = np.concatenate([masks_a, masks_a]), np.concatenate([masks_b, masks_b])
    a = torch.as_tensor(masks_a[None])  # (1, L, *spatial) bool: the "prediction"
    b = torch.as_tensor(masks_b[None], dtype=torch.float64)  # float64: exact counts and ratio
    scores = compute_dice(a, b, include_background=True, ignore_empty=False)[0, :n].double().numpy()
    empty = ~(masks_a[:n].reshape(n, -1).any(1) | masks_b[:n].reshape(n, -1).any(1))
    return np.where(empty, np.nan, scores)


def dice(mask_a: Any, mask_b: Any) -> float:
    """Dice of two binary masks (nonzero = inside); NaN when both are empty.

    Raises:
        ValueError: quoting both shapes when they differ.
    """
    a = _as_numpy(mask_a, "mask_a").astype(bool)
    b = _as_numpy(mask_b, "mask_b").astype(bool)
    _check_shapes(a, b)
    return float(_dice_of_masks(a[None], b[None])[0])


def dice_per_label(labels_a: Any, labels_b: Any, labels: Iterable[int] | None = None) -> dict[int, float]:
    """Dice per label of two integer label maps.

    Args:
        labels_a, labels_b: integer arrays of one shape (torch tensors are accepted); 0 is background.
        labels: the label values to score; default every nonzero value in either map.

    Returns:
        ``{label: dice}`` in ascending label order; NaN for a label absent from both maps.

    Raises:
        ValueError: for different shapes (quoting both) or non-integer label maps.
    """
    a = _as_numpy(labels_a, "labels_a")
    b = _as_numpy(labels_b, "labels_b")
    _check_shapes(a, b)
    for name, arr in (("labels_a", a), ("labels_b", b)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            if not np.array_equal(arr, np.round(arr)):
                raise ValueError(f"{name} must hold integer labels, got non-integer values of dtype {arr.dtype}")
    a, b = a.astype(np.int64), b.astype(np.int64)
    if labels is None:
        values = sorted(int(v) for v in np.union1d(np.unique(a), np.unique(b)) if v != 0)
    else:
        values = sorted(int(v) for v in labels)
    if not values:
        return {}
    scores = _dice_of_masks(np.stack([a == v for v in values]), np.stack([b == v for v in values]))
    return {v: float(score) for v, score in zip(values, scores)}


def mean_dice(scores: dict[int, float] | Iterable[float]) -> float:
    """Mean of Dice values, ignoring NaN (absent labels); NaN if none is defined."""
    values = np.asarray(list(scores.values()) if isinstance(scores, dict) else list(scores), dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")
