"""Benchmark figures a person can open: success-rate plots, checkerboards and overlays.

Images are row-major (``YX``, :mod:`firereg.transforms.coords`); every file is
written atomically (:func:`firereg.transforms.io.atomic_output`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from firereg.evaluation.fire_protocol import CATEGORIES, success_curves  # noqa: E402
from firereg.transforms.channels import select_channel  # noqa: E402
from firereg.transforms.io import atomic_output  # noqa: E402

__all__ = [
    "plot_success_rate",
    "checkerboard",
    "colour_overlay",
    "display_grey",
    "save_png",
    "save_figure",
]


def plot_success_rate(pairs: pd.DataFrame, path: str | Path) -> Path:
    """Success rate vs threshold (px), one panel per category plus "all", one curve per method."""
    curves = success_curves(pairs)
    panels = [c for c in (*CATEGORIES, "all") if c in set(curves["category"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), sharey=True, squeeze=False)
    for ax, category in zip(axes[0], panels):
        sub = curves[curves["category"] == category]
        for method, curve in sub.groupby("method", sort=False):
            ax.plot(curve["threshold"], curve["success_rate"], marker=".", label=str(method))
        ax.set_title(f"category {category}" if category != "all" else "all pairs")
        ax.set_xlabel("threshold (px)")
        ax.set_xlim(1, 25)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("success rate")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG (atomically) and close it."""
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return path


def display_grey(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1] for display: the green channel (best vessel contrast), scaled to its 99.5th percentile.

    Args:
        image: row-major (H, W) or (H, W, C) image, C in 1, 3, 4 (see
            :func:`firereg.transforms.channels.select_channel`).
    """
    img = select_channel(image, "green")
    hi = float(np.percentile(img, 99.5)) or 1.0
    return np.clip(img / hi, 0, 1)


def checkerboard(fixed: np.ndarray, warped: np.ndarray, tiles: int = 8) -> np.ndarray:
    """(H, W) uint8 checkerboard alternating the fixed and warped moving images (green channel)."""
    a, b = display_grey(fixed), display_grey(warped)
    if a.shape != b.shape:
        raise ValueError(f"checkerboard needs equal shapes, got {a.shape} and {b.shape}")
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w]
    board = ((yy * tiles // h) + (xx * tiles // w)) % 2 == 0
    return (np.where(board, a, b) * 255).astype(np.uint8)


def colour_overlay(fixed: np.ndarray, warped: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: fixed in magenta, warped moving in green; aligned vessels look grey."""
    a, b = display_grey(fixed), display_grey(warped)
    if a.shape != b.shape:
        raise ValueError(f"overlay needs equal shapes, got {a.shape} and {b.shape}")
    return (np.stack([a, b, a], axis=-1) * 255).astype(np.uint8)


def save_png(image: np.ndarray, path: str | Path, max_size: int = 1024) -> Path:
    """Save a row-major uint8 image as PNG (atomically), downsized so its longest side is at most ``max_size`` px."""
    path = Path(path)
    pil = Image.fromarray(image)
    if max(pil.size) > max_size:
        pil.thumbnail((max_size, max_size))
    with atomic_output(path) as tmp:
        pil.save(tmp)
    return path
