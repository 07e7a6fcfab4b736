"""MONAI dictionary transforms for FIRE image pairs; control points follow every spatial step.

A data dictionary holds (see :mod:`firereg.transforms.datasets` for how it is built):

- ``fixed``, ``moving``: image paths, then MONAI ``MetaTensor`` images (C, W, H) in the
  ``XY`` layout of :mod:`firereg.transforms.coords` (``PILReader``);
- ``mask``: path of the FIRE field-of-view mask (``Masks/mask.png``) or None (or the mask
  itself, a row-major (H, W) array, for pairs made in memory: :mod:`firereg.transforms.generated_pairs`);
- ``fixed_mask``, ``moving_mask``: (1, W, H) float 0/1 field-of-view masks;
- ``fixed_points``, ``moving_points``: control points, ``(x, y)`` pixels. They enter as
  (N, 2) arrays in full-resolution pixels and leave as MONAI points (1, N, 2) in pixels
  of the transformed (working-size) image.

How points follow: every MONAI spatial transform (``Resized``, ``RandAffined``,
``RandFlipd``, ...) updates the image's index-to-world ``affine``. Points are moved into
world coordinates with the loaded image's affine at the start and back into index
coordinates with the final image's affine at the end (``ApplyTransformToPointsd``), so
any spatial transform in between is followed without further code.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    ApplyTransformToPointsd,
    Compose,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandomizableTransform,
    RandScaleIntensityd,
    Resized,
    ScaleIntensityd,
    Transform,
)

from firereg.transforms.channels import (
    CHANNEL_INDEX,
    CHANNELS,
    LUMINANCE_WEIGHTS,
    check_channel,
)
from firereg.transforms.coords import to_monai_points, xy_to_yx, yx_to_xy
from firereg.transforms.fov import field_of_view, read_mask

__all__ = [
    "FIXED",
    "MOVING",
    "FIXED_MASK",
    "MOVING_MASK",
    "FIXED_POINTS",
    "MOVING_POINTS",
    "MASK_PATH",
    "CHANNELS",  # re-exported from firereg.transforms.channels
    "SelectChannel",
    "SelectChanneld",
    "FieldOfViewMaskd",
    "AsPointsd",
    "RandSelfPaird",
    "PairTransformConfig",
    "pair_transforms",
    "manifest_to_dicts",
]

FIXED, MOVING = "fixed", "moving"
FIXED_MASK, MOVING_MASK = "fixed_mask", "moving_mask"
FIXED_POINTS, MOVING_POINTS = "fixed_points", "moving_points"
MASK_PATH = "mask"
IMAGES = (FIXED, MOVING)
MASKS = (FIXED_MASK, MOVING_MASK)
POINTS = (FIXED_POINTS, MOVING_POINTS)


class SelectChannel(Transform):
    """Reduce a channel-first RGB image (3, ...) to one channel (1, ...).

    The channel-first twin of :func:`firereg.transforms.channels.select_channel` (same table).

    Args:
        channel: ``"green"`` (the usual for fundus: vessels have the best contrast),
            ``"luminance"`` (BT.601 luma), ``"red"`` or ``"blue"``.
    """

    def __init__(self, channel: str = "green") -> None:
        self.channel = check_channel(channel)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim < 3 or img.shape[0] not in (1, 3, 4):
            raise ValueError(f"expected a channel-first image (1, 3 or 4 channels), got shape {tuple(img.shape)}")
        if img.shape[0] == 1:
            return img
        if self.channel == "luminance":
            weights = torch.as_tensor(LUMINANCE_WEIGHTS, dtype=torch.float32).view(3, *([1] * (img.ndim - 1)))
            return (img[:3].float() * weights).sum(dim=0, keepdim=True)
        index = CHANNEL_INDEX[self.channel]
        return img[index : index + 1]


class SelectChanneld(MapTransform):
    """Dictionary version of :class:`SelectChannel`."""

    def __init__(self, keys: KeysCollection, channel: str = "green", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.selector = SelectChannel(channel)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.selector(d[key])
        return d


class FieldOfViewMaskd(MapTransform):
    """Add a field-of-view mask for each image: FIRE's mask file if given, else estimated.

    The rule is :func:`firereg.transforms.fov.field_of_view` (without erosion). The mask is
    a (1, W, H) float32 ``MetaTensor`` (``XY`` layout) carrying the image's affine and
    metadata, so the spatial transforms that follow treat it like its image.

    Args:
        keys: image keys (channel-first MetaTensors in the ``XY`` layout).
        mask_keys: output keys, one per image key.
        mask_path_key: key of the mask file path (None or missing → estimate), or of the
            mask itself, a row-major (H, W) array (non-zero inside) shared by both images.
    """

    def __init__(
        self,
        keys: KeysCollection = IMAGES,
        mask_keys: Sequence[str] = MASKS,
        mask_path_key: str = MASK_PATH,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(mask_keys) != len(self.keys):
            raise ValueError(f"need one mask key per image key, got {list(mask_keys)} for {list(self.keys)}")
        self.mask_keys = tuple(mask_keys)
        self.mask_path_key = mask_path_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        mask_path = d.get(self.mask_path_key)
        has_file = mask_path is not None and not (isinstance(mask_path, float) and np.isnan(mask_path))
        for key, mask_key in self.key_iterator(d, self.mask_keys):
            img = d[key]
            image_yx = xy_to_yx(img)  # (H, W, C)
            given = None if not has_file else (
                mask_path if isinstance(mask_path, np.ndarray) else read_mask(mask_path))
            if given is not None and given.shape != image_yx.shape[:2]:
                raise ValueError(
                    f"mask {'(array)' if isinstance(mask_path, np.ndarray) else mask_path} is "
                    f"{given.shape[1]}x{given.shape[0]} (width x height) but image "
                    f"{key!r} is {image_yx.shape[1]}x{image_yx.shape[0]}"
                )
            mask_xy = yx_to_xy(field_of_view(image_yx, given))  # (1, W, H)
            meta = dict(img.meta) if isinstance(img, MetaTensor) else {}  # carries the image's affine
            d[mask_key] = MetaTensor(torch.as_tensor(mask_xy, dtype=torch.float32), meta=meta)
        return d


class AsPointsd(MapTransform):
    """Turn (N, 2) ``(x, y)`` point arrays into MONAI points (1, N, 2) float64 tensors."""

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = to_monai_points(np.asarray(d[key]))
        return d


class RandSelfPaird(RandomizableTransform, MapTransform):
    """Self-supervised pair: replace a pair by one of its images and a large random affine of it.

    With probability ``prob`` the fixed or the moving image (chosen at random), with its
    mask and control points, becomes the new fixed image, and a copy of it warped by a
    random rotation, shift and scale (MONAI ``RandAffined``) the new moving image. The
    control points are copied too and follow the warp like every other spatial step (this
    transform runs while points are in world coordinates), so the pair's ground truth is
    exact. Large shifts give little overlap, as in FIRE's P pairs, which is what a network
    cannot learn from a handful of real pairs. Sets ``synthetic`` (bool) in the dictionary.

    Args:
        prob: probability of replacing the pair.
        size: working size in pixels (shifts are a share of it).
        rotate_deg: maximum rotation, degrees.
        translate_fraction: maximum shift along each axis, share of ``size``.
        scale: maximum relative scale change.
    """

    def __init__(self, prob: float, size: int, rotate_deg: float, translate_fraction: float, scale: float) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys=IMAGES)
        shift = translate_fraction * size
        self.affine = RandAffined(
            keys=(MOVING, MOVING_MASK),
            prob=1.0,
            rotate_range=np.deg2rad(rotate_deg),
            translate_range=(shift, shift),
            scale_range=(scale, scale),
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> "RandSelfPaird":
        super().set_random_state(seed, state)
        self.affine.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize(None)
        d["synthetic"] = bool(self._do_transform)
        if not self._do_transform:
            return d
        source = 0 if self.R.rand() < 0.5 else 1
        for slot in range(2):  # both slots get copies of the source image, mask and points
            for keys in (IMAGES, MASKS, POINTS):
                value = data[keys[source]]
                d[keys[slot]] = value.clone() if isinstance(value, torch.Tensor) else np.array(value, copy=True)
        return self.affine(d)


@dataclass
class PairTransformConfig:
    """Settings of the pair pipeline.

    Attributes:
        size: working size in pixels; images are resized to ``size`` x ``size``.
        channel: channel to keep (see :class:`SelectChannel`).
        augment: add random augmentation (for training).
        rotate_deg: maximum rotation of the moving image, degrees.
        translate_fraction: maximum shift of the moving image, share of ``size``.
        scale: maximum relative scale change of the moving image.
        flip_prob: probability of flipping both images of the pair left-right.
        affine_prob: probability of the random affine of the moving image.
        self_pair_prob: probability that a pair is replaced by a self-supervised pair
            (:class:`RandSelfPaird`: one of its images against a large random affine of it).
        self_pair_rotate_deg, self_pair_translate_fraction, self_pair_scale: the ranges of
            that affine (degrees, share of ``size``, relative scale).
        intensity: add independent random gamma, gain and noise to each image.
    """

    size: int = 512
    channel: str = "green"
    augment: bool = False
    rotate_deg: float = 10.0
    translate_fraction: float = 0.05
    scale: float = 0.05
    flip_prob: float = 0.5
    affine_prob: float = 0.8
    self_pair_prob: float = 0.0
    self_pair_rotate_deg: float = 20.0
    self_pair_translate_fraction: float = 0.35
    self_pair_scale: float = 0.1
    intensity: bool = False


def pair_transforms(config: PairTransformConfig | None = None, load: bool = True) -> Compose:
    """The MONAI pipeline for a FIRE pair dictionary (see the module docstring).

    Deterministic steps come first so ``CacheDataset`` caches them; random augmentation
    (a random affine of the moving image, a shared left-right flip) comes last, followed
    by the conversion of points into the final pixel grid.

    Args:
        config: the pipeline's settings.
        load: start by reading the images from their paths (``LoadImaged``); False for
            dictionaries whose images are loaded already: (C, W, H) ``MetaTensor`` images
            as ``LoadImaged`` gives them (:mod:`firereg.transforms.generated_pairs`).
    """
    config = config or PairTransformConfig()
    if config.size < 16:
        raise ValueError(f"working size must be at least 16 px, got {config.size}")
    loading = [LoadImaged(keys=IMAGES, reader="PILReader", ensure_channel_first=True, image_only=True)] if load else []
    steps: list = loading + [
        EnsureTyped(keys=IMAGES, dtype=torch.float32, track_meta=True),
        FieldOfViewMaskd(keys=IMAGES, mask_keys=MASKS, mask_path_key=MASK_PATH),
        SelectChanneld(keys=IMAGES, channel=config.channel),
        AsPointsd(keys=POINTS),
        # full-resolution pixel points → world coordinates of each image
        ApplyTransformToPointsd(keys=FIXED_POINTS, refer_keys=FIXED, invert_affine=False),
        ApplyTransformToPointsd(keys=MOVING_POINTS, refer_keys=MOVING, invert_affine=False),
        Resized(keys=IMAGES, spatial_size=(config.size, config.size), mode="area"),
        Resized(keys=MASKS, spatial_size=(config.size, config.size), mode="nearest"),
        ScaleIntensityd(keys=IMAGES, minv=0.0, maxv=1.0),
    ]
    if config.augment:
        shift = config.translate_fraction * config.size
        if config.self_pair_prob > 0:
            steps.append(
                RandSelfPaird(config.self_pair_prob, config.size, config.self_pair_rotate_deg,
                              config.self_pair_translate_fraction, config.self_pair_scale)
            )
        steps += [
            RandAffined(
                keys=(MOVING, MOVING_MASK),
                prob=config.affine_prob,
                rotate_range=np.deg2rad(config.rotate_deg),
                translate_range=(shift, shift),
                scale_range=(config.scale, config.scale),
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            RandFlipd(keys=IMAGES + MASKS, prob=config.flip_prob, spatial_axis=0),
        ]
        if config.intensity:  # each image its own draw, so the two differ as two photographs do
            for key in IMAGES:
                steps += [
                    RandAdjustContrastd(keys=key, prob=0.8, gamma=(0.7, 1.4)),
                    RandScaleIntensityd(keys=key, prob=0.8, factors=0.2),
                    RandGaussianNoised(keys=key, prob=0.5, std=0.02),
                ]
    steps += [
        # world coordinates → pixels of the final (working-size, augmented) grid
        ApplyTransformToPointsd(keys=FIXED_POINTS, refer_keys=FIXED, invert_affine=True),
        ApplyTransformToPointsd(keys=MOVING_POINTS, refer_keys=MOVING, invert_affine=True),
    ]
    return Compose(steps)


def manifest_to_dicts(manifest: pd.DataFrame) -> list[dict]:
    """Data dictionaries (one per pair) from a :func:`firereg.transforms.fire_reader.read_fire` manifest.

    Raises:
        FileNotFoundError: naming the first image or mask file that does not exist.
    """
    for column in (FIXED, MOVING, MASK_PATH):
        for value in manifest[column]:
            if value is not None and not Path(value).is_file():
                raise FileNotFoundError(f"{column} file not found: {value}")
    return [
        {
            "name": row.name,
            "category": row.category,
            FIXED: row.fixed,
            MOVING: row.moving,
            MASK_PATH: row.mask,
            FIXED_POINTS: np.asarray(row.fixed_points, dtype=np.float64),
            MOVING_POINTS: np.asarray(row.moving_points, dtype=np.float64),
        }
        for row in manifest.itertuples(index=False)
    ]

