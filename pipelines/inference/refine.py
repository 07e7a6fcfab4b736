"""Test-time refinement of a predicted displacement field: one pyramid optimisation, 2D and 3D.

The predicted DDF is optimised on its own pair with a registration loss (Adam, MONAI
``Warp``), coarse to fine. Users ask for it with the ``+tto`` suffix of a method spec
(``cascade+tto:RUN``, :mod:`firereg.pipelines.method_specs`) or ``--refine-steps`` of
``firereg register`` and ``firereg brain``; fundus photographs use
:func:`fundus_refinement`, brain MRI :attr:`firereg.pipelines.examples.brain_mri.BrainConfig.refinement`.
DDFs are (B, D, *spatial) in pixels (voxels) of their grid, fixed → moving
(see :mod:`firereg.transforms.coords`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.utils import convert_to_tensor

from firereg.pipelines.nn.fields import make_warp, resample_ddf
from firereg.pipelines.nn.losses import LossConfig, RegistrationLoss
from firereg.transforms.brain_data import smooth_field

__all__ = [
    "RefineConfig", "refine_ddf", "converged", "FUNDUS_REFINEMENT", "FUNDUS_REFINEMENT_LAMBDA", "fundus_refinement",
]

#: the coarsest pyramid level keeps at least this many pixels per axis (fewer if the image has fewer)
_MIN_SIDE = 8


@dataclass
class RefineConfig:
    """Test-time refinement of a predicted field (:func:`refine_ddf`).

    Two parametrisations, each optimised on a pyramid of ``levels`` resolutions (each level
    halves the finest; ``steps`` Adam steps per level, images area-downsampled):

    - ``grid=1``: every pixel's displacement is optimised; the loss's smoothness term acts on
      the whole field, and each level starts from the previous level's field, resampled;
    - ``grid > 1``: a smooth correction on control points ``grid`` pixels apart (bicubic
      upsampling in 2D, trilinear in 3D, as a B-spline transform) is added to the predicted
      field; the smoothness term acts on the correction. With a pyramid this has the capture
      range of classical multi-resolution registration, which a per-pixel optimisation at one
      scale lacks (it stalls in the nearest local optimum of local NCC).

    Attributes:
        steps: optimisation steps per pyramid level (0 = off).
        lr: Adam learning rate, pixels (voxels) per step.
        loss: the loss optimised (default :class:`LossConfig`).
        size: working size of the finest level for fundus photographs, pixels (None: the
            network's); :class:`firereg.pipelines.inference.deep_method.DeepMethod` refines the
            upsampled field on images of this size (capped at the images' own size).
        levels: pyramid levels (1 = the finest only).
        grid: control-point spacing of the correction at the finest level, pixels (1 = per pixel).
        sigma: Gaussian smoothing of the refined field, pixels (0 = off), as demons registration
            does: per-pixel Adam moves every voxel by about ``lr`` per step, also where the
            images carry no information; the smoothing removes that noise and its folds.
        tol: early stopping, relative (dimensionless): a level ends before ``steps`` once the
            loss improved by less than ``tol x |loss|`` over the last ``patience`` steps
            (0 = off: every level runs all ``steps``, exactly as without the option).
        patience: the window of the early-stopping test, steps (>= 1); no level stops before it.
        skip_finest: pyramid levels at the fine end that are not optimised (0 = all ``levels``
            run; must be < ``levels``): the loss is then only measured at 1/2**skip_finest of
            the finest resolution, which is cheaper; the field is still returned on the finest grid.
    """

    steps: int = 0
    lr: float = 0.1
    loss: LossConfig | None = None
    size: int | None = None
    levels: int = 1
    grid: int = 1
    sigma: float = 0.0
    tol: float = 0.0
    patience: int = 5
    skip_finest: int = 0

    def __post_init__(self) -> None:
        for name, low in (("steps", 0), ("levels", 1), ("grid", 1), ("patience", 1), ("skip_finest", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"RefineConfig.{name} = {value!r}: need an integer >= {low}")
        for name, low_ok in (("lr", False), ("sigma", True), ("tol", True)):
            value = getattr(self, name)
            number = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            if not number or value < 0 or (value == 0 and not low_ok):
                raise ValueError(f"RefineConfig.{name} = {value!r}: need a finite number {'>=' if low_ok else '>'} 0")
        if self.skip_finest >= self.levels:
            raise ValueError(f"RefineConfig.skip_finest = {self.skip_finest}: need fewer than levels = {self.levels} "
                             f"(at least one level must run)")


#: test-time refinement of fundus pairs (``+tto`` in benchmarks, ``firereg register --refine-steps``):
#: a smooth correction on control points 32 px apart at 512 px, optimised on a 3-level
#: pyramid (128, 256, 512 px). Measured on the default data's validation pairs it takes the
#: cascade from ~10 px to sub-pixel median error (see the closing note of issue #4). Each level
#: stops early once the loss improves by less than 0.1 % over 5 steps (issue #13): on the demo's
#: validation pairs cascade+tto (50 steps) kept mAUC 0.957 (median error 1.43 px vs 1.41 px)
#: with about 22 instead of 50 steps per level (7.1 s instead of 16.1 s per pair, loaded CPU).
FUNDUS_REFINEMENT = {"lr": 0.5, "size": 512, "levels": 3, "grid": 32, "tol": 1e-3, "patience": 5}


#: weight of the diffusion term on the correction (local NCC + FUNDUS_REFINEMENT_LAMBDA x
#: diffusion): on the default data's validation pairs 3.0 gave mAUC 0.958 and 0.6 % folding
#: against 0.938 and 2.9 % with the training's 0.01
FUNDUS_REFINEMENT_LAMBDA = 3.0


def fundus_refinement(steps: int = 50, aligned: bool = False) -> RefineConfig:
    """The :data:`FUNDUS_REFINEMENT` settings with ``steps`` Adam steps per pyramid level (0 = off).

    ``aligned``: the pair is already globally aligned (``hybrid+tto``: keypoints + quadratic,
    then a network), so the finest level (512 px) is skipped (``skip_finest=1``, the loss at
    128 and 256 px). On 24 generated 1024 px pairs (``hybrid+tto25``, the weights shipped before issue #13's) that gave
    mAUC 0.944 either way and a lower median error (1.66 px vs 1.77 px) at about a third of the
    refinement's time (the 512 px level costs ~3x the two coarser ones together per step).
    """
    skip = {"skip_finest": 1} if aligned else {}
    return RefineConfig(steps=steps, loss=LossConfig(lam=FUNDUS_REFINEMENT_LAMBDA), **FUNDUS_REFINEMENT, **skip)


def converged(history: list[float], tol: float, patience: int) -> bool:
    """The early-stopping test of :class:`RefineConfig`: true when the last loss of ``history``
    improved on the one ``patience`` steps earlier by less than ``tol x`` its magnitude
    (relative, dimensionless); never with ``tol == 0`` or fewer than ``patience + 1`` losses."""
    if tol <= 0 or len(history) <= patience:
        return False
    before, now = history[-1 - patience], history[-1]
    return before - now < tol * abs(before)


def _level_shape(full: tuple[int, ...], level: int) -> tuple[int, ...]:
    return tuple(max(min(n, _MIN_SIDE), n // 2**level) for n in full)


def _resize(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return x if tuple(x.shape[2:]) == shape else F.interpolate(x, size=shape, mode="area")


def _upsample(correction: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    mode = "bicubic" if len(shape) == 2 else "trilinear"
    return F.interpolate(correction, size=shape, mode=mode, align_corners=False)


def refine_ddf(
    ddf: torch.Tensor,
    moving: torch.Tensor,
    fixed: torch.Tensor,
    mask: torch.Tensor | None,
    config: RefineConfig,
    losses: list[list[float]] | None = None,
) -> torch.Tensor:
    """Optimise ``ddf`` on this pair with the loss, coarse to fine (see :class:`RefineConfig`).

    Args:
        ddf: (B, D, *spatial) DDF, D = 2 or 3, pixels (voxels) of its grid, fixed → moving.
        moving, fixed: (B, C, *spatial) images on the field's grid (the finest level).
        mask: (B, 1, *spatial) fixed-image field of view (> 0.5 inside), or None: where the
            similarity is measured.
        config: the settings; ``steps == 0`` returns ``ddf`` unchanged.
        losses: if given, one list per optimised level (coarse to fine) is appended to it,
            holding the loss before each step run there (its length is the steps run).

    Returns:
        The refined DDF (B, D, *spatial), detached, same units and grid.

    Raises:
        ValueError: quoting the shapes if ``ddf`` is not (B, D, *spatial) with D spatial axes
            or the images are not on its grid.
    """
    if config.steps == 0:
        return ddf
    base = convert_to_tensor(ddf, track_meta=False).detach().clone()
    full = tuple(base.shape[2:])
    dims = len(full)
    if dims not in (2, 3) or base.shape[1] != dims or moving.shape != fixed.shape or tuple(fixed.shape[2:]) != full:
        raise ValueError(f"need a (B, D, *spatial) DDF (D = 2 or 3) and two images on its grid, got DDF "
                         f"{tuple(base.shape)}, moving {tuple(moving.shape)}, fixed {tuple(fixed.shape)}")
    warp = make_warp()
    loss_fn = RegistrationLoss(config.loss or LossConfig())
    lam = loss_fn.config.lam
    if config.grid > 1:
        coarse = tuple(max(2, n // config.grid) for n in full)
        correction = torch.zeros(base.shape[0], dims, *coarse, dtype=base.dtype, device=base.device, requires_grad=True)
        optimizer = torch.optim.Adam([correction], lr=config.lr)
    field = base
    for level in reversed(range(config.skip_finest, config.levels)):
        shape = _level_shape(full, level)
        m, f = _resize(moving, shape), _resize(fixed, shape)
        k = None if mask is None else (_resize(mask, shape) > 0.5).to(mask.dtype)
        if config.grid == 1:  # per pixel: a new parameter per level, from the previous level's field
            field = resample_ddf(field, shape).detach().clone().requires_grad_(True)
            optimizer = torch.optim.Adam([field], lr=config.lr)
        history: list[float] = []
        for _ in range(config.steps):
            optimizer.zero_grad()
            if config.grid == 1:
                level_field = regularised = field
            else:
                u = _upsample(correction, full)
                level_field, regularised = resample_ddf(base + u, shape), resample_ddf(u, shape)
            loss = loss_fn.similarity(warp(m, level_field), f, k) + lam * loss_fn.smooth(regularised)
            loss.backward()
            optimizer.step()
            history.append(float(loss.detach()))
            if converged(history, config.tol, config.patience):
                break
        if losses is not None:
            losses.append(history)
    if config.grid == 1:
        refined = resample_ddf(field.detach(), full)
    else:
        refined = (base + _upsample(correction, full)).detach()
    return smooth_field(refined, (config.sigma,) * dims) if config.sigma > 0 else refined
