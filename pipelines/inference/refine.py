"""Test-time refinement (instance optimisation) of a predicted displacement field."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from firereg.pipelines.nn.fields import resample_ddf
from firereg.pipelines.nn.losses import LossConfig, RegistrationLoss
from monai.utils import convert_to_tensor

__all__ = ["RefineConfig", "refine_ddf", "FUNDUS_REFINEMENT", "FUNDUS_REFINEMENT_LAMBDA", "fundus_refinement"]


@dataclass
class RefineConfig:
    """Test-time refinement (instance optimisation) of a predicted field.

    Two forms:

    - ``levels=1, grid=1`` (default): every pixel's displacement is optimised directly
      (2D or 3D) — fine-tuning of a field that is already close;
    - ``levels > 1`` or ``grid > 1`` (2D): a smooth correction on a coarse grid of control
      points ``grid`` pixels apart (bicubic upsampling, as a B-spline transform) is added to
      the predicted field and optimised coarse to fine on an image pyramid (each level
      halves the size) — the capture range of classical multi-resolution registration,
      which a per-pixel optimisation at one scale lacks (it stalls in the nearest local
      optimum of local NCC).

    Attributes:
        steps: optimisation steps per pyramid level (0 = off).
        lr: Adam learning rate, pixels (of the finest level) per step.
        loss: the loss optimised (the training loss by default); its smoothness term acts
            on the optimised correction (the whole field in the per-pixel form).
        size: working size of the refinement's finest level, pixels (None: the network's).
            A larger size than the network's refines the upsampled field on finer images
            (capped at the size of the images given).
        levels: pyramid levels (1 = the finest only).
        grid: control-point spacing of the correction at the finest level, pixels (1 = per pixel).
    """

    steps: int = 0
    lr: float = 0.1
    loss: LossConfig | None = None
    size: int | None = None
    levels: int = 1
    grid: int = 1

    def __post_init__(self) -> None:
        for name, low in (("steps", 0), ("levels", 1), ("grid", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"RefineConfig.{name} = {value!r}: need an integer >= {low}")
        if not self.lr > 0:
            raise ValueError(f"RefineConfig.lr = {self.lr!r}: need a number > 0")


#: test-time refinement of fundus pairs (``+tto`` in benchmarks, ``firereg register --refine-steps``):
#: a smooth correction on control points 32 px apart at 512 px, optimised on a 3-level
#: pyramid (128, 256, 512 px). Measured on the default data's validation pairs it takes the
#: cascade from ~10 px to sub-pixel median error (see the closing note of issue #4).
FUNDUS_REFINEMENT = {"lr": 0.5, "size": 512, "levels": 3, "grid": 32}


#: weight of the diffusion term on the correction (local NCC + FUNDUS_REFINEMENT_LAMBDA x
#: diffusion): on the default data's validation pairs 3.0 gave mAUC 0.958 and 0.6 % folding
#: against 0.938 and 2.9 % with the training's 0.01
FUNDUS_REFINEMENT_LAMBDA = 3.0


def fundus_refinement(steps: int = 50) -> RefineConfig:
    """The :data:`FUNDUS_REFINEMENT` settings with ``steps`` Adam steps per pyramid level (0 = off)."""
    return RefineConfig(steps=steps, loss=LossConfig(lam=FUNDUS_REFINEMENT_LAMBDA), **FUNDUS_REFINEMENT)


def refine_ddf(
    ddf: torch.Tensor,
    moving: torch.Tensor,
    fixed: torch.Tensor,
    mask: torch.Tensor | None,
    config: RefineConfig,
) -> torch.Tensor:
    """Optimise ``ddf`` (B, D, *spatial) on this pair with the loss (see :class:`RefineConfig`).

    ``moving``, ``fixed`` (B, C, *spatial) and ``mask`` are at the field's size (the finest
    level); coarser levels are area-downsampled from them. Returns the refined DDF, pixels.
    """
    from monai.networks.blocks import Warp

    warp = Warp(mode="bilinear", padding_mode="zeros")
    loss_fn = RegistrationLoss(config.loss or LossConfig())
    base = convert_to_tensor(ddf, track_meta=False).detach().clone()
    if config.levels == 1 and config.grid == 1:
        field = base.requires_grad_(True)
        optimizer = torch.optim.Adam([field], lr=config.lr)
        for _ in range(config.steps):
            optimizer.zero_grad()
            loss, _ = loss_fn(warp(moving, field), fixed, field, mask)
            loss.backward()
            optimizer.step()
        return field.detach()
    if base.ndim != 4 or base.shape[2] != base.shape[3]:
        raise ValueError(f"pyramid / grid refinement needs a square 2D DDF (B, 2, S, S), got {tuple(base.shape)}")
    size = base.shape[2]
    coarse = max(2, size // config.grid)
    correction = torch.zeros(base.shape[0], 2, coarse, coarse, dtype=base.dtype, requires_grad=True)
    optimizer = torch.optim.Adam([correction], lr=config.lr)
    lam = loss_fn.config.lam

    def upsampled() -> torch.Tensor:
        return F.interpolate(correction, size=(size, size), mode="bicubic", align_corners=False)

    for level in reversed(range(config.levels)):
        side = max(16, size // 2**level)
        down = (lambda x: F.interpolate(x, size=(side, side), mode="area")) if side != size else (lambda x: x)
        m, f = down(moving), down(fixed)
        k = (down(mask) > 0.5).to(mask.dtype) if mask is not None else None
        for _ in range(config.steps):
            optimizer.zero_grad()
            u = upsampled()
            field = resample_ddf(base + u, (side, side))
            similarity = loss_fn.similarity(warp(m, field), f, k)
            loss = similarity + lam * loss_fn.smooth(resample_ddf(u, (side, side)))
            loss.backward()
            optimizer.step()
    return (base + upsampled()).detach()
