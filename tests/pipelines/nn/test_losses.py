"""Tests for firereg.pipelines.nn.losses: the masked similarity terms."""

from __future__ import annotations

import pytest
import torch
from monai.losses import GlobalMutualInformationLoss

from firereg.pipelines.nn.losses import (
    LossConfig,
    RegistrationLoss,
    masked_lncc,
    masked_mutual_information,
)


def _images(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(warped, fixed, mask): two different random images (1, 1, 40, 40) and a central square mask."""
    gen = torch.Generator().manual_seed(seed)
    warped, fixed = torch.rand(2, 1, 1, 40, 40, generator=gen)
    mask = torch.zeros(1, 1, 40, 40)
    mask[..., 10:30, 10:30] = 1.0
    return warped, fixed, mask


def test_masked_lncc_averages_inside_the_mask_and_ignores_content_far_outside():
    warped, fixed, mask = _images()
    fixed_inside = fixed.clone()
    fixed_inside[..., 10:30, 10:30] = warped[..., 10:30, 10:30]  # identical inside the mask only
    inside = masked_lncc(warped, fixed_inside, mask, kernel_size=5)
    assert float(masked_lncc(warped, fixed_inside, None, kernel_size=5)) > -0.5  # unmasked: mostly unrelated pixels
    # windows of 5 px reach 2 px outside the mask, so pixels 2 px inside its edge are perfect matches
    assert float(inside) < -0.8
    core = torch.zeros_like(mask)
    core[..., 12:28, 12:28] = 1.0
    assert float(masked_lncc(warped, fixed_inside, core, kernel_size=5)) == pytest.approx(-1.0, abs=1e-3)
    # what lies more than kernel_size // 2 px outside the mask does not change the value at all
    changed_w, changed_f = warped.clone(), fixed_inside.clone()
    changed_w[..., :8, :] = 0.0
    changed_f[..., 32:, :] = torch.rand(1, 1, 8, 40, generator=torch.Generator().manual_seed(5))
    assert float(masked_lncc(changed_w, changed_f, mask, kernel_size=5)) == pytest.approx(float(inside), abs=1e-6)
    assert float(masked_lncc(changed_w, changed_f, None, kernel_size=5)) != pytest.approx(
        float(masked_lncc(warped, fixed_inside, None, kernel_size=5)), abs=1e-3)


def test_masked_mutual_information_uses_only_the_pixels_inside():
    warped, fixed, mask = _images(1)
    inside = (slice(None), slice(None), slice(10, 30), slice(10, 30))
    mi = GlobalMutualInformationLoss()
    # the masked value is MONAI's MI of the inside pixels alone
    expected = mi(warped[inside].reshape(1, 1, -1), fixed[inside].reshape(1, 1, -1))
    torch.testing.assert_close(masked_mutual_information(warped, fixed, mask), expected)
    torch.testing.assert_close(masked_mutual_information(warped, fixed, None), mi(warped, fixed))
    # outside content does not matter; inside content does
    other = fixed.clone()
    other[..., :10, :] = 1.0 - other[..., :10, :]
    torch.testing.assert_close(masked_mutual_information(warped, other, mask), expected)
    aligned = warped.clone()
    assert float(masked_mutual_information(warped, aligned, mask)) < float(expected) - 0.5  # identical inside: high MI
    # a batch: the mean over pairs of each pair's inside pixels; an empty mask gives 0
    batch_mask = torch.cat([mask, torch.ones_like(mask)])
    batch = masked_mutual_information(torch.cat([warped, warped]), torch.cat([fixed, fixed]), batch_mask)
    torch.testing.assert_close(batch, (expected + mi(warped, fixed)) / 2)
    assert float(masked_mutual_information(warped, fixed, torch.zeros_like(mask))) == 0.0


def test_registration_loss_passes_the_mask_to_its_similarity():
    warped, fixed, mask = _images(2)
    ddf = torch.zeros(1, 2, 40, 40)
    for similarity in ("lncc", "mse", "mi"):
        loss = RegistrationLoss(LossConfig(similarity=similarity, lam=0.0))
        total, parts = loss(warped, fixed, ddf, mask)
        torch.testing.assert_close(total, loss.similarity(warped, fixed, mask))
        assert parts["smoothness"] == 0.0
        assert float(total) != pytest.approx(float(loss(warped, fixed, ddf)[0]), abs=1e-4)


def test_ddf_point_error_samples_the_field_at_the_fixed_points():
    from firereg.pipelines.nn.losses import ddf_point_error

    ddf = torch.zeros(1, 2, 32, 20)  # XY layout: (B, 2, W, H), channel 0 = dx
    ddf[:, 0] = 2.0
    ddf[:, 1, :, 10:] = 1.0  # dy = 1 where y >= 10
    fixed = torch.tensor([[[3.0, 4.0], [5.0, 15.0], [float("nan"), 1.0]]])
    moving = fixed + torch.tensor([[[2.0, 0.0], [2.0, 1.0], [0.0, 0.0]]])
    assert float(ddf_point_error(ddf, fixed, moving)) == pytest.approx(0.0, abs=1e-6)  # the NaN row is padding
    shifted = moving + torch.tensor([3.0, 4.0])
    assert float(ddf_point_error(ddf, fixed, shifted)) == pytest.approx(5.0, abs=1e-5)
    # halfway between y = 9 (dy 0) and y = 10 (dy 1): bilinear 0.5
    assert float(ddf_point_error(ddf, torch.tensor([[[4.0, 9.5]]]), torch.tensor([[[6.0, 9.5]]]))) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no valid control point"):
        ddf_point_error(ddf, torch.full((1, 2, 2), float("nan")), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, 2, W, H\)"):
        ddf_point_error(torch.zeros(1, 3, 4, 4), fixed, moving)
