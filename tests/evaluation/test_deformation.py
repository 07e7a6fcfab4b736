"""Tests for firereg.evaluation.deformation: Jacobian determinant, axis conventions, folding, masks."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from firereg.evaluation.deformation import (
    DeformationQuality,
    deformation_quality,
    deformation_quality_xy,
    jacobian_determinant,
    jacobian_determinant_xy,
)
from firereg.evaluation.results import DisplacementFieldResult


def grid(*shape: int, spacing: float | tuple[float, ...] = 1.0) -> np.ndarray:
    """Coordinates ``(D, *shape)``: channel i = position along array axis i (index * spacing)."""
    sp = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (len(shape),))
    axes = [np.arange(n, dtype=np.float64) * s for n, s in zip(shape, sp)]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


# --- known transforms ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7, 9), (5, 6, 4)])
def test_identity_is_exactly_one(shape):
    ddf = np.zeros((len(shape), *shape), dtype=np.float32)
    det = jacobian_determinant(ddf)
    assert det.shape == shape
    assert det.dtype == np.float64
    assert np.all(det == 1.0)
    q = deformation_quality(ddf)
    assert q == DeformationQuality(1.0, 0.0, 1.0, 1.0, 0.0, math.prod(shape))


def test_uniform_scale_2d_gives_four():
    ddf = grid(8, 11)  # u(p) = p, phi(p) = 2p
    np.testing.assert_allclose(jacobian_determinant(ddf), 4.0, rtol=0, atol=1e-12)


def test_uniform_scale_3d_gives_eight():
    ddf = grid(5, 7, 6)
    np.testing.assert_allclose(jacobian_determinant(ddf), 8.0, rtol=0, atol=1e-12)
    q = deformation_quality(ddf)
    assert q.jac_mean == pytest.approx(8.0)
    assert q.jac_std == pytest.approx(0.0, abs=1e-12)
    assert q.folding_fraction == 0.0
    assert q.n == 5 * 7 * 6


def test_rotation_2d_has_unit_determinant():
    h, w = 21, 17
    p = grid(h, w) - np.array([h / 2, w / 2])[:, None, None]
    a = np.deg2rad(33.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    ddf = np.einsum("ij,jhw->ihw", rot, p) - p  # u = R p - p
    det = jacobian_determinant(ddf)
    np.testing.assert_allclose(det[1:-1, 1:-1], 1.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(det, 1.0, rtol=0, atol=1e-6)  # linear: exact at borders too


def test_rotation_3d_has_unit_determinant():
    shape = (9, 10, 11)
    p = grid(*shape) - (np.array(shape, dtype=float) / 2)[:, None, None, None]
    ax = np.array([1.0, 2.0, -0.5])
    ax /= np.linalg.norm(ax)
    k = np.array([[0, -ax[2], ax[1]], [ax[2], 0, -ax[0]], [-ax[1], ax[0], 0]])
    t = 0.7
    rot = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k  # Rodrigues
    assert np.linalg.det(rot) == pytest.approx(1.0)
    ddf = np.einsum("ij,jabc->iabc", rot, p) - p
    det = jacobian_determinant(ddf)
    np.testing.assert_allclose(det[1:-1, 1:-1, 1:-1], 1.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("d", [2, 3])
def test_affine_field_matches_matrix_determinant(d):
    rng = np.random.default_rng(0)
    a = rng.normal(scale=0.4, size=(d, d))
    shape = (6, 7, 5)[:d]
    p = grid(*shape)
    ddf = np.tensordot(a, p, axes=1)  # u = A p  ->  J = I + A
    np.testing.assert_allclose(jacobian_determinant(ddf), np.linalg.det(np.eye(d) + a), atol=1e-10)


@pytest.mark.parametrize("d", [2, 3])
def test_nonlinear_field_matches_assembled_jacobian(d):
    """The explicit 2D/3D formulas agree with np.linalg.det of the gradient matrix."""
    rng = np.random.default_rng(1)
    shape = (8, 9, 7)[:d]
    p = grid(*shape)
    ddf = np.stack([np.sin(0.3 * p[(i + 1) % d]) * rng.normal() + 0.1 * p[i] ** 2 / 10 for i in range(d)])
    grads = np.stack([np.stack(np.gradient(ddf[i]), axis=-1) for i in range(d)], axis=-2)  # (..., i, k)
    expected = np.linalg.det(np.eye(d) + grads)
    np.testing.assert_allclose(jacobian_determinant(ddf), expected, atol=1e-12)


def test_one_axis_stretch_3d_picks_the_right_axis():
    p = grid(5, 6, 7)
    for axis in range(3):
        ddf = np.zeros_like(p)
        ddf[axis] = 0.3 * p[axis]
        np.testing.assert_allclose(jacobian_determinant(ddf), 1.3, atol=1e-12)
        # displacement along one axis varying along another: shear, volume-preserving
        ddf = np.zeros_like(p)
        ddf[axis] = 0.5 * p[(axis + 1) % 3]
        np.testing.assert_allclose(jacobian_determinant(ddf), 1.0, atol=1e-12)


# --- row-major (x, y) fields of DisplacementFieldResult ------------------------------


def xy_field(h: int, w: int, ux, uy) -> np.ndarray:
    """A (2, H, W) field with channel 0 = x displacement, channel 1 = y displacement."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([ux(xs, ys), uy(xs, ys)])


def test_xy_stretch_in_x_agrees_with_channel_first():
    h, w = 9, 13  # not square: a transposition would also fail on shapes
    field = xy_field(h, w, lambda x, y: 0.3 * x, lambda x, y: 0 * x)
    det_xy = jacobian_determinant_xy(field)
    assert det_xy.shape == (h, w)
    np.testing.assert_allclose(det_xy, 1.3, atol=1e-12)
    # the same transform in channel-first layout: channel 0 along rows (y), 1 along columns (x)
    np.testing.assert_allclose(jacobian_determinant(np.stack([field[1], field[0]])), det_xy)
    # passing the xy field as if it were channel-first gets it wrong (det 1): the reorder matters
    assert not np.allclose(jacobian_determinant(field), 1.3)


def test_xy_shear_has_unit_determinant():
    field = xy_field(9, 13, lambda x, y: 0.2 * y, lambda x, y: 0 * x)
    np.testing.assert_allclose(jacobian_determinant_xy(field), 1.0, atol=1e-12)
    np.testing.assert_allclose(jacobian_determinant(np.stack([field[1], field[0]])), 1.0, atol=1e-12)
    assert not np.allclose(jacobian_determinant(field), 1.0)  # wrong convention: 1.2


def test_xy_accepts_displacement_field_result_and_torch():
    field = xy_field(6, 8, lambda x, y: 0.5 * x + 0.1 * y, lambda x, y: -0.25 * y)
    expected = (1 + 0.5) * (1 - 0.25) - 0.1 * 0.0
    res = DisplacementFieldResult(field)
    np.testing.assert_allclose(jacobian_determinant_xy(res), expected, atol=1e-6)
    np.testing.assert_allclose(jacobian_determinant_xy(torch.from_numpy(field)), expected, atol=1e-12)
    q = deformation_quality_xy(res)
    assert q.jac_mean == pytest.approx(expected, abs=1e-6)
    assert q.n == 48


def test_xy_shape_errors_quote_shape():
    with pytest.raises(ValueError, match=re.escape("(3, 4, 5)")):
        jacobian_determinant_xy(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match=re.escape("(4, 5, 2)")):
        jacobian_determinant_xy(np.zeros((4, 5, 2)))


# --- folding ------------------------------------------------------------------------


def test_folding_fraction_equals_share_of_folded_part():
    # u_x = -3 x for x <= k, constant beyond: phi_x = -2 x folds columns 0..k (k + 1 of w)
    h, w, k = 10, 20, 6
    field = xy_field(h, w, lambda x, y: -3.0 * np.minimum(x, k), lambda x, y: 0 * x)
    det = jacobian_determinant_xy(field)
    assert np.all(det[:, : k + 1] < 0)
    assert np.all(det[:, k + 1 :] == 1.0)
    q = deformation_quality_xy(field)
    assert q.folding_fraction == pytest.approx((k + 1) / w)
    assert q.jac_min == pytest.approx(-2.0)
    assert q.jac_max == 1.0


def test_folding_fraction_along_rows_in_channel_first_3d():
    shape, k = (12, 5, 4), 2
    p = grid(*shape)
    ddf = np.zeros_like(p)
    ddf[0] = -3.0 * np.minimum(p[0], k)
    q = deformation_quality(ddf)
    assert q.folding_fraction == pytest.approx((k + 1) / shape[0])


def test_zero_determinant_counts_as_folding():
    ddf = np.zeros((2, 5, 6))
    ddf[0] = -grid(5, 6)[0]  # phi collapses axis 0: det exactly 0
    q = deformation_quality(ddf)
    assert q.jac_max == 0.0
    assert q.folding_fraction == 1.0


# --- mask ---------------------------------------------------------------------------


def test_mask_restricts_statistics():
    h, w, k = 10, 20, 6
    field = xy_field(h, w, lambda x, y: -3.0 * np.minimum(x, k), lambda x, y: 0 * x)
    det = jacobian_determinant_xy(field)
    right = np.zeros((h, w), dtype=bool)
    right[:, k + 1 :] = True
    q = deformation_quality_xy(field, mask=right)
    assert q == DeformationQuality(1.0, 0.0, 1.0, 1.0, 0.0, int(right.sum()))
    q = deformation_quality_xy(field, mask=~right)
    assert q.folding_fraction == 1.0
    assert q.n == h * (k + 1)
    assert q.jac_mean == pytest.approx(det[~right].mean())
    assert q.jac_std == pytest.approx(det[~right].std())
    # channel-first version and a torch mask give the same numbers
    q2 = deformation_quality(np.stack([field[1], field[0]]), mask=torch.from_numpy(~right))
    assert q2 == q


def test_empty_mask_gives_nan_and_zero_count():
    q = deformation_quality(np.zeros((2, 4, 4)), mask=np.zeros((4, 4), dtype=bool))
    assert q.n == 0
    assert math.isnan(q.jac_mean) and math.isnan(q.folding_fraction)


def test_mask_shape_error_quotes_both_shapes():
    with pytest.raises(ValueError, match=re.escape("(5, 4)") + ".*" + re.escape("(4, 5)")):
        deformation_quality(np.zeros((2, 4, 5)), mask=np.ones((5, 4), dtype=bool))
    with pytest.raises(ValueError, match=re.escape("(4, 5)")):
        deformation_quality_xy(np.zeros((2, 4, 5)), mask=np.ones((4, 5, 1), dtype=bool))


# --- spacing ------------------------------------------------------------------------


def test_spacing_isotropic_mm():
    p_mm = grid(6, 7, spacing=2.0)  # u = p_mm (in mm) with 2 mm pixels: phi = 2p, det 4
    np.testing.assert_allclose(jacobian_determinant(p_mm, spacing=2.0), 4.0, atol=1e-12)
    np.testing.assert_allclose(jacobian_determinant(p_mm, spacing=(2.0, 2.0)), 4.0, atol=1e-12)
    # the same displacements read as pixels (spacing 1) are twice as steep: det 9
    np.testing.assert_allclose(jacobian_determinant(p_mm), 9.0, atol=1e-12)
    p3 = grid(4, 5, 6, spacing=2.0)
    np.testing.assert_allclose(jacobian_determinant(p3, spacing=2.0), 8.0, atol=1e-12)


def test_spacing_is_applied_per_axis():
    sp = (2.0, 0.5)
    p_mm = grid(6, 7, spacing=sp)
    ddf = np.zeros_like(p_mm)
    ddf[0] = 0.5 * p_mm[0]  # stretch along axis 0 by 1.5, displacement in mm
    np.testing.assert_allclose(jacobian_determinant(ddf, spacing=sp), 1.5, atol=1e-12)
    # spacing given in the wrong axis order is detected by the numbers (det 1 + 0.5*2/0.5 = 3)
    np.testing.assert_allclose(jacobian_determinant(ddf, spacing=sp[::-1]), 3.0, atol=1e-12)
    q = deformation_quality(ddf, spacing=sp)
    assert q.jac_mean == pytest.approx(1.5)


@pytest.mark.parametrize("spacing", [(1.0, 2.0, 3.0), 0.0, -1.0, (1.0, float("nan"))])
def test_bad_spacing_raises(spacing):
    with pytest.raises(ValueError, match="spacing"):
        jacobian_determinant(np.zeros((2, 4, 4)), spacing=spacing)


# --- shapes and inputs --------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        (3, 4, 5),  # 3 channels, 2 spatial dims
        (2, 4, 5, 6),  # 2 channels, 3 spatial dims
        (4, 3, 3, 3, 3),  # 4D spatial
        (1, 8),  # 1D
        (4, 5),  # no channel axis
        (1, 2, 4, 5),  # MONAI batch, not indexed
        (1, 3, 4, 5, 6),  # MONAI 3D batch, not indexed
    ],
)
def test_shape_errors_quote_shape(shape):
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        jacobian_determinant(np.zeros(shape))
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        deformation_quality(np.zeros(shape))


@pytest.mark.parametrize("shape", [(1, 2, 4, 5), (1, 3, 4, 5, 6)])
def test_unindexed_batch_error_says_index_first(shape):
    with pytest.raises(ValueError, match=re.escape("ddf[b]")):
        jacobian_determinant(np.zeros(shape))


def test_single_sample_axis_raises():
    with pytest.raises(ValueError, match=re.escape("(2, 1, 5)")):
        jacobian_determinant(np.zeros((2, 1, 5)))


def test_non_numeric_raises_type_error():
    with pytest.raises(TypeError):
        jacobian_determinant(np.full((2, 3, 3), "a"))


def test_torch_input_works():
    p = torch.from_numpy(grid(5, 6, 4)).float().requires_grad_(True)  # u = p: det 8
    det = jacobian_determinant(p)
    assert isinstance(det, np.ndarray) and det.shape == (5, 6, 4)
    np.testing.assert_allclose(det, 8.0, atol=1e-5)
    q = deformation_quality(p[:, :, :, :], mask=torch.ones(5, 6, 4, dtype=torch.bool))
    assert q.jac_mean == pytest.approx(8.0, abs=1e-5)
    # a MONAI-style batch (B, D, *spatial): index the item first
    batch = torch.zeros(2, 2, 6, 7)
    batch[1] = torch.from_numpy(grid(6, 7))
    np.testing.assert_allclose(jacobian_determinant(batch[0]), 1.0)
    np.testing.assert_allclose(jacobian_determinant(batch[1]), 4.0, atol=1e-6)


def test_monai_warp_convention_matches():
    """A DDF that MONAI's Warp uses (channel i along spatial axis i) is read the same way here."""
    from monai.networks.blocks import Warp

    h, w = 16, 20
    ddf = np.zeros((2, h, w), dtype=np.float32)
    ddf[1] = 0.25 * grid(h, w)[1] - 2.0  # stretch along axis 1 only: det 1.25
    image = torch.from_numpy(grid(h, w)[1].astype(np.float32))[None, None]  # value = axis-1 index
    warped = Warp(mode="bilinear", padding_mode="border")(image, torch.from_numpy(ddf)[None])[0, 0].numpy()
    # Warp samples image(p + ddf(p)): along axis 1 the value is p1 + ddf[1] (inside the image)
    inside = (grid(h, w)[1] + ddf[1] >= 0) & (grid(h, w)[1] + ddf[1] <= w - 1)
    np.testing.assert_allclose(warped[inside], (grid(h, w)[1] + ddf[1])[inside], atol=1e-4)
    np.testing.assert_allclose(jacobian_determinant(ddf), 1.25, atol=1e-6)


def test_mapping_quality_of_results():
    """Any result's map: a uniform 2x scale has determinant 4; a folding field is found."""
    from firereg.evaluation.deformation import mapping_quality
    from firereg.evaluation.results import (
        DisplacementFieldResult,
        MatrixResult,
        ScaledResult,
    )

    scale = mapping_quality(MatrixResult(np.diag([2.0, 2.0, 1.0]), (100, 120), (200, 240)))
    assert scale.jac_min == pytest.approx(4.0) and scale.jac_max == pytest.approx(4.0)
    assert scale.folding_fraction == 0
    field = np.zeros((2, 50, 60))
    field[0, :, 30:] = -3.0 * np.arange(30)[None, :]  # x map runs backwards on the right half
    folded = mapping_quality(ScaledResult(DisplacementFieldResult(field), (100, 120), (100, 120)))
    assert 0.4 < folded.folding_fraction < 0.6
    left = np.zeros((100, 120), dtype=bool)
    left[:, :50] = True
    assert mapping_quality(ScaledResult(DisplacementFieldResult(field), (100, 120), (100, 120)), left).folding_fraction == 0
