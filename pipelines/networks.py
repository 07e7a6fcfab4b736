"""Registration networks from MONAI parts: VoxelMorph, an affine network, and their cascade.

Tensors are MONAI channel-first: images (B, C, *spatial); a displacement field (DDF) is
(B, D, *spatial) in pixels (voxels), channel ``i`` = displacement along spatial axis ``i``.
For 2D fundus images loaded by ``PILReader`` spatial axis 0 is x and axis 1 is y, so a DDF
channel 0 is the x displacement. Every network maps the FIXED grid into the MOVING image:
``warped(p) = moving(p + ddf(p))`` — MONAI ``Warp`` (bilinear, ``align_corners=True``).
Each ``forward(moving, fixed)`` returns ``(warped, ddf)``; the affine networks also expose
the matrix through :meth:`AffineNet.predict_affine`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import DVF2DDF, Warp
from monai.networks.nets import BasicUNet
from torch import nn

__all__ = [
    "VoxelMorphNet",
    "AffineNet",
    "CascadeNet",
    "identity_grid",
    "affine_to_ddf",
    "pad_to_multiple",
    "build_network",
    "MODEL_TYPES",
]

MODEL_TYPES = ("voxelmorph", "affine", "cascade")


def identity_grid(spatial: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """(D, *spatial) tensor of pixel index coordinates, channel ``i`` = index along axis ``i``."""
    axes = [torch.arange(n, device=device, dtype=dtype) for n in spatial]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Zero-pad the spatial dims of (B, C, *spatial) at the end up to a multiple; returns the pads.

    Padding only at the end keeps index coordinates (and so displacements) unchanged.
    """
    spatial = x.shape[2:]
    pads = [(0, (-n) % multiple) for n in spatial]
    flat: list[int] = []
    for before, after in reversed(pads):  # F.pad wants the last axis first
        flat += [before, after]
    return (F.pad(x, flat) if any(flat) else x), pads


def _crop(x: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    return x[(slice(None), slice(None), *[slice(0, n) for n in spatial])]


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
    """

    multiple = 16  # BasicUNet pools four times

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        features: Sequence[int] = (16, 32, 32, 32, 32, 16),
        integration_steps: int = 0,
    ) -> None:
        super().__init__()
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
        self.warp = Warp(mode="bilinear", padding_mode="zeros")

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
        x, _ = pad_to_multiple(torch.cat([moving, fixed], dim=1), self.multiple)
        field = _crop(self.flow(self.unet(x)), spatial)
        return self.integrate(field) if self.integrate is not None else field

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ddf = self.predict_ddf(moving, fixed)
        return self.warp(moving, ddf), ddf


def affine_to_ddf(matrix: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """DDF (B, 2, *spatial) of affines (B, 2, 3) acting on pixel index coordinates.

    ``matrix`` maps a fixed pixel ``p`` (index order, i.e. (x, y) for PILReader images) to
    ``A[:, :2] @ p + A[:, 2]`` in the moving image; the DDF is that minus ``p``.
    """
    grid = identity_grid(spatial, device=matrix.device, dtype=matrix.dtype)  # (2, *spatial)
    flat = grid.reshape(2, -1)
    mapped = torch.einsum("bij,jn->bin", matrix[:, :, :2], flat) + matrix[:, :, 2:]
    return (mapped - flat).reshape(matrix.shape[0], 2, *spatial)


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
        self.warp = Warp(mode="bilinear", padding_mode="zeros")

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


class CascadeNet(nn.Module):
    """The affine network, then VoxelMorph on the affinely aligned pair.

    The composed map is ``p -> A(p + u(p))`` (``A`` affine, ``u`` the VoxelMorph DDF on the
    affinely warped moving image), whose DDF is ``ddf_A(p) + L u(p)`` with ``L`` the
    linear part of ``A``; the moving image is warped once with it.
    """

    def __init__(self, affine: AffineNet | None = None, deformable: VoxelMorphNet | None = None) -> None:
        super().__init__()
        self.affine = affine or AffineNet()
        self.deformable = deformable or VoxelMorphNet(spatial_dims=2, in_channels=self.affine.in_channels)
        self.spatial_dims = 2
        self.in_channels = self.affine.in_channels
        self.warp = Warp(mode="bilinear", padding_mode="zeros")

    def compose(self, matrix: torch.Tensor, ddf: torch.Tensor) -> torch.Tensor:
        """DDF of ``p -> A(p + u(p))`` for affines (B, 2, 3) and DDFs (B, 2, *spatial)."""
        linear_u = torch.einsum("bij,bj...->bi...", matrix[:, :, :2], ddf)
        return affine_to_ddf(matrix, ddf.shape[2:]) + linear_u

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        matrix = self.affine.predict_affine(moving, fixed)
        aligned = self.warp(moving, affine_to_ddf(matrix, moving.shape[2:]))
        ddf = self.compose(matrix, self.deformable.predict_ddf(aligned, fixed))
        return self.warp(moving, ddf), ddf


def build_network(model: str, **kwargs) -> nn.Module:
    """A network by name: ``voxelmorph``, ``affine`` or ``cascade``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if model == "voxelmorph":
        return VoxelMorphNet(**kwargs)
    if model == "affine":
        return AffineNet(**kwargs)
    if model == "cascade":
        return CascadeNet(AffineNet(**kwargs), VoxelMorphNet(spatial_dims=2, **kwargs))
    raise ValueError(f"unknown model {model!r}; choose one of {list(MODEL_TYPES)}")
