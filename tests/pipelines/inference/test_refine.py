"""Tests for firereg.pipelines.inference.refine: test-time refinement recovers known shifts (2D and 3D)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from firereg.pipelines.inference.refine import (
    FUNDUS_REFINEMENT,
    RefineConfig,
    fundus_refinement,
    refine_ddf,
)
from firereg.pipelines.nn.losses import LossConfig
from firereg.transforms.brain_data import smooth_field


def _shifted_pair(size: int, shift: tuple[float, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(moving, fixed) (1, 1, *spatial) of a smooth texture with ``moving(p + shift) = fixed(p)``.

    The true DDF is the constant ``shift`` (pixels along each array axis, the networks' ``XY`` layout).
    """
    dims = len(shift)
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.standard_normal((size + 32,) * dims), 2.0)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    crop = (slice(16, 16 + size),) * dims
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)[None, None]  # noqa: E731
    return as_tensor(ndimage.shift(texture, shift, order=3)[crop]), as_tensor(texture[crop])


def _error(ddf: torch.Tensor, shift: tuple[float, ...], inside: torch.Tensor) -> float:
    """Mean distance (px) of the DDF (1, D, *spatial) to the true constant shift, over ``inside``."""
    true = torch.tensor(shift, dtype=ddf.dtype).view(len(shift), *([1] * len(shift)))
    return float((ddf[0] - true).norm(dim=0)[inside].mean())


def _interior(size: int, dims: int, margin: int) -> torch.Tensor:
    inside = torch.zeros((size,) * dims, dtype=torch.bool)
    inside[(slice(margin, size - margin),) * dims] = True
    return inside


def test_per_pixel_refinement_recovers_a_shift_from_the_zero_field():
    shift = (2.5, -1.5)
    moving, fixed = _shifted_pair(48, shift, seed=0)
    zero = torch.zeros(1, 2, 48, 48)
    inside = _interior(48, 2, 8)
    refined = refine_ddf(zero, moving, fixed, None, RefineConfig(steps=60, lr=0.1, loss=LossConfig(lam=1.0)))
    assert _error(zero, shift, inside) > 2.5
    assert _error(refined, shift, inside) < 0.3  # measured 0.12
    assert refined.shape == zero.shape and not refined.requires_grad
    assert torch.equal(zero, torch.zeros(1, 2, 48, 48))  # the input is left alone


def test_pyramid_grid_refinement_has_the_capture_range_one_level_lacks():
    """The fundus form (a smooth correction on control points, coarse to fine) inside a circular
    field of view with a black border, as fundus photographs have."""
    size, shift = 96, (6.0, -4.0)
    moving, fixed = _shifted_pair(size, shift, seed=1)
    grid = np.mgrid[0:size, 0:size] - (size - 1) / 2
    radius = np.hypot(*grid)
    circle = torch.as_tensor(radius < 0.46 * size, dtype=torch.float32)[None, None]
    moving, fixed = moving * circle, fixed * circle
    mask = torch.as_tensor(ndimage.binary_erosion(radius < 0.46 * size, iterations=3), dtype=torch.float32)[None, None]
    inside = torch.as_tensor(radius < 0.3 * size)
    zero = torch.zeros(1, 2, size, size)
    settings = dict(steps=30, lr=0.5, loss=LossConfig(lam=3.0), grid=16)
    pyramid = refine_ddf(zero, moving, fixed, mask, RefineConfig(levels=3, **settings))
    one_level = refine_ddf(zero, moving, fixed, mask, RefineConfig(levels=1, **settings))
    unmasked = refine_ddf(zero, moving, fixed, None, RefineConfig(levels=3, **settings))
    assert _error(zero, shift, inside) > 7.0
    assert _error(pyramid, shift, inside) < 0.3  # measured 0.08
    assert _error(one_level, shift, inside) > 5.0  # measured 8.5: it stalls in a local optimum
    assert _error(pyramid, shift, inside) < _error(unmasked, shift, inside)  # the black border pulls to identity


def test_3d_refinement_per_voxel_pyramid_and_smoothing():
    shift = (1.5, -1.0, 0.5)
    moving, fixed = _shifted_pair(24, shift, seed=2)
    zero = torch.zeros(1, 3, 24, 24, 24)
    inside = _interior(24, 3, 4)
    loss = LossConfig(lam=1.0, kernel_size=7)
    plain = refine_ddf(zero, moving, fixed, None, RefineConfig(steps=30, lr=0.1, loss=loss))
    assert _error(zero, shift, inside) > 1.8
    assert _error(plain, shift, inside) < 0.3  # measured 0.16
    two_levels = refine_ddf(zero, moving, fixed, None, RefineConfig(steps=30, lr=0.1, loss=loss, levels=2))
    assert _error(two_levels, shift, inside) < 0.3  # measured 0.13
    smoothed = refine_ddf(zero, moving, fixed, None, RefineConfig(steps=30, lr=0.1, loss=loss, sigma=1.0))
    torch.testing.assert_close(smoothed, smooth_field(plain, (1.0, 1.0, 1.0)))  # deterministic on CPU


def test_refinement_settings_and_errors():
    ddf = torch.randn(1, 2, 16, 16)
    image = torch.rand(1, 1, 16, 16)
    assert refine_ddf(ddf, image, image, None, RefineConfig(steps=0)) is ddf  # off: unchanged
    with pytest.raises(ValueError, match=r"\(1, 2, 16, 16\).*\(1, 1, 12, 16\)"):
        refine_ddf(ddf, torch.rand(1, 1, 12, 16), torch.rand(1, 1, 12, 16), None, RefineConfig(steps=1))
    with pytest.raises(ValueError, match=r"\(1, 3, 16, 16\)"):
        refine_ddf(torch.zeros(1, 3, 16, 16), image, image, None, RefineConfig(steps=1))
    for bad, message in ((dict(steps=-1), "steps = -1"), (dict(levels=0), "levels = 0"), (dict(grid=1.5), "grid = 1.5"),
                         (dict(lr=0.0), "lr = 0.0"), (dict(sigma=-1.0), "sigma = -1.0")):
        with pytest.raises(ValueError, match=message):
            RefineConfig(**bad)
    fundus = fundus_refinement(7)
    settings = (fundus.steps, fundus.lr, fundus.size, fundus.levels, fundus.grid, fundus.tol, fundus.patience)
    assert settings == (7, *FUNDUS_REFINEMENT.values())
    assert fundus.loss.lam == 3.0 and fundus.sigma == 0.0 and fundus.skip_finest == 0
    assert (fundus.tol, fundus.patience) == (1e-3, 5)  # early stopping is on for fundus pairs
    aligned = fundus_refinement(7, aligned=True)  # hybrid+tto: the finest level is skipped
    assert aligned.skip_finest == 1 and dataclasses.replace(aligned, skip_finest=0) == fundus


def test_early_stopping_ends_a_converged_level_and_tol_zero_changes_nothing():
    shift = (2.5, -1.5)
    moving, fixed = _shifted_pair(48, shift, seed=0)
    zero = torch.zeros(1, 2, 48, 48)
    inside = _interior(48, 2, 8)
    settings = dict(steps=200, lr=0.1, loss=LossConfig(lam=1.0))
    losses: list[list[float]] = []
    early = refine_ddf(zero, moving, fixed, None, RefineConfig(tol=1e-3, patience=5, **settings), losses)
    assert len(losses) == 1 and 5 < len(losses[0]) < 120  # measured 61 of 200 steps
    assert _error(early, shift, inside) < 0.3  # converged before stopping: measured 0.12
    assert losses[0][-6] - losses[0][-1] < 1e-3 * abs(losses[0][-6])  # the stopping rule, on the recorded losses
    plain, off, full_run = [], [], []
    reference = refine_ddf(zero, moving, fixed, None, RefineConfig(steps=30, lr=0.1, loss=LossConfig(lam=1.0)), plain)
    untouched = refine_ddf(zero, moving, fixed, None,
                           RefineConfig(steps=30, lr=0.1, loss=LossConfig(lam=1.0), tol=0.0, patience=1), off)
    assert torch.equal(reference, untouched) and plain == off and len(off[0]) == 30  # tol 0: every step, same field
    refine_ddf(zero, moving, fixed, None, RefineConfig(steps=30, lr=0.1, loss=LossConfig(lam=1.0), tol=1e-9), full_run)
    assert len(full_run[0]) == 30  # a tolerance the loss keeps beating never stops


def test_converged_rule():
    from firereg.pipelines.inference.refine import converged

    falling = [-0.50, -0.60, -0.70]
    assert not converged(falling, tol=0.1, patience=2)  # improved by 0.2 > 0.1 x 0.5
    assert converged([-0.50, -0.52, -0.54], tol=0.1, patience=2)  # 0.04 < 0.05
    assert not converged([-0.50, -0.52], tol=0.1, patience=2)  # too few steps to judge
    assert not converged([-0.50, -0.50, -0.50], tol=0.0, patience=2)  # 0 = off
    assert converged([-0.50, -0.40, -0.45], tol=1e-6, patience=2)  # got worse


def test_skipping_the_finest_level_returns_the_finest_grid():
    """skip_finest=1 on the fundus-style pyramid: two levels run (24, 48 px of 96), the field comes back at 96 px."""
    size, shift = 96, (6.0, -4.0)
    moving, fixed = _shifted_pair(size, shift, seed=1)
    zero = torch.zeros(1, 2, size, size)
    inside = _interior(size, 2, 16)
    settings = dict(steps=30, lr=0.5, loss=LossConfig(lam=3.0), grid=16, levels=3)
    losses: list[list[float]] = []
    coarse = refine_ddf(zero, moving, fixed, None, RefineConfig(skip_finest=1, **settings), losses)
    assert [len(level) for level in losses] == [30, 30] and coarse.shape == zero.shape
    assert _error(coarse, shift, inside) < 0.5  # measured 0.14 (all three levels: 0.07)
    pixelwise, per_pixel_losses = torch.zeros(1, 2, 48, 48), []
    moving48, fixed48 = _shifted_pair(48, (2.5, -1.5), seed=0)
    refined = refine_ddf(pixelwise, moving48, fixed48, None,
                         RefineConfig(steps=5, lr=0.1, levels=2, skip_finest=1), per_pixel_losses)
    assert refined.shape == (1, 2, 48, 48) and len(per_pixel_losses) == 1


def test_refinement_early_stopping_settings_are_checked():
    for bad, message in ((dict(tol=-0.1), "tol = -0.1"), (dict(tol=float("nan")), "tol = nan"),
                         (dict(tol="1e-3"), "tol = '1e-3'"), (dict(patience=0), "patience = 0"),
                         (dict(patience=2.0), "patience = 2.0"), (dict(skip_finest=-1), "skip_finest = -1"),
                         (dict(levels=3, skip_finest=3), "skip_finest = 3.*levels = 3"),
                         (dict(lr=float("inf")), "lr = inf")):
        with pytest.raises(ValueError, match=message):
            RefineConfig(**bad)
    assert RefineConfig(tol=np.float32(1e-3)).tol > 0  # numpy numbers are numbers


def test_specs_skip_the_finest_level_only_for_the_hybrid():
    from firereg.pipelines.method_specs import (
        DEFAULT_WEIGHTS,
        make_any_method,
        method_fingerprint,
    )

    hybrid = method_fingerprint(f"hybrid+tto3:{DEFAULT_WEIGHTS}")["refine"]
    voxelmorph = method_fingerprint(f"voxelmorph+tto3:{DEFAULT_WEIGHTS}")["refine"]
    assert (hybrid["steps"], hybrid["skip_finest"], hybrid["tol"]) == (3, 1, 1e-3)
    assert (voxelmorph["steps"], voxelmorph["skip_finest"], voxelmorph["tol"]) == (3, 0, 1e-3)
    assert make_any_method(f"hybrid+tto3:{DEFAULT_WEIGHTS}").deformable.refine == fundus_refinement(3, aligned=True)
