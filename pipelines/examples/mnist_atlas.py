"""Atlas registration of handwritten digits: one VoxelMorph learns to warp a class onto one image.

The classic VoxelMorph toy problem. Keep one digit class; the *atlas* (fixed image) is the
image of that class nearest to the class mean (:func:`firereg.transforms.mnist_data.atlas_index`);
an unsupervised :class:`firereg.pipelines.nn.networks.VoxelMorphNet` is trained with
:class:`firereg.pipelines.nn.losses.RegistrationLoss` (local NCC or MSE + diffusion smoothness) to
warp every other image of the class onto it. Images come from real MNIST IDX files when
given, else from scikit-learn's bundled 8 x 8 digits upsampled to 32 x 32 (the embedded
default, *not* MNIST — every output says which).

Layout: the network sees images in the networks' ``XY`` layout (:mod:`firereg.transforms.coords`),
so a DDF channel 0 is the x displacement, exactly as for fundus images, and a saved
``model.pt`` is a firereg checkpoint that ``firereg register digit.png atlas.png --model
model.pt`` can use. Figures and metrics are computed on row-major images.

Metrics (held-out images of the class, never seen in training, atlas excluded):

- mean global NCC (Pearson correlation over all pixels) of each image and of its warped
  version with the atlas;
- Dice of the digits thresholded at 0.5 (intensity in [0, 1]) with the thresholded atlas;
- folding: share of pixels whose Jacobian determinant is <= 0
  (:func:`firereg.evaluation.deformation.deformation_quality`), averaged over images.
"""

from __future__ import annotations

import json
import math
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from firereg.evaluation.deformation import deformation_quality
from firereg.evaluation.overlap import dice
from firereg.evaluation.report.figures import save_figure, save_png
from firereg.pipelines.checkpoints import checkpoint_state, save_checkpoint
from firereg.pipelines.nn.losses import LossConfig, RegistrationLoss
from firereg.pipelines.nn.networks import VoxelMorphNet
from firereg.transforms.coords import xy_to_yx, yx_to_xy
from firereg.transforms.io import atomic_write_text
from firereg.transforms.mnist_data import (
    DigitData,
    atlas_index,
    load_digit_data,
    select_digit,
)

__all__ = [
    "ATLAS_SIMILARITIES",
    "AtlasConfig",
    "AtlasRun",
    "global_ncc",
    "train_atlas",
    "register_to_atlas",
    "atlas_metrics",
    "plot_atlas_grid",
    "run_mnist",
]

#: similarity names of the CLI → :class:`LossConfig` similarity
ATLAS_SIMILARITIES = {"ncc": "lncc", "mse": "mse"}
#: default smoothness weight per similarity (diffusion of the DDF in pixels)
DEFAULT_LAMBDA = {"ncc": 1.0, "mse": 0.05}


@dataclass
class AtlasConfig:
    """Settings of an atlas run.

    Attributes:
        digit: the class kept (0..9).
        steps: optimisation steps.
        batch_size: images per step.
        similarity: ``ncc`` (local NCC, window ``kernel_size``) or ``mse``.
        lam: smoothness weight; None = 1.0 for ncc, 0.05 for mse.
        kernel_size: local NCC window, pixels.
        lr: Adam learning rate.
        holdout: share of the class kept out of training for the metrics.
        max_eval: at most this many held-out images are scored.
        max_train: at most this many training images (MNIST has ~6,000 per class).
        threshold: intensity threshold of the digit masks for Dice.
        features: ``BasicUNet`` features of the VoxelMorph network.
        seed: random seed (split, batches, initialisation).
        threads: torch CPU threads (0 = leave torch's default).
    """

    digit: int = 3
    steps: int = 600
    batch_size: int = 16
    similarity: str = "ncc"
    lam: float | None = None
    kernel_size: int = 7
    lr: float = 1e-3
    holdout: float = 0.2
    max_eval: int = 256
    max_train: int = 4096
    threshold: float = 0.5
    features: tuple[int, ...] = (16, 32, 32, 32, 32, 16)
    seed: int = 0
    threads: int = 0

    def validate(self) -> None:
        if self.similarity not in ATLAS_SIMILARITIES:
            raise ValueError(f"unknown similarity {self.similarity!r}; choose one of {list(ATLAS_SIMILARITIES)}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"need steps >= 0 and batch_size >= 1, got {self.steps} and {self.batch_size}")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")
        if self.lam is not None and self.lam < 0:
            raise ValueError(f"lambda must be >= 0, got {self.lam}")

    @property
    def loss_config(self) -> LossConfig:
        lam = DEFAULT_LAMBDA[self.similarity] if self.lam is None else self.lam
        return LossConfig(similarity=ATLAS_SIMILARITIES[self.similarity], lam=lam, kernel_size=self.kernel_size)


@dataclass
class AtlasRun:
    """A trained atlas model and the data it was trained and scored on.

    Attributes:
        net: the trained network (eval mode).
        atlas: row-major (H, W) atlas image.
        train_images / eval_images: row-major (N, H, W) images of the class.
        source: where the images come from.
        losses: the training loss per step.
        seconds: training time.
    """

    net: VoxelMorphNet
    atlas: np.ndarray
    train_images: np.ndarray
    eval_images: np.ndarray
    source: str
    config: AtlasConfig
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _to_net(images: np.ndarray) -> torch.Tensor:
    """Row-major (N, H, W) → (N, 1, W, H) float tensor (``XY`` layout; the N images as channels of one)."""
    return torch.as_tensor(yx_to_xy(np.moveaxis(images, 0, -1)), dtype=torch.float32).unsqueeze(1)


def _from_net(t: torch.Tensor) -> np.ndarray:
    """(N, 1, W, H) tensor → row-major (N, H, W) array."""
    return np.moveaxis(xy_to_yx(t[:, 0]), -1, 0)


def global_ncc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation over all pixels of each pair of images (N, ...) → (N,); 0 for a flat image."""
    x = a.reshape(len(a), -1).astype(np.float64)
    y = b.reshape(len(b), -1).astype(np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x**2).sum(axis=1) * (y**2).sum(axis=1))
    return np.where(den > 0, (x * y).sum(axis=1) / np.where(den > 0, den, 1.0), 0.0)


def _split(data: DigitData, config: AtlasConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = data.images
    a = atlas_index(images)
    rest = np.delete(np.arange(len(images)), a)
    order = np.random.default_rng(config.seed).permutation(rest)
    n_eval = max(1, int(round(config.holdout * len(order))))
    eval_idx, train_idx = order[:n_eval][: config.max_eval], order[n_eval:][: config.max_train]
    if len(train_idx) == 0:
        raise ValueError(f"digit {config.digit}: too few images ({len(images)}) to train and evaluate")
    return images[a], images[train_idx], images[eval_idx]


def train_atlas(data: DigitData, config: AtlasConfig | None = None, progress: bool = False) -> AtlasRun:
    """Train a VoxelMorph network to warp the images of ``config.digit`` onto its atlas.

    Args:
        data: digit images of all classes (the class is selected here).
        config: settings.
        progress: print the loss every 100 steps.

    Returns:
        :class:`AtlasRun` with the network in eval mode.
    """
    config = config or AtlasConfig()
    config.validate()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    cls = select_digit(data, config.digit)
    atlas, train_images, eval_images = _split(cls, config)
    torch.manual_seed(config.seed)
    net = VoxelMorphNet(spatial_dims=2, in_channels=1, features=config.features)
    loss_fn = RegistrationLoss(config.loss_config)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    moving_all = _to_net(train_images)
    fixed = _to_net(atlas[None])
    gen = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    start = time.perf_counter()
    net.train()
    for step in range(config.steps):
        idx = torch.randint(len(moving_all), (config.batch_size,), generator=gen)
        moving = moving_all[idx]
        target = fixed.expand(len(idx), -1, -1, -1)
        warped, ddf = net(moving, target)
        loss, _ = loss_fn(warped, target, ddf)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress and (step + 1) % 100 == 0:
            print(f"step {step + 1}/{config.steps}: loss {np.mean(losses[-100:]):.4f}", flush=True)
    net.eval()
    return AtlasRun(net, atlas, train_images, eval_images, cls.source, config, losses, time.perf_counter() - start)


def register_to_atlas(net: VoxelMorphNet, images: np.ndarray, atlas: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Warp row-major images (N, H, W) onto the atlas (H, W).

    Returns:
        ``(warped, ddf)``: warped (N, H, W) row-major; ddf (N, 2, W, H) in the network's
        layout (channel 0 = x displacement along array axis 0 = x), pixels.
    """
    warped_all, ddf_all = [], []
    fixed = _to_net(atlas[None])
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            moving = _to_net(images[start : start + batch_size])
            warped, ddf = net(moving, fixed.expand(len(moving), -1, -1, -1))
            warped_all.append(_from_net(warped))
            ddf_all.append(ddf.numpy())
    return np.concatenate(warped_all), np.concatenate(ddf_all)


def atlas_metrics(images: np.ndarray, warped: np.ndarray, ddf: np.ndarray, atlas: np.ndarray, threshold: float = 0.5) -> dict:
    """Before/after similarity to the atlas and folding of the fields (see the module doc)."""
    atlas_stack = np.broadcast_to(atlas, images.shape)
    ncc_before, ncc_after = global_ncc(images, atlas_stack), global_ncc(warped, atlas_stack)
    mask_atlas = atlas > threshold
    dice_before = np.array([dice(im > threshold, mask_atlas) for im in images])
    dice_after = np.array([dice(im > threshold, mask_atlas) for im in warped])
    quality = [deformation_quality(d) for d in ddf]
    folding = np.array([q.folding_fraction for q in quality])
    return {
        "n_images": int(len(images)),
        "ncc_before": float(ncc_before.mean()),
        "ncc_after": float(ncc_after.mean()),
        "dice_before": float(np.nanmean(dice_before)),
        "dice_after": float(np.nanmean(dice_after)),
        "folding_fraction": float(folding.mean()),
        "folding_fraction_max": float(folding.max()),
        "images_with_folding": int((folding > 0).sum()),
        "jacobian_min": float(min(q.jac_min for q in quality)),
        "jacobian_std_mean": float(np.mean([q.jac_std for q in quality])),
        "mean_displacement_px": float(np.linalg.norm(ddf, axis=1).mean()),
    }


def _deformed_grid(ax, ddf_xy: np.ndarray, spacing: int = 2) -> None:
    """Draw the fixed grid mapped into the moving image: p → p + u(p); ddf (2, W, H), channel 0 = x."""
    w, h = ddf_xy.shape[1:]
    xs, ys = np.meshgrid(np.arange(w), np.arange(h), indexing="ij")  # (W, H)
    px, py = xs + ddf_xy[0], ys + ddf_xy[1]
    for i in range(0, w, spacing):
        ax.plot(px[i, :], py[i, :], color="tab:blue", lw=0.6)
    for j in range(0, h, spacing):
        ax.plot(px[:, j], py[:, j], color="tab:blue", lw=0.6)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")


def plot_atlas_grid(
    path: str | Path, images: np.ndarray, warped: np.ndarray, ddf: np.ndarray, atlas: np.ndarray, title: str
) -> Path:
    """PNG: one row per sample — moving, warped, atlas (fixed), deformation grid; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(n, 4, figsize=(7.2, 1.9 * n + 0.8), squeeze=False)
    atlas_stack = np.broadcast_to(atlas, images.shape)
    ncc_b, ncc_a = global_ncc(images, atlas_stack), global_ncc(warped, atlas_stack)
    for r in range(n):
        panels = [(images[r], f"moving (NCC {ncc_b[r]:.2f})"), (warped[r], f"warped (NCC {ncc_a[r]:.2f})"), (atlas, "fixed = atlas")]
        for c, (img, label) in enumerate(panels):
            axes[r][c].imshow(img, cmap="gray", vmin=0, vmax=1)
            axes[r][c].set_title(label, fontsize=7)
        _deformed_grid(axes[r][3], ddf[r])
        axes[r][3].set_title("grid p + u(p)", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _checkpoint(run: AtlasRun) -> dict:
    """A firereg checkpoint (:func:`firereg.pipelines.checkpoints.checkpoint_state`) of the atlas network."""
    h, w = run.atlas.shape
    return checkpoint_state(
        run.net, "voxelmorph", {"spatial_dims": 2, "features": list(run.config.features)}, max(h, w), "luminance",
        epoch=0, domain="digits", atlas=run.atlas, source=run.source, loss=asdict(run.config.loss_config),
    )


def run_mnist(out: str | Path, config: AtlasConfig | None = None, mnist_dir: str | Path | None = None,
              n_figure: int = 6, progress: bool = False) -> dict:
    """Train, score and write an atlas run into ``out``.

    Writes ``atlas_grid.png`` (moving / warped / atlas / deformation grid for ``n_figure``
    held-out samples), ``atlas.png``, ``summary.json`` and ``model.pt`` (a firereg
    checkpoint). Returns the summary dict.
    """
    config = config or AtlasConfig()
    config.validate()
    out = Path(out)
    data = load_digit_data(mnist_dir)
    run = train_atlas(data, config, progress=progress)
    warped, ddf = register_to_atlas(run.net, run.eval_images, run.atlas)
    metrics = atlas_metrics(run.eval_images, warped, ddf, run.atlas, config.threshold)
    loss_cfg = config.loss_config
    summary = {
        "data_source": run.source,
        "digit": config.digit,
        "image_size": list(run.atlas.shape),
        "n_train": int(len(run.train_images)),
        "n_eval": metrics["n_images"],
        "atlas": "class image nearest to the class mean (L2)",
        "similarity": config.similarity,
        "lambda": loss_cfg.lam,
        "steps": config.steps,
        "batch_size": config.batch_size,
        "train_seconds": round(run.seconds, 1),
        "final_loss": float(np.mean(run.losses[-50:])) if run.losses else None,
        "metrics": metrics,
        "notes": [
            "metrics on held-out images of the class (not used in training), atlas excluded",
            "NCC: global Pearson correlation with the atlas; Dice: digits thresholded at "
            f"{config.threshold} vs the thresholded atlas; folding: share of pixels with det(J) <= 0",
        ],
    }
    out.mkdir(parents=True, exist_ok=True)
    k = min(n_figure, len(run.eval_images))
    title = (textwrap.fill(f"digit {config.digit} atlas registration — data: {run.source}", 100) + "\n"
             f"held-out mean NCC {metrics['ncc_before']:.3f} → {metrics['ncc_after']:.3f}, "
             f"Dice {metrics['dice_before']:.3f} → {metrics['dice_after']:.3f}, "
             f"folding {100 * metrics['folding_fraction']:.3f} %")
    plot_atlas_grid(out / "atlas_grid.png", run.eval_images[:k], warped[:k], ddf[:k], run.atlas, title)
    save_png((np.clip(run.atlas, 0, 1) * 255).astype(np.uint8), out / "atlas.png")
    save_checkpoint(_checkpoint(run), out / "model.pt")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=_json_default) + "\n")
    return summary


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value)}")
