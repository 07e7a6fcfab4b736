"""Registration losses restricted to the field of view.

Each loss is a plain function plus, for the combination used in training, a thin
``nn.Module`` (:class:`RegistrationLoss`). Similarity terms use MONAI's losses:
``LocalNormalizedCrossCorrelationLoss`` (local NCC, per-pixel map averaged inside the
mask), MSE, and ``GlobalMutualInformationLoss``; smoothness terms (:func:`diffusion`,
:func:`bending_energy`) compute exactly what MONAI's ``DiffusionLoss`` and ``BendingEnergyLoss``
(``reduction="mean"``) compute, with tuple indexing: MONAI 1.6 indexes with lists of slices,
which PyTorch deprecates ("Using a non-tuple sequence for multidimensional indexing").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.losses import (
    GlobalMutualInformationLoss,
    LocalNormalizedCrossCorrelationLoss,
)
from torch import nn

__all__ = [
    "SIMILARITIES",
    "SMOOTHNESS",
    "LossConfig",
    "masked_mean",
    "masked_lncc",
    "masked_mse",
    "masked_mutual_information",
    "diffusion",
    "bending_energy",
    "Smoothness",
    "RegistrationLoss",
    "fit_affine",
    "affine_point_loss",
    "ddf_point_error",
    "match_cross_entropy",
]

SIMILARITIES = ("lncc", "mse", "mi")
SMOOTHNESS = ("diffusion", "bending")


@dataclass
class LossConfig:
    """Loss settings.

    Attributes:
        similarity: ``lncc`` (local NCC, default), ``mse`` or ``mi`` (mutual information,
            for multi-modal pairs).
        smoothness: ``diffusion`` (squared gradient of the DDF) or ``bending`` energy.
        lam: weight of the smoothness term (VoxelMorph's lambda), default 0.01.
        kernel_size: local NCC window, pixels.
    """

    similarity: str = "lncc"
    smoothness: str = "diffusion"
    lam: float = 0.01
    kernel_size: int = 9

    def validate(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {self.similarity!r}; choose one of {list(SIMILARITIES)}")
        if self.smoothness not in SMOOTHNESS:
            raise ValueError(f"unknown smoothness {self.smoothness!r}; choose one of {list(SMOOTHNESS)}")
        if self.lam < 0:
            raise ValueError(f"lambda must be >= 0, got {self.lam}")


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` > 0.5 (all of it when ``mask`` is None)."""
    if mask is None:
        return values.mean()
    weights = (mask > 0.5).to(values.dtype).expand_as(values)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def masked_lncc(warped: torch.Tensor, fixed: torch.Tensor, mask: torch.Tensor | None = None, kernel_size: int = 9) -> torch.Tensor:
    """Negative local NCC (−1 is perfect) averaged inside ``mask``; images (B, C, *spatial).

    MONAI's per-pixel map (``reduction="none"``, a square window of ``kernel_size`` pixels) is
    averaged over the pixels inside the mask; outside content enters only through the windows
    of inside pixels within ``kernel_size // 2`` pixels of it.
    """
    lncc = LocalNormalizedCrossCorrelationLoss(
        spatial_dims=fixed.ndim - 2, kernel_size=kernel_size, kernel_type="rectangular", reduction="none"
    )
    return masked_mean(lncc(warped, fixed), mask)


def masked_mse(warped: torch.Tensor, fixed: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared intensity difference inside ``mask``."""
    return masked_mean((warped - fixed) ** 2, mask)


def masked_mutual_information(warped: torch.Tensor, fixed: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Negative global mutual information (MONAI ``GlobalMutualInformationLoss``, Gaussian Parzen
    windows, images in [0, 1]) of the pixels inside ``mask``, averaged over the batch.

    MONAI's loss takes no mask: each pair's inside pixels are given to it as one (1, 1, N)
    sample, so outside pixels do not enter the histograms at all. 0 for an empty mask.
    """
    loss = GlobalMutualInformationLoss()
    if mask is None:
        return loss(warped, fixed)
    inside = (mask > 0.5).expand_as(fixed)
    values = [loss(w[k].view(1, 1, -1), f[k].view(1, 1, -1)) for w, f, k in zip(warped, fixed, inside) if k.any()]
    return torch.stack(values).mean() if values else warped.sum() * 0.0


def _check_ddf(ddf: torch.Tensor) -> None:
    dims = ddf.ndim - 2
    if dims not in (1, 2, 3) or ddf.shape[1] != dims or min(ddf.shape[2:]) <= 2:
        raise ValueError(f"expected a (B, D, *spatial) DDF with D = 1, 2 or 3 spatial axes, each > 2 pixels, "
                         f"got {tuple(ddf.shape)}")


def _shifted(x: torch.Tensor, shifts: dict[int, int]) -> torch.Tensor:
    """``x`` on its inner grid (every spatial axis ``[1:-1]``), moved by ``shifts[axis]`` in {-1, 0, 1} pixels."""
    index = [slice(None), slice(None)]
    for axis in range(2, x.ndim):
        shift = shifts.get(axis, 0)
        index.append(slice(1 + shift, x.shape[axis] - 1 + shift))
    return x[tuple(index)]


def diffusion(ddf: torch.Tensor) -> torch.Tensor:
    """Mean squared gradient of a DDF (B, D, *spatial), central differences on the inner grid,
    in (pixels / pixel)^2: MONAI ``DiffusionLoss()``.

    Raises:
        ValueError: quoting the shape unless it is (B, D, *spatial), D spatial axes each > 2.
    """
    _check_ddf(ddf)
    total = 0.0
    for axis in range(2, ddf.ndim):
        total = total + ((_shifted(ddf, {axis: 1}) - _shifted(ddf, {axis: -1})) / 2.0) ** 2
    return torch.mean(total)


def bending_energy(ddf: torch.Tensor) -> torch.Tensor:
    """Mean bending energy of a DDF (B, D, *spatial) (pure and mixed second differences on the
    inner grid): MONAI ``BendingEnergyLoss()``.

    Raises:
        ValueError: quoting the shape unless it is (B, D, *spatial), D spatial axes each > 2.
    """
    _check_ddf(ddf)
    energy = 0.0
    axes = range(2, ddf.ndim)
    for a in axes:
        pure = _shifted(ddf, {a: 1}) - 2 * _shifted(ddf, {}) + _shifted(ddf, {a: -1})
        energy = energy + pure**2
        for b in axes:
            if b > a:
                mixed = (_shifted(ddf, {a: 1, b: 1}) - _shifted(ddf, {a: 1, b: -1})
                         - _shifted(ddf, {a: -1, b: 1}) + _shifted(ddf, {a: -1, b: -1})) / 4.0
                energy = energy + 2 * mixed**2
    return torch.mean(energy)


class Smoothness(nn.Module):
    """:func:`diffusion` (``kind="diffusion"``) or :func:`bending_energy` (``"bending"``) of a DDF."""

    def __init__(self, kind: str = "diffusion") -> None:
        super().__init__()
        if kind not in SMOOTHNESS:
            raise ValueError(f"unknown smoothness {kind!r}; choose one of {list(SMOOTHNESS)}")
        self.kind = kind

    def forward(self, ddf: torch.Tensor) -> torch.Tensor:
        return diffusion(ddf) if self.kind == "diffusion" else bending_energy(ddf)


class RegistrationLoss(nn.Module):
    """``similarity(warped, fixed | mask) + lam * smoothness(ddf)``; returns (total, parts)."""

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()
        self.config.validate()
        self.smooth = Smoothness(self.config.smoothness)

    def similarity(self, warped: torch.Tensor, fixed: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.config.similarity == "lncc":
            return masked_lncc(warped, fixed, mask, self.config.kernel_size)
        if self.config.similarity == "mse":
            return masked_mse(warped, fixed, mask)
        return masked_mutual_information(warped, fixed, mask)

    def forward(
        self, warped: torch.Tensor, fixed: torch.Tensor, ddf: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if warped.shape != fixed.shape:
            raise ValueError(f"warped and fixed must have one shape, got {tuple(warped.shape)} and {tuple(fixed.shape)}")
        sim = self.similarity(warped, fixed, mask)
        smooth = self.smooth(ddf)
        total = sim + self.config.lam * smooth
        return total, {"similarity": float(sim.detach()), "smoothness": float(smooth.detach())}


def fit_affine(fixed_points: torch.Tensor, moving_points: torch.Tensor) -> torch.Tensor:
    """Least-squares affines (B, 2, 3) mapping fixed to moving points, each (B, N, 2), N >= 3.

    Points are pixel coordinates in index order ((x, y) in the ``XY`` layout of
    :mod:`firereg.transforms.coords`); NaN rows (padding) are ignored.

    Raises:
        ValueError: for mismatched shapes or fewer than 3 valid points in a pair.
    """
    if fixed_points.shape != moving_points.shape or fixed_points.ndim != 3 or fixed_points.shape[-1] != 2:
        raise ValueError(
            f"need (B, N, 2) fixed and moving points of one shape, got {tuple(fixed_points.shape)} and {tuple(moving_points.shape)}"
        )
    out = []
    for f, m in zip(fixed_points.double(), moving_points.double()):
        valid = ~(torch.isnan(f).any(-1) | torch.isnan(m).any(-1))
        if int(valid.sum()) < 3:
            raise ValueError(f"an affine needs at least 3 control points, got {int(valid.sum())}")
        design = torch.cat([f[valid], torch.ones_like(f[valid, :1])], dim=1)  # (N, 3)
        solution = torch.linalg.lstsq(design, m[valid]).solution  # (3, 2)
        out.append(solution.T)
    return torch.stack(out).to(fixed_points.dtype)


def affine_point_loss(predicted: torch.Tensor, target: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Mean distance (pixels) between two affines' images of ``points`` (B, N, 2); affines (B, 2, 3)."""
    def apply(a: torch.Tensor) -> torch.Tensor:
        return points @ a[:, :, :2].transpose(1, 2) + a[:, :, 2].unsqueeze(1)

    return torch.linalg.norm(apply(predicted) - apply(target), dim=-1).mean()


def ddf_point_error(ddf: torch.Tensor, fixed_points: torch.Tensor, moving_points: torch.Tensor) -> torch.Tensor:
    """Mean distance (pixels) between ``p + u(p)`` and the moving point of every fixed point ``p``.

    Args:
        ddf: (B, 2, W, H) displacement field in the networks' ``XY`` layout, pixels, fixed →
            moving (:mod:`firereg.transforms.coords`); ``u(p)`` is sampled bilinearly.
        fixed_points: (B, N, 2) ``(x, y)`` pixels of the field's grid (NaN rows: padding, ignored).
        moving_points: (B, N, 2) their moving positions.

    Raises:
        ValueError: for mismatched shapes or no valid point.
    """
    if ddf.ndim != 4 or ddf.shape[1] != 2:
        raise ValueError(f"need a (B, 2, W, H) field, got {tuple(ddf.shape)}")
    b, _, w, h = ddf.shape
    p, q = fixed_points.reshape(b, -1, 2).to(ddf.dtype), moving_points.reshape(b, -1, 2).to(ddf.dtype)
    if p.shape != q.shape:
        raise ValueError(f"fixed and moving points differ in shape: {tuple(p.shape)} and {tuple(q.shape)}")
    valid = ~(torch.isnan(p).any(-1) | torch.isnan(q).any(-1))
    if not bool(valid.any()):
        raise ValueError("no valid control point for the landmark term")
    p, q = torch.nan_to_num(p), torch.nan_to_num(q)
    # grid_sample's last grid axis indexes the input's last dim (H: y) first, then W (x)
    grid = torch.stack([2 * p[..., 1] / (h - 1) - 1, 2 * p[..., 0] / (w - 1) - 1], dim=-1).unsqueeze(1)
    u = F.grid_sample(ddf, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, :, 0]
    distance = torch.linalg.norm(p + u.transpose(1, 2) - q, dim=-1)
    return distance[valid].mean()


def match_cross_entropy(
    log_probs: torch.Tensor,
    cells: torch.Tensor,
    target: torch.Tensor,
    fixed_valid: torch.Tensor,
    moving_valid: torch.Tensor,
    sigma: float,
) -> torch.Tensor:
    """Cross-entropy of feature matches against where a target affine puts each cell.

    Args:
        log_probs: (B, N, M) log-probabilities of each fixed cell's match among the moving
            cells (:class:`firereg.pipelines.nn.networks.AffineEstimate`).
        cells: (N, 2) cell centres, pixels; the same grid in both images (N = M).
        target: (B, 2, 3) ground-truth affine, fixed pixel → moving pixel.
        fixed_valid, moving_valid: (B, N), (B, M) 1 inside the field of view.
        sigma: width of the Gaussian target around the true position, pixels.

    Returns:
        The mean cross-entropy over fixed cells in the field of view whose true match lies
        in the moving field of view (0 if there are none).
    """
    true = cells @ target[:, :, :2].transpose(1, 2) + target[:, :, 2].unsqueeze(1)  # (B, N, 2)
    axes = [torch.unique(cells[:, i]) for i in range(2)]
    # a separable Gaussian on the cell grid (rows: axis 0 slowest, as the cells are ordered)
    gx = torch.exp(-0.5 * ((axes[0].view(1, 1, -1) - true[..., :1]) / sigma) ** 2)
    gy = torch.exp(-0.5 * ((axes[1].view(1, 1, -1) - true[..., 1:]) / sigma) ** 2)
    weights = (gx.unsqueeze(-1) * gy.unsqueeze(-2)).flatten(2) * moving_valid.unsqueeze(1)
    counted = (weights.sum(-1) > 0.5) & (fixed_valid > 0.5)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-6)
    entropy = -(weights * log_probs).sum(-1)
    return (entropy * counted).sum() / counted.sum().clamp(min=1)
