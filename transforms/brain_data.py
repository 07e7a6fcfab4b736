"""Brain MRI data for registration: the MNI152 template, a T2-like contrast and known deformations.

The embedded default is the MNI152 (ICBM 2009a symmetric, skull-stripped) T1 template and
its grey- and white-matter probability maps that ship inside nilearn
(``nilearn.datasets.load_mni152_template``, ``load_mni152_gm_template``,
``load_mni152_wm_template`` at their native 1 mm — these read files inside the nilearn
package; nothing is downloaded). From them:

- **CSF** probability = ``(1 - GM - WM)`` clipped to [0, 1] inside the skull-stripped head
  (T1 > 0): ventricles and sulci;
- **T1** = the template scaled to [0, 1] (WM > GM > CSF);
- **T2-like** = ``1.0 CSF + 0.6 GM + 0.3 WM`` (CSF bright, GM > WM), a second modality with
  the same anatomy for multi-modal (mutual information) registration;
- **tissue labels**: 0 background, 1 CSF, 2 GM, 3 WM (the most probable tissue where the
  three probabilities sum to > 0.5).

Everything is cropped to the head (plus a margin) and block-averaged to ``spacing_mm``
(an integer factor of 1 mm), so the affine stays exact: the new voxel ``i`` is the mean of
1 mm voxels ``s i + o .. s i + o + s - 1``, centred at ``s i + o + (s - 1) / 2``.
2D data are one axial slice (:meth:`BrainTemplate.axial_slice`).

Known deformations (:func:`random_smooth_ddf`): Gaussian random displacements on a coarse
grid of control points (``control_mm`` apart), interpolated and Gaussian-smoothed, scaled so
that the largest displacement is ``amplitude_mm`` times a random factor in [0.5, 1]. A pair
(:func:`synthetic_pairs`) deforms the template twice, ``fixed = T ∘ φ_a`` and
``moving = T' ∘ φ_b`` (``T'`` the moving modality), with ``φ_a = φ_b ∘ φ_u`` for a random
``u``: the true fixed → moving field is exactly ``u`` and ``moving(p + u(p)) = fixed(p)``
up to modality and noise. Neither image is the undeformed template.

Arrays are NIfTI voxel order: ``(i, j[, k])`` = axes of the affine; fields are MONAI DDFs
``(B, D, *spatial)`` in voxels, channel ``n`` along array axis ``n``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import Warp

__all__ = [
    "TISSUES",
    "TISSUE_LABELS",
    "MODALITIES",
    "MNI152_SOURCE",
    "BrainTemplate",
    "load_mni152",
    "tissue_labels",
    "t2_like",
    "normalize_minmax",
    "random_smooth_ddf",
    "smooth_field",
    "compose_ddf",
    "warp",
    "SyntheticPairs",
    "synthetic_pairs",
]

TISSUES = ("csf", "gm", "wm")
#: label value of each tissue in the label maps (0 = background)
TISSUE_LABELS = {"csf": 1, "gm": 2, "wm": 3}
MODALITIES = ("t1", "t2")
#: weights of the T2-like contrast per tissue (CSF bright, GM > WM)
T2_WEIGHTS = {"csf": 1.0, "gm": 0.6, "wm": 0.3}
MNI152_SOURCE = (
    "MNI152 ICBM2009a T1 template + GM/WM maps bundled with nilearn (embedded default; "
    "CSF = 1-GM-WM inside the head; T2-like = 1.0 CSF + 0.6 GM + 0.3 WM)"
)


@dataclass(frozen=True)
class BrainTemplate:
    """A brain image set on one voxel grid.

    Attributes:
        t1: float32 (*spatial) in [0, 1].
        t2: float32 (*spatial) in [0, 1], the T2-like contrast.
        tissue: float32 (3, *spatial) probabilities of CSF, GM, WM.
        mask: bool (*spatial), inside the head (skull-stripped template > 0).
        affine: (4, 4) voxel → world (mm, RAS+). For 2D data it maps ``(i, j, 0)``.
        source: where the data come from.
    """

    t1: np.ndarray
    t2: np.ndarray
    tissue: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    source: str

    @property
    def dims(self) -> int:
        return self.t1.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.t1.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size (mm) along each array axis."""
        return tuple(float(np.linalg.norm(self.affine[:3, n])) for n in range(self.dims))

    def image(self, modality: str) -> np.ndarray:
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; choose one of {list(MODALITIES)}")
        return self.t1 if modality == "t1" else self.t2

    def labels(self) -> np.ndarray:
        """uint8 label map: 0 background, 1 CSF, 2 GM, 3 WM."""
        return tissue_labels(self.tissue)

    def axial_slice(self, z_mm: float = 16.0, offset: int = 0) -> "BrainTemplate":
        """The 2D axial slice nearest world ``z = z_mm`` (plus ``offset`` voxels) of a 3D template.

        Raises:
            ValueError: for a 2D template, a non-axial affine or a slice outside the volume.
        """
        if self.dims != 3:
            raise ValueError(f"axial_slice needs a 3D template, got shape {self.shape}")
        if not np.allclose(self.affine[2, :2], 0) or not np.allclose(self.affine[:2, 2], 0):
            raise ValueError("axial_slice needs an affine whose third axis is world z")
        k = int(round((z_mm - self.affine[2, 3]) / self.affine[2, 2])) + int(offset)
        if not 0 <= k < self.shape[2]:
            raise ValueError(f"slice z = {z_mm} mm (+{offset}) is index {k}, outside 0..{self.shape[2] - 1}")
        shift = np.eye(4)
        shift[2, 3] = k
        return BrainTemplate(
            t1=self.t1[:, :, k].copy(),
            t2=self.t2[:, :, k].copy(),
            tissue=self.tissue[:, :, :, k].copy(),
            mask=self.mask[:, :, k].copy(),
            affine=self.affine @ shift,
            source=f"{self.source}; axial slice k={k} (z = {float((self.affine @ shift)[2, 3]):.1f} mm)",
        )


def tissue_labels(tissue: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Label map from (3, *spatial) CSF/GM/WM probabilities: argmax + 1 where their sum > ``threshold``."""
    t = np.asarray(tissue)
    if t.shape[0] != 3:
        raise ValueError(f"tissue must be (3, *spatial) CSF/GM/WM probabilities, got {t.shape}")
    labels = (np.argmax(t, axis=0) + 1).astype(np.uint8)
    labels[t.sum(axis=0) <= threshold] = 0
    return labels


def t2_like(tissue: np.ndarray) -> np.ndarray:
    """T2-like image ``1.0 CSF + 0.6 GM + 0.3 WM`` from (3, *spatial) probabilities."""
    w = np.array([T2_WEIGHTS[t] for t in TISSUES], dtype=np.float32).reshape(3, *([1] * (tissue.ndim - 1)))
    return np.clip((np.asarray(tissue, dtype=np.float32) * w).sum(axis=0), 0.0, 1.0)


def normalize_minmax(x: torch.Tensor) -> torch.Tensor:
    """Scale each image of a batch (B, C, *spatial) to [0, 1] (min-max; flat images → 0)."""
    flat = x.reshape(x.shape[0], -1)
    lo = flat.amin(dim=1).view(-1, *([1] * (x.ndim - 1)))
    hi = flat.amax(dim=1).view(-1, *([1] * (x.ndim - 1)))
    return (x - lo) / (hi - lo).clamp_min(1e-8)


@functools.lru_cache(maxsize=1)
def _mni152_1mm() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(T1, GM, WM) float32 arrays at 1 mm and the affine, read from nilearn's package files."""
    from nilearn.datasets import (
        load_mni152_gm_template,
        load_mni152_template,
        load_mni152_wm_template,
    )

    # resolution None = the native 1 mm files inside the package, scaled to [0, 1]; no resampling, no download
    t1 = load_mni152_template()
    gm, wm = load_mni152_gm_template(), load_mni152_wm_template()
    arrays = [np.asarray(img.dataobj, dtype=np.float32) for img in (t1, gm, wm)]
    for img in (gm, wm):
        if not np.allclose(img.affine, t1.affine) or img.shape != t1.shape:
            raise RuntimeError("nilearn's MNI152 tissue maps do not share the T1 template's grid")
    return arrays[0], arrays[1], arrays[2], np.asarray(t1.affine, dtype=np.float64)


@functools.lru_cache(maxsize=4)
def _load_mni152_cached(spacing_mm: int, margin_mm: int) -> BrainTemplate:
    t1, gm, wm, affine = _mni152_1mm()
    head = t1 > 0
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0) * head
    s, m = spacing_mm, margin_mm
    idx = np.nonzero(head)
    lo = [max(int(i.min()) - m, 0) for i in idx]
    hi = [int(i.max()) + 1 + m for i in idx]
    sizes = [-(-(h - l) // s) * s for l, h in zip(lo, hi)]  # multiple of s

    def crop(a: np.ndarray) -> np.ndarray:
        out = np.zeros(sizes, np.float32)
        src = a[lo[0] : lo[0] + sizes[0], lo[1] : lo[1] + sizes[1], lo[2] : lo[2] + sizes[2]]
        out[: src.shape[0], : src.shape[1], : src.shape[2]] = src
        return out

    stack = torch.as_tensor(np.stack([crop(a) for a in (t1, csf, gm, wm, head.astype(np.float32))]))
    pooled = F.avg_pool3d(stack.unsqueeze(0), kernel_size=s, stride=s)[0].numpy() if s > 1 else stack.numpy()
    t1_s, tissue, head_s = pooled[0], pooled[1:4], pooled[4]
    scale = np.diag([s, s, s, 1.0])
    scale[:3, 3] = [l + (s - 1) / 2 for l in lo]
    t1_s = np.clip(t1_s / max(float(t1_s.max()), 1e-8), 0, 1).astype(np.float32)
    return BrainTemplate(
        t1=t1_s,
        t2=t2_like(tissue),
        tissue=np.clip(tissue, 0, 1).astype(np.float32),
        mask=head_s > 0.5,
        affine=affine @ scale,
        source=f"{MNI152_SOURCE}; block-averaged to {s} mm",
    )


def load_mni152(spacing_mm: int = 3, margin_mm: int = 4) -> BrainTemplate:
    """The embedded MNI152 template set (T1, T2-like, tissue maps, head mask) at ``spacing_mm``.

    Args:
        spacing_mm: voxel size, an integer number of mm (block averaging of the 1 mm files).
        margin_mm: margin kept around the head when cropping.

    Returns:
        A 3D :class:`BrainTemplate` (cached: treat its arrays as read-only).

    Raises:
        ValueError: for a spacing that is not a positive integer.
    """
    if int(spacing_mm) != spacing_mm or spacing_mm < 1:
        raise ValueError(f"spacing_mm must be a positive integer (mm), got {spacing_mm}")
    return _load_mni152_cached(int(spacing_mm), int(margin_mm))


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def smooth_field(x: torch.Tensor, sigmas: tuple[float, ...]) -> torch.Tensor:
    """Separable Gaussian smoothing of (B, C, *spatial) (replicate padding); sigma in voxels per axis."""
    dims = x.ndim - 2
    conv = F.conv2d if dims == 2 else F.conv3d
    b, c = x.shape[:2]
    y = x.reshape(b * c, 1, *x.shape[2:])
    for axis, sigma in enumerate(sigmas):
        if sigma <= 0:
            continue
        k = _gaussian_kernel(sigma)
        shape = [1, 1] + [1] * dims
        shape[2 + axis] = len(k)
        pad = [0, 0] * dims
        pad[2 * (dims - 1 - axis)] = pad[2 * (dims - 1 - axis) + 1] = len(k) // 2
        y = conv(F.pad(y, pad, mode="replicate"), k.view(shape))
    return y.reshape(b, c, *x.shape[2:])


def random_smooth_ddf(
    shape: tuple[int, ...],
    spacing_mm: tuple[float, ...] | float,
    batch: int = 1,
    amplitude_mm: float = 10.0,
    control_mm: float = 40.0,
    generator: torch.Generator | None = None,
    min_scale: float = 0.5,
) -> torch.Tensor:
    """Random smooth displacement fields (B, D, *shape) in VOXELS (channel n along axis n).

    Gaussian random vectors on a grid of control points ``control_mm`` apart are upsampled
    (bicubic in 2D, trilinear in 3D) and smoothed (sigma ``control_mm / 4``); each field is
    then scaled so its largest displacement is ``amplitude_mm * U(min_scale, 1)`` mm.
    """
    dims = len(shape)
    spacing = (float(spacing_mm),) * dims if np.isscalar(spacing_mm) else tuple(float(s) for s in spacing_mm)
    coarse = [max(2, int(np.ceil(n * s / control_mm)) + 1) for n, s in zip(shape, spacing)]
    noise = torch.randn(batch, dims, *coarse, generator=generator)
    mode = "bicubic" if dims == 2 else "trilinear"
    # smooth on a grid 4x coarser than the image (the field is far smoother than that), then upsample
    work = tuple(max(c, -(-n // 4)) for c, n in zip(coarse, shape))
    work_spacing = tuple(s * (n - 1) / max(w - 1, 1) for s, n, w in zip(spacing, shape, work))
    field = F.interpolate(noise, size=work, mode=mode, align_corners=True)
    field = smooth_field(field, tuple(control_mm / 4 / s for s in work_spacing))
    field = F.interpolate(field, size=tuple(shape), mode=mode, align_corners=True)
    mm = field * torch.as_tensor(spacing, dtype=field.dtype).view(1, dims, *([1] * dims))
    peak = mm.norm(dim=1).reshape(batch, -1).amax(dim=1).clamp_min(1e-8)
    scale = amplitude_mm * (min_scale + (1 - min_scale) * torch.rand(batch, generator=generator)) / peak
    return field * scale.view(batch, *([1] * (dims + 1)))


_WARPS: dict[tuple[str, str], Warp] = {}


def warp(image: torch.Tensor, ddf: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros") -> torch.Tensor:
    """MONAI ``Warp``: ``image(p + ddf(p))`` for (B, C, *spatial) images and (B, D, *spatial) voxel DDFs."""
    key = (mode, padding_mode)
    if key not in _WARPS:
        _WARPS[key] = Warp(mode=mode, padding_mode=padding_mode)
    return _WARPS[key](image, ddf)


def compose_ddf(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """DDF of ``p → φ_second(φ_first(p))``: ``first(p) + second(p + first(p))`` (voxels)."""
    return first + warp(second, first, padding_mode="border")


@dataclass
class SyntheticPairs:
    """A batch of synthetic registration pairs with their ground truth (torch tensors).

    Attributes:
        fixed, moving: (B, 1, *spatial) images in [0, 1] (min-max normalised, with noise).
        true_ddf: (B, D, *spatial) true fixed → moving field, voxels: ``moving(p + u) = fixed(p)``.
        fixed_tissue, moving_tissue: (B, 3, *spatial) CSF/GM/WM probabilities.
        fixed_mask: (B, 1, *spatial) bool, inside the head in the fixed image.
    """

    fixed: torch.Tensor
    moving: torch.Tensor
    true_ddf: torch.Tensor
    fixed_tissue: torch.Tensor
    moving_tissue: torch.Tensor
    fixed_mask: torch.Tensor


def synthetic_pairs(
    template: BrainTemplate,
    batch: int,
    fixed_modality: str = "t1",
    moving_modality: str = "t1",
    amplitude_mm: float = 10.0,
    control_mm: float = 40.0,
    noise: float = 0.02,
    generator: torch.Generator | None = None,
    with_tissue: bool = True,
) -> SyntheticPairs:
    """``batch`` pairs ``fixed = T_f ∘ φ_a``, ``moving = T_m ∘ φ_b`` whose true field ``u`` is known.

    ``u`` and ``b`` are drawn by :func:`random_smooth_ddf` and ``φ_a = φ_b ∘ φ_u``
    (:func:`compose_ddf`), so ``moving(p + u(p)) = T_m(φ_b(φ_u(p))) = T_m(φ_a(p))``: the
    moving image sampled along the true field is the fixed image in the moving modality,
    with no inversion needed. Noise (Gaussian, ``noise`` of the [0, 1] range) is added to
    each image before min-max normalisation. ``with_tissue=False`` skips the tissue maps
    and mask (training needs only the images); they are then None.
    """
    shape, spacing = template.shape, template.spacing
    u = random_smooth_ddf(shape, spacing, batch, amplitude_mm, control_mm, generator)
    b = random_smooth_ddf(shape, spacing, batch, amplitude_mm, control_mm, generator)
    a = compose_ddf(u, b)  # p → φ_b(φ_u(p))

    def expand(arr: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(arr, dtype=np.float32))
        t = t.unsqueeze(0) if t.ndim == len(shape) else t
        return t.unsqueeze(0).expand(batch, *t.shape)

    def noisy(img: torch.Tensor) -> torch.Tensor:
        if noise > 0:
            img = img + noise * torch.randn(img.shape, generator=generator)
        return normalize_minmax(img.clamp_min(0))

    fixed = noisy(warp(expand(template.image(fixed_modality)), a))
    moving = noisy(warp(expand(template.image(moving_modality)), b))
    if not with_tissue:
        return SyntheticPairs(fixed, moving, u, None, None, None)
    tissue = expand(template.tissue)
    return SyntheticPairs(
        fixed=fixed,
        moving=moving,
        true_ddf=u,
        fixed_tissue=warp(tissue, a),
        moving_tissue=warp(tissue, b),
        fixed_mask=warp(expand(template.mask), a) > 0.5,
    )
