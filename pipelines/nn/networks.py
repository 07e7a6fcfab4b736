"""Registration networks from MONAI parts: VoxelMorph, an affine network, and their cascade.

Tensors are MONAI channel-first: images (B, C, *spatial); a displacement field (DDF) is
(B, D, *spatial) in pixels (voxels), channel ``i`` = displacement along spatial axis ``i``,
fixed → moving, sampled by MONAI ``Warp`` (bilinear, ``align_corners=True``); 2D fundus
images are in the ``XY`` layout (see :mod:`firereg.transforms.coords`).
Each ``forward(moving, fixed)`` returns ``(warped, ddf)``; the affine networks also expose
the matrix through :meth:`AffineNet.predict_affine`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from monai.networks.blocks import DVF2DDF
from monai.networks.nets import BasicUNet
from torch import nn

from firereg.pipelines.nn.fields import (
    affine_to_ddf,
    crop_to,
    make_warp,
    pad_to_multiple,
)

__all__ = [
    "VoxelMorphNet",
    "AffineNet",
    "MatchingAffineNet",
    "AffineEstimate",
    "AFFINE_ESTIMATORS",
    "CascadeNet",
    "build_network",
    "MODEL_TYPES",
]

MODEL_TYPES = ("voxelmorph", "affine", "cascade")
#: how the affine stage estimates its matrix: feature matching + robust fit (default) or
#: regression heads on a correlation volume
AFFINE_ESTIMATORS = ("matching", "regression")


class VoxelMorphNet(nn.Module):
    """Unsupervised VoxelMorph: U-Net on [moving, fixed] → DDF → ``Warp``.

    The U-Net is MONAI's ``BasicUNet`` (contracting blocks, bottleneck, expanding blocks
    with skip connections; instance norm + LeakyReLU); a 3x3 convolution initialised near
    zero (as in VoxelMorph) turns its features into the DDF. Any image size works: inputs
    are padded to a multiple of 16 and the field is cropped back.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of each image (the U-Net sees twice as many).
        features: ``BasicUNet`` features (6 numbers).
        integration_steps: > 0 makes the model diffeomorphic: the output is a stationary
            velocity field integrated by scaling and squaring (MONAI ``DVF2DDF``).
        half_res: predict the field at half resolution (the pair is area-downsampled by 2,
            the field upsampled and scaled back), as VoxelMorph's ``half_res``: about 4x
            cheaper and smoother; what the cascade uses after its affine stage.
    """

    multiple = 16  # BasicUNet pools four times

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        features: Sequence[int] = (16, 32, 32, 32, 32, 16),
        integration_steps: int = 0,
        half_res: bool = False,
    ) -> None:
        super().__init__()
        self.half_res = bool(half_res)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.unet = BasicUNet(
            spatial_dims=spatial_dims,
            in_channels=2 * in_channels,
            out_channels=features[-1],
            features=tuple(features),
            act=("LeakyReLU", {"negative_slope": 0.2, "inplace": True}),
        )
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.flow = conv(features[-1], spatial_dims, kernel_size=3, padding=1)
        nn.init.normal_(self.flow.weight, 0.0, 1e-5)
        nn.init.zeros_(self.flow.bias)
        self.integrate = DVF2DDF(num_steps=integration_steps) if integration_steps > 0 else None
        self.warp = make_warp()

    def _check(self, moving: torch.Tensor, fixed: torch.Tensor) -> None:
        if moving.shape != fixed.shape:
            raise ValueError(f"moving and fixed must have the same shape, got {tuple(moving.shape)} and {tuple(fixed.shape)}")
        expected = 2 + self.spatial_dims
        if moving.ndim != expected or moving.shape[1] != self.in_channels:
            raise ValueError(
                f"expected (B, {self.in_channels}, {', '.join('*' * self.spatial_dims)}) images, got {tuple(moving.shape)}"
            )

    def predict_ddf(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """The DDF (B, D, *spatial), pixels, mapping the fixed grid into the moving image."""
        self._check(moving, fixed)
        spatial = moving.shape[2:]
        pair = torch.cat([moving, fixed], dim=1)
        if self.half_res:
            pair = F.interpolate(pair, size=[max(1, n // 2) for n in spatial], mode="area")
        work = pair.shape[2:]
        x, _ = pad_to_multiple(pair, self.multiple)
        field = crop_to(self.flow(self.unet(x)), work)
        if self.integrate is not None:
            field = self.integrate(field)
        if self.half_res:  # back to full resolution: resample, and scale each axis's displacement
            scale = torch.tensor([n / w for n, w in zip(spatial, work)], dtype=field.dtype, device=field.device)
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            field = F.interpolate(field, size=list(spatial), mode=mode, align_corners=False)
            field = field * scale.view(1, -1, *([1] * self.spatial_dims))
        return field

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ddf = self.predict_ddf(moving, fixed)
        return self.warp(moving, ddf), ddf


class AffineNet(nn.Module):
    """Affine registration network in the spirit of spatial transformers (2D).

    After the geometric-matching network of Rocco et al. (CVPR 2017): a siamese
    convolutional encoder maps each image to a ``grid`` x ``grid`` map of L2-normalised
    features; a correlation layer compares every fixed location with every moving location
    (so where things moved is explicit, which a plain regressor on stacked images must
    learn from scratch); a small regression CNN on the correlation volume feeds separate
    fully connected heads for translation, rotation, scale and shear, composed into one
    affine about the image centre (pixels):
    ``A(p) = c + t + R(theta) Sh(shear) S(scale) (p - c)`` with ``t`` in pixels, applied
    through the same ``Warp`` path as VoxelMorph (via its DDF). All heads start at the
    identity transform. Any input size works (features are pooled to ``grid``).

    Args:
        in_channels: channels of each image.
        features: encoder channels (multiples of 8); each stage halves the resolution.
        grid: side of the feature map that is correlated.
    """

    def __init__(self, in_channels: int = 1, features: Sequence[int] = (16, 32, 64, 64), grid: int = 16) -> None:
        super().__init__()
        self.spatial_dims = 2
        self.in_channels = in_channels
        self.grid = grid
        layers: list[nn.Module] = []
        channels = in_channels
        for out in features:
            layers += [
                nn.Conv2d(channels, out, kernel_size=3, stride=2, padding=1),
                nn.GroupNorm(8, out),  # unlike InstanceNorm, also defined on the 1x1 maps of small inputs
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(out, out, kernel_size=3, padding=1),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(grid))
        self.regressor = nn.Sequential(
            nn.Conv2d(grid * grid, 128, kernel_size=7),
            nn.GroupNorm(8, 128),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(128, 64, kernel_size=5),
            nn.GroupNorm(8, 64),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(),
        )
        flat = 64 * (grid - 10) ** 2
        self.trunk = nn.Sequential(nn.Linear(flat, 256), nn.LeakyReLU(0.2, inplace=True))
        self.translation = nn.Linear(256, 2)  # share of the image size
        self.rotation = nn.Linear(256, 1)  # radians
        self.log_scale = nn.Linear(256, 2)
        self.shear = nn.Linear(256, 1)
        for head in (self.translation, self.rotation, self.log_scale, self.shear):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.warp = make_warp()

    def correlation(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """(B, grid*grid, grid, grid): channel = moving location, spatial = fixed location."""
        fm = F.normalize(self.encoder(moving), dim=1).flatten(2)  # (B, C, G*G)
        ff = F.normalize(self.encoder(fixed), dim=1).flatten(2)
        corr = torch.einsum("bcm,bcf->bmf", fm, ff).reshape(moving.shape[0], -1, self.grid, self.grid)
        return F.normalize(F.relu(corr), dim=1)

    def predict_affine(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """(B, 2, 3) affine on pixel index coordinates: fixed ``p`` → moving ``A[:, :, :2] p + A[:, :, 2]``."""
        if moving.shape != fixed.shape or moving.ndim != 4 or moving.shape[1] != self.in_channels:
            raise ValueError(
                f"expected two (B, {self.in_channels}, W, H) images of one shape, got {tuple(moving.shape)} and {tuple(fixed.shape)}"
            )
        h = self.trunk(self.regressor(self.correlation(moving, fixed)))
        size = torch.as_tensor(moving.shape[2:], dtype=h.dtype, device=h.device)
        t = self.translation(h) * size
        theta = self.rotation(h)[:, 0]
        scale = torch.exp(self.log_scale(h))
        shear = self.shear(h)[:, 0]
        cos, sin = torch.cos(theta), torch.sin(theta)
        zeros, ones = torch.zeros_like(theta), torch.ones_like(theta)
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        shr = torch.stack([torch.stack([ones, shear], -1), torch.stack([zeros, ones], -1)], -2)
        linear = rot @ shr @ torch.diag_embed(scale)
        centre = (size - 1) / 2
        offset = centre + t - (linear @ centre.unsqueeze(-1)).squeeze(-1)
        return torch.cat([linear, offset.unsqueeze(-1)], dim=-1)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ddf = affine_to_ddf(self.predict_affine(moving, fixed), moving.shape[2:])
        return self.warp(moving, ddf), ddf


class AffineEstimate(NamedTuple):
    """What :meth:`MatchingAffineNet.estimate` computes (B = batch, N fixed cells, M moving cells).

    Attributes:
        matrix: (B, 2, 3) the final affine (fixed pixel → moving pixel).
        coarse: (B, 2, 3) the affine of the global matching pass.
        log_probs: (B, N, M) log-probabilities of each fixed cell's match among the moving
            cells (None when gradients are off: only the training loss needs them).
        cells: (N, 2) pixel coordinates of the cell centres (the same grid in both images).
        fixed_valid, moving_valid: (B, N), (B, M) 1 for cells inside the field of view.
    """

    matrix: torch.Tensor
    coarse: torch.Tensor
    log_probs: torch.Tensor | None
    cells: torch.Tensor
    fixed_valid: torch.Tensor
    moving_valid: torch.Tensor


class MatchingAffineNet(nn.Module):
    """Affine network that matches learned features and fits the affine to the matches (2D).

    A siamese convolutional encoder maps each image to L2-normalised descriptors on a grid
    of cells (one per ``stride`` pixels). Every fixed cell is compared with every moving
    cell (a correlation layer with a learned temperature). Matches are the expected moving
    position under the dual softmax (row softmax x column softmax: a fixed cell and a moving
    cell must each prefer the other, which silences cells with no partner, as outside the
    overlap of FIRE's P pairs); a weighted least-squares affine with iteratively
    re-weighted (Cauchy) residuals is fitted to them. A second, fine pass repeats the
    match within ``window`` cells of where the coarse affine puts each cell and fits again.
    Every step is differentiable, so the network trains from control-point affines (and a
    cross-entropy on the matches) or from image similarity.

    Why not regression heads (:class:`AffineNet`): on the few training pairs of FIRE a
    regressor from a correlation volume to parameters overfits and stays at identity-level
    error on unseen pairs; a fit to matches is equivariant to where things moved, so it
    generalises from few pairs. Any size divisible by ``stride`` works (others are padded).

    Args:
        in_channels: channels of each image.
        features: encoder channels per stride-2 stage (multiples of 8).
        dim: descriptor length.
        window: half-width of the fine pass's search window, cells (0: coarse pass only).
        iterations: re-weighting iterations of each fit.
        robust: Cauchy scale of the re-weighting, share of the image size.
    """

    #: intensity (images scaled to [0, 1]) above which a pixel is in the field of view. A tensor rule, not
    #: firereg.transforms.fov.field_of_view: it runs on the batched working-size inputs inside the network
    #: (training and inference alike, no masks travel with them), and trained checkpoints depend on it.
    fov_threshold = 0.02

    def __init__(
        self,
        in_channels: int = 1,
        features: Sequence[int] = (16, 32, 64),
        dim: int = 64,
        window: int = 2,
        iterations: int = 4,
        robust: float = 0.03,
    ) -> None:
        super().__init__()
        self.spatial_dims = 2
        self.in_channels = in_channels
        self.window, self.iterations, self.robust = int(window), int(iterations), float(robust)
        layers: list[nn.Module] = []
        channels = in_channels
        for out in features:
            layers += [
                nn.Conv2d(channels, out, kernel_size=3, stride=2, padding=1),
                nn.GroupNorm(8, out),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(out, out, kernel_size=3, padding=1),
                nn.GroupNorm(8, out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out
        layers += [
            nn.Conv2d(channels, dim, kernel_size=3, padding=1),
            nn.GroupNorm(8, dim),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim, dim, kernel_size=1),
        ]
        self.encoder = nn.Sequential(*layers)
        self.stride = 2 ** len(features)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(0.1)))
        self.warp = make_warp()

    def cell_centres(self, spatial: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
        """(N, 2) pixel index coordinates of the cell centres, axis 0 varying slowest."""
        axes = [torch.arange(n // self.stride, device=device, dtype=dtype) * self.stride + (self.stride - 1) / 2
                for n in spatial]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 2)

    def field_of_view(self, image: torch.Tensor) -> torch.Tensor:
        """(B, N) 1 for cells mostly inside the image's field of view (intensity above black)."""
        inside = (image.amax(1, keepdim=True) > self.fov_threshold).to(image.dtype)
        return (F.avg_pool2d(inside, self.stride) > 0.5).to(image.dtype).flatten(1)

    def fit(self, cells: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, size: float) -> torch.Tensor:
        """Robust weighted least-squares affines (B, 2, 3) mapping ``cells`` (N, 2) to ``targets`` (B, N, 2).

        Coordinates are divided by ``size`` for conditioning; a small ridge towards the
        identity keeps the solve defined when almost every weight is zero.
        """
        design = torch.cat([cells / size, torch.ones_like(cells[:, :1])], dim=1).expand(targets.shape[0], -1, -1)
        goal = targets / size
        identity = torch.eye(3, 2, dtype=goal.dtype, device=goal.device).unsqueeze(0)
        ridge_eye = torch.eye(3, dtype=goal.dtype, device=goal.device).unsqueeze(0)
        current = weights
        for _ in range(self.iterations):
            ridge = 1e-5 * current.sum(1).clamp(min=1e-6)[:, None, None]
            weighted = design.transpose(1, 2) * current.unsqueeze(1)
            solution = torch.linalg.solve(weighted @ design + ridge * ridge_eye, weighted @ goal + ridge * identity)
            residual = torch.linalg.norm(design @ solution - goal, dim=-1)
            current = weights / (1 + (residual / self.robust) ** 2)
        matrix = solution.transpose(1, 2)
        return torch.cat([matrix[:, :, :2], matrix[:, :, 2:] * size], dim=-1)

    def estimate(self, moving: torch.Tensor, fixed: torch.Tensor) -> AffineEstimate:
        """The affine and the matches behind it (see :class:`AffineEstimate`)."""
        if moving.shape != fixed.shape or moving.ndim != 4 or moving.shape[1] != self.in_channels:
            raise ValueError(
                f"expected two (B, {self.in_channels}, W, H) images of one shape, got {tuple(moving.shape)} and {tuple(fixed.shape)}"
            )
        if min(fixed.shape[2:]) < 2 * self.stride:
            raise ValueError(f"images must be at least {2 * self.stride} px on each side, got {tuple(fixed.shape[2:])}")
        fixed, _ = pad_to_multiple(fixed, self.stride)
        moving, _ = pad_to_multiple(moving, self.stride)
        spatial = fixed.shape[2:]
        size = float(max(spatial))
        cells = self.cell_centres(spatial, fixed.device, fixed.dtype)
        fixed_valid, moving_valid = self.field_of_view(fixed), self.field_of_view(moving)
        descriptors = F.normalize(self.encoder(torch.cat([fixed, moving], dim=0)), dim=1).flatten(2)
        descriptors_f, descriptors_m = descriptors.split(fixed.shape[0], dim=0)
        # logits[i, j] = <f_i, m_j> / T + a_i + b_j, with a_i = -1e4 outside the fixed and b_j
        # = -1e4 outside the moving field of view, in one product (two extra channels): the
        # row softmax ignores a_i and drops invalid moving cells, the column softmax the reverse
        temperature = self.log_temperature.exp().clamp(min=0.01)
        ones = torch.ones_like(fixed_valid).unsqueeze(1)
        extended_f = torch.cat([descriptors_f / temperature, ones, -1e4 * (1 - fixed_valid).unsqueeze(1)], dim=1)
        extended_m = torch.cat([descriptors_m, -1e4 * (1 - moving_valid).unsqueeze(1), ones], dim=1)
        logits = torch.einsum("bcn,bcm->bnm", extended_f, extended_m)
        probs = logits.softmax(-1)
        log_probs = logits.log_softmax(-1) if torch.is_grad_enabled() else None  # for the training loss only
        mutual = probs * logits.softmax(1)  # dual softmax
        mass = mutual.sum(-1)
        coarse_targets = (mutual @ cells) / mass.clamp(min=1e-6).unsqueeze(-1)
        confidence = fixed_valid * mass
        coarse = self.fit(cells, coarse_targets, confidence, size)
        matrix = coarse
        if self.window > 0:
            # the fine pass looks only at the (2 window + 1)^2 moving cells around where the
            # coarse affine puts each fixed cell (gathered: cheaper than masking all N x M)
            predicted = cells @ coarse[:, :, :2].transpose(1, 2) + coarse[:, :, 2].unsqueeze(1)  # (B, N, 2)
            shape = [n // self.stride for n in spatial]
            centre = torch.round((predicted - (self.stride - 1) / 2) / self.stride).long()  # (B, N, 2) cell index
            offsets = torch.arange(-self.window, self.window + 1, device=fixed.device)
            ix = (centre[..., 0:1] + offsets).unsqueeze(-1)  # (B, N, K1, 1)
            iy = (centre[..., 1:2] + offsets).unsqueeze(-2)  # (B, N, 1, K1)
            inside = ((ix >= 0) & (ix < shape[0]) & (iy >= 0) & (iy < shape[1])).flatten(2)  # (B, N, K)
            index = (ix.clamp(0, shape[0] - 1) * shape[1] + iy.clamp(0, shape[1] - 1)).flatten(2)
            usable = inside & (torch.gather(moving_valid, 1, index.flatten(1)).view_as(index) > 0.5)
            local_logits = torch.gather(logits, 2, index).masked_fill(~usable, -1e4)  # a row's constant cancels
            local = local_logits.softmax(-1)  # (B, N, K)
            fine_targets = (local.unsqueeze(-1) * cells[index]).sum(2)
            fine_weights = confidence * (torch.gather(probs, 2, index) * usable).sum(-1)
            matrix = self.fit(cells, fine_targets, fine_weights, size)
        return AffineEstimate(matrix, coarse, log_probs, cells, fixed_valid, moving_valid)

    def predict_affine(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """(B, 2, 3) affine on pixel index coordinates: fixed ``p`` → moving ``A[:, :, :2] p + A[:, :, 2]``."""
        return self.estimate(moving, fixed).matrix

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ddf = affine_to_ddf(self.predict_affine(moving, fixed), moving.shape[2:])
        return self.warp(moving, ddf), ddf


class CascadeNet(nn.Module):
    """The affine network, then VoxelMorph on the affinely aligned pair.

    The composed map is ``p -> A(p + u(p))`` (``A`` affine, ``u`` the VoxelMorph DDF on the
    affinely warped moving image), whose DDF is ``ddf_A(p) + L u(p)`` with ``L`` the
    linear part of ``A``; the moving image is warped once with it.
    """

    def __init__(self, affine: nn.Module | None = None, deformable: VoxelMorphNet | None = None) -> None:
        super().__init__()
        self.affine = affine or MatchingAffineNet()
        self.deformable = deformable or VoxelMorphNet(spatial_dims=2, in_channels=self.affine.in_channels, half_res=True)
        self.spatial_dims = 2
        self.in_channels = self.affine.in_channels
        self.warp = make_warp()

    def compose(self, matrix: torch.Tensor, ddf: torch.Tensor) -> torch.Tensor:
        """DDF of ``p -> A(p + u(p))`` for affines (B, 2, 3) and DDFs (B, 2, *spatial)."""
        linear_u = torch.einsum("bij,bj...->bi...", matrix[:, :, :2], ddf)
        return affine_to_ddf(matrix, ddf.shape[2:]) + linear_u

    def predict_ddf(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """The composed DDF (B, 2, *spatial), pixels, mapping the fixed grid into the moving image."""
        matrix = self.affine.predict_affine(moving, fixed)
        aligned = self.warp(moving, affine_to_ddf(matrix, moving.shape[2:]))
        return self.compose(matrix, self.deformable.predict_ddf(aligned, fixed))

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ddf = self.predict_ddf(moving, fixed)
        return self.warp(moving, ddf), ddf


def build_network(model: str, estimator: str = "matching", **kwargs) -> nn.Module:
    """A network by name: ``voxelmorph``, ``affine`` or ``cascade``.

    Args:
        model: the model type.
        estimator: the affine stage of ``affine`` and ``cascade``: ``matching``
            (:class:`MatchingAffineNet`) or ``regression`` (:class:`AffineNet`).
        kwargs: passed to the network (VoxelMorph's for ``voxelmorph``).

    Raises:
        ValueError: for an unknown name or estimator, listing the valid ones.
    """
    if model not in MODEL_TYPES:
        raise ValueError(f"unknown model {model!r}; choose one of {list(MODEL_TYPES)}")
    if model == "voxelmorph":
        return VoxelMorphNet(**kwargs)
    if estimator not in AFFINE_ESTIMATORS:
        raise ValueError(f"unknown affine estimator {estimator!r}; choose one of {list(AFFINE_ESTIMATORS)}")
    affine = (MatchingAffineNet if estimator == "matching" else AffineNet)(**kwargs)
    if model == "affine":
        return affine
    return CascadeNet(affine, VoxelMorphNet(spatial_dims=2, in_channels=affine.in_channels, half_res=True))
