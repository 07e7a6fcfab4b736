"""The networks' contracts: shapes, coordinates, composition, and the matching affine's fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from firereg.pipelines.nn.fields import affine_to_ddf
from firereg.pipelines.nn.losses import match_cross_entropy
from firereg.pipelines.nn.networks import (
    AffineNet,
    CascadeNet,
    MatchingAffineNet,
    VoxelMorphNet,
    build_network,
)


def _affine(theta_deg: float, scale: float, shift: tuple[float, float], size: int) -> torch.Tensor:
    """(1, 2, 3) fixed pixel -> moving pixel: rotation and scale about the centre, then a shift."""
    t = math.radians(theta_deg)
    linear = scale * torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=torch.float64)
    centre = torch.full((2,), (size - 1) / 2, dtype=torch.float64)
    offset = centre + torch.tensor(shift, dtype=torch.float64) - linear @ centre
    return torch.cat([linear, offset[:, None]], dim=1)[None].float()


def test_fit_recovers_a_known_affine_despite_outliers():
    net = MatchingAffineNet()
    size = 256
    cells = net.cell_centres((size, size))
    truth = _affine(12.0, 1.05, (30.0, -20.0), size)
    targets = (cells @ truth[0, :, :2].T + truth[0, :, 2])[None].clone()
    rng = np.random.default_rng(0)
    bad = torch.as_tensor(rng.choice(len(cells), size=len(cells) // 5, replace=False))
    targets[0, bad] = torch.as_tensor(rng.uniform(0, size, (len(bad), 2)), dtype=torch.float32)  # 20 % outliers
    weights = torch.ones(1, len(cells))
    fitted = net.fit(cells, targets, weights, float(size))
    grid = cells[None]
    error = torch.linalg.norm(grid @ fitted[0, :, :2].T + fitted[0, :, 2] - (grid @ truth[0, :, :2].T + truth[0, :, 2]), dim=-1)
    assert float(error.max()) < 0.5  # px at 256; plain least squares is tens of px off here
    plain = MatchingAffineNet(iterations=1).fit(cells, targets, weights, float(size))
    plain_error = torch.linalg.norm(grid @ plain[0, :, :2].T + plain[0, :, 2] - (grid @ truth[0, :, :2].T + truth[0, :, 2]), dim=-1)
    assert float(plain_error.mean()) > 5.0


def test_matching_affine_shapes_padding_and_field_of_view():
    torch.manual_seed(0)
    net = MatchingAffineNet().eval()
    image = torch.rand(2, 1, 100, 90)  # not a multiple of the stride (8): padded inside
    estimate = net.estimate(image, image)  # with gradients: the training loss needs the log-probabilities
    with torch.no_grad():
        warped, ddf = net(image, image)
        assert net.estimate(image, image).log_probs is None  # inference skips them
    assert estimate.matrix.shape == (2, 2, 3) and estimate.coarse.shape == (2, 2, 3)
    n = (104 // 8) * (96 // 8)
    assert estimate.log_probs.shape == (2, n, n) and estimate.cells.shape == (n, 2)
    assert warped.shape == image.shape and ddf.shape == (2, 2, 100, 90)
    # the padded border is outside the field of view; so is a black region
    black = image.clone()
    black[:, :, :48] = 0
    valid = net.field_of_view(torch.nn.functional.pad(black, (0, 6, 0, 4)))
    cells = net.cell_centres((104, 96))
    assert torch.all(valid[0][cells[:, 0] < 48] == 0) and torch.all(valid[0][(cells[:, 0] > 56) & (cells[:, 0] < 96) & (cells[:, 1] < 88)] == 1)
    with pytest.raises(ValueError, match="at least 16 px"):
        net.estimate(torch.rand(1, 1, 12, 64), torch.rand(1, 1, 12, 64))
    with pytest.raises(ValueError, match="one shape"):
        net.estimate(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 32))


def test_matching_affine_identical_images_give_the_identity_and_gradients_reach_the_encoder():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    texture = ndimage.gaussian_filter(rng.standard_normal((128, 128)), 3)
    image = torch.as_tensor((texture - texture.min()) / np.ptp(texture), dtype=torch.float32)[None, None]
    net = MatchingAffineNet()
    estimate = net.estimate(image, image)
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    grid = net.cell_centres((128, 128))[None]
    mapped = grid @ estimate.matrix[0, :, :2].T + estimate.matrix[0, :, 2]
    assert float(torch.linalg.norm(mapped - grid, dim=-1).mean()) < 1.0  # px: even untrained descriptors match themselves
    loss = match_cross_entropy(estimate.log_probs, estimate.cells, identity, estimate.fixed_valid,
                               estimate.moving_valid, sigma=8.0)
    loss.backward()
    assert net.encoder[0].weight.grad is not None and float(net.encoder[0].weight.grad.abs().sum()) > 0


def test_match_cross_entropy_is_low_for_the_right_matches_and_high_for_wrong_ones():
    n_side, stride = 8, 8
    net = MatchingAffineNet()
    cells = net.cell_centres((n_side * stride, n_side * stride))
    n = len(cells)
    shift = torch.tensor([[[1.0, 0.0, 8.0], [0.0, 1.0, 0.0]]])  # one cell along axis 0
    true = cells + torch.tensor([8.0, 0.0])
    distance = torch.cdist(true, cells)
    right = torch.log_softmax(-distance / 2.0, dim=-1)[None]
    wrong = torch.log_softmax(-torch.cdist(cells, cells) / 2.0, dim=-1)[None]  # identity matches
    ones = torch.ones(1, n)
    low = match_cross_entropy(right, cells, shift, ones, ones, sigma=8.0)
    high = match_cross_entropy(wrong, cells, shift, ones, ones, sigma=8.0)
    assert float(low) < float(high) - 1.0


def test_build_network_estimators_and_cascade_composition():
    assert isinstance(build_network("affine"), MatchingAffineNet)
    assert isinstance(build_network("affine", estimator="regression"), AffineNet)
    cascade = build_network("cascade")
    assert isinstance(cascade, CascadeNet) and isinstance(cascade.affine, MatchingAffineNet)
    assert isinstance(build_network("voxelmorph"), VoxelMorphNet)
    with pytest.raises(ValueError, match="estimator"):
        build_network("affine", estimator="magic")
    with pytest.raises(ValueError, match="unknown model"):
        build_network("bspline")
    # the composed DDF maps p -> A(p + u(p)) exactly
    size = 32
    matrix = _affine(5.0, 1.1, (3.0, -2.0), size)
    u = torch.randn(1, 2, size, size)
    ddf = cascade.compose(matrix, u)
    p = torch.tensor([7.0, 11.0])
    moved = p + u[0, :, 7, 11]
    expected = matrix[0, :, :2] @ moved + matrix[0, :, 2]
    assert torch.allclose(p + ddf[0, :, 7, 11], expected, atol=1e-4)
    assert torch.allclose(affine_to_ddf(matrix, (size, size))[0, :, 7, 11] + p, matrix[0, :, :2] @ p + matrix[0, :, 2], atol=1e-4)


def test_resample_ddf_keeps_the_map_in_pixel_centre_convention():
    from firereg.pipelines.nn.fields import resample_ddf
    from firereg.transforms.coords import scale_points

    small, large = 64, 160
    matrix_small = _affine(7.0, 0.95, (5.0, -3.0), small).double()
    ddf_large = resample_ddf(affine_to_ddf(matrix_small, (small, small)), (large, large)).double()
    # a pixel of the large grid, mapped by the resized field, equals the small map scaled up
    for p_large in ([10, 20], [80, 33], [150, 140]):
        p_small = scale_points(np.array([p_large], dtype=float), (large, large), (small, small))[0]
        q_small = matrix_small[0, :, :2].numpy() @ p_small + matrix_small[0, :, 2].numpy()
        expected = scale_points(q_small[None], (small, small), (large, large))[0]
        got = np.array(p_large, dtype=float) + ddf_large[0, :, p_large[0], p_large[1]].numpy()
        np.testing.assert_allclose(got, expected, atol=0.05)
    with pytest.raises(ValueError, match="DDF"):
        resample_ddf(torch.zeros(1, 3, 8, 8), (16, 16))


def test_half_resolution_voxelmorph_scales_the_field_back_to_full_resolution():
    net = VoxelMorphNet(spatial_dims=2, half_res=True).eval()
    with torch.no_grad():
        net.flow.weight.zero_()
        net.flow.bias.copy_(torch.tensor([2.0, -1.0]))  # half-resolution pixels
        ddf = net.predict_ddf(torch.rand(1, 1, 100, 90), torch.rand(1, 1, 100, 90))
    assert ddf.shape == (1, 2, 100, 90)
    assert torch.allclose(ddf[0, 0], torch.full((100, 90), 4.0), atol=1e-5)  # 100 / 50 = 2x
    assert torch.allclose(ddf[0, 1], torch.full((100, 90), -2.0), atol=1e-5)  # 90 / 45 = 2x
    assert build_network("cascade").deformable.half_res and not build_network("voxelmorph").half_res
