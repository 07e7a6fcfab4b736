"""Tests for firereg.transforms.brain_data and firereg.pipelines.examples.brain_mri (MNI152 template, synthetic deformations).

``firereg brain`` end to end: tests/cli/test_examples.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from firereg.evaluation.deformation import deformation_quality
from firereg.pipelines.cli.app import app
from firereg.pipelines.examples.brain_mri import (
    BrainConfig,
    evaluate_brain,
    train_brain,
)
from firereg.transforms.brain_data import (
    MNI152_SOURCE,
    BrainTemplate,
    load_mni152,
    random_smooth_ddf,
    synthetic_pairs,
    tissue_labels,
    warp,
)

runner = CliRunner()


def _world_centre_of_mass(template) -> np.ndarray:
    idx = np.argwhere(template.mask).mean(axis=0)
    return (template.affine @ np.append(idx, 1.0))[:3]


def test_mni152_template_geometry_and_contrasts():
    t4 = load_mni152(4)
    t8 = load_mni152(8)
    assert t4.dims == 3 and t4.spacing == (4.0, 4.0, 4.0) and t8.spacing == (8.0, 8.0, 8.0)
    assert t4.tissue.shape == (3, *t4.shape) and t4.mask.shape == t4.shape
    assert "nilearn" in t4.source and MNI152_SOURCE in t4.source and "4 mm" in t4.source
    # the affines are exact: the head sits at the same world position at every spacing (MNI: near the origin)
    np.testing.assert_allclose(_world_centre_of_mass(t4), _world_centre_of_mass(t8), atol=2.0)
    assert np.all(np.abs(_world_centre_of_mass(t4) - np.array([0.0, -18.0, 8.0])) < 15)
    labels = t4.labels()
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    mean = lambda img, lab: float(img[labels == lab].mean())  # noqa: E731
    assert mean(t4.t1, 3) > mean(t4.t1, 2) > mean(t4.t1, 1)  # T1: WM > GM > CSF
    assert mean(t4.t2, 1) > mean(t4.t2, 2) > mean(t4.t2, 3)  # T2-like: CSF > GM > WM
    slice2d = load_mni152(4).axial_slice(16.0)
    assert slice2d.dims == 2 and slice2d.tissue.shape == (3, *slice2d.shape)
    assert abs(slice2d.affine[2, 3] - 16.0) <= 2.0  # world z of the slice
    with pytest.raises(ValueError, match="outside"):
        t4.axial_slice(500.0)


def test_synthetic_fields_are_smooth_and_ground_truth_is_exact():
    t = load_mni152(8)
    gen = torch.Generator().manual_seed(0)
    ddf = random_smooth_ddf(t.shape, t.spacing, batch=2, amplitude_mm=10.0, generator=gen)
    peak_mm = (ddf * 8.0).norm(dim=1).reshape(2, -1).amax(dim=1)
    assert torch.all(peak_mm <= 10.0 + 1e-4) and torch.all(peak_mm >= 5.0 - 1e-4)
    assert all(deformation_quality(d).jac_min > 0.2 for d in ddf)

    pairs = synthetic_pairs(t, 2, "t1", "t2", generator=gen)
    assert pairs.fixed.shape == (2, 1, *t.shape) and pairs.true_ddf.shape == (2, 3, *t.shape)
    assert float(pairs.fixed.min()) == 0.0 and float(pairs.fixed.amax()) == 1.0
    assert tissue_labels(pairs.fixed_tissue[0].numpy()).max() == 3
    assert pairs.fixed_mask.dtype == torch.bool and pairs.fixed_mask.shape == (2, 1, *t.shape)


def test_true_field_maps_fixed_onto_moving():
    """moving(p + u(p)) = fixed(p) for the true u, up to the blur of a second bilinear resampling."""
    shape = (36, 40, 32)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    window = np.prod([np.clip(1.3 - 1.3 * np.abs(g), 0, 1) for g in grids], axis=0)  # zero at the border
    image = (window * (2 + np.sin(9 * grids[0]) * np.cos(7 * grids[1]) + np.sin(8 * grids[2]))).astype(np.float32)
    tissue = np.stack([window, window, window]).astype(np.float32) / 3
    smooth = BrainTemplate(image, image, tissue, window > 0.5, np.diag([4.0, 4.0, 4.0, 1.0]), "test")
    pairs = synthetic_pairs(smooth, 2, "t1", "t1", noise=0.0, generator=torch.Generator().manual_seed(3))
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6), slice(6, -6))
    before = (pairs.moving - pairs.fixed)[inner].abs().mean()
    after = (warp(pairs.moving, pairs.true_ddf) - pairs.fixed)[inner].abs().mean()
    assert before > 0.01 and after < 0.25 * before, (before, after)  # measured: 0.017 → 0.0026


def _short_2d_run(modality: str) -> dict:
    config = BrainConfig(dims=2, modality=modality, spacing_mm=3, steps=120, batch_size=4, n_eval=4,
                         refine_steps=60, threads=2)
    run = train_brain(config)
    metrics, _ = evaluate_brain(run.net, run.template, run.config)
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["mono", "multi"])
def test_short_2d_run_recovers_a_synthetic_deformation(modality):
    m = _short_2d_run(modality)
    assert m["field_error_mm_before"] > 1.5
    assert m["field_error_mm_after"] < 0.5 * m["field_error_mm_before"], m
    assert m["dice_after"] > m["dice_before"] + 0.05, m
    assert m["folding_fraction"] < 0.01, m


def test_brain_config_errors():
    with pytest.raises(ValueError, match="dims must be 2 or 3"):
        BrainConfig(dims=4).resolved()
    with pytest.raises(ValueError, match="unknown modality 'tri'"):
        BrainConfig(modality="tri").resolved()
    result = runner.invoke(app, ["brain", "--out", "x", "--spacing", "0"])
    assert result.exit_code == 2 and "spacing_mm must be a positive integer" in result.stderr
