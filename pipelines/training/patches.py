"""Patch mode of the affine work: square patch pairs with a known residual affine.

From each training pair (at working size ``size``, through the pair pipeline
:func:`firereg.transforms.pair_transforms.pair_transforms`) we cut ``n_per_pair`` patch pairs:

1. pick a random centre inside the fixed field of view (whose ground-truth image also
   lies inside the moving field of view) and cut the fixed patch, ``patch_size`` pixels
   square, at pixel ``origin``: fixed patch pixel ``q`` is fixed working pixel ``origin + q``;
2. the pair's ground-truth affine ``G`` (least squares on its control points,
   :func:`firereg.pipelines.nn.losses.fit_affine`, working pixels) maps fixed into moving pixels;
3. draw a random affine ``A`` on patch pixels (rotation ±15°, scale ±10 % about the patch
   centre, shift ±15 % of the patch) — the *target*;
4. resample the moving patch so that moving patch pixel ``r`` shows moving working pixel
   ``G(origin + A⁻¹ r)``. Then fixed patch pixel ``q`` and moving patch pixel ``A q`` show
   the same place (up to the non-affine part of the pair).

Coordinates are patch pixel indices ``(x, y)`` of the ``XY`` layout
(:mod:`firereg.transforms.coords`; patch tensors are (1, P, P)), the convention of
:meth:`firereg.pipelines.nn.networks.AffineNet.predict_affine`: the target ``affine`` (2, 3) maps a
fixed patch pixel ``p`` to the moving patch pixel ``affine[:, :2] @ p + affine[:, 2]``,
and ``Warp()(moving, affine_to_ddf(affine))`` aligns the moving patch with the fixed one.

Each patch pair is an ``.npz`` file: ``fixed``, ``moving``, ``fixed_mask``,
``moving_mask`` (1, P, P) float32, ``affine`` (2, 3) float32, ``name`` (the pair),
``origin`` (2,) int64 and ``pair_affine`` (2, 3) float64 (``G``, working pixels), and
``size`` (the working size). :class:`PatchDataset` reads a folder of them.
"""

from __future__ import annotations

import json
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import map_coordinates
from skimage.transform import AffineTransform
from torch.utils.data import Dataset

from firereg.pipelines.nn.losses import fit_affine
from firereg.transforms.io import atomic_output, atomic_write_text
from firereg.transforms.pair_transforms import (
    PairTransformConfig,
    manifest_to_dicts,
    pair_transforms,
)

__all__ = [
    "random_patch_affine",
    "cut_patch_pair",
    "make_patches",
    "PatchDataset",
]

def random_patch_affine(
    rng: np.random.Generator,
    patch_size: int,
    rotate_deg: float = 15.0,
    scale: float = 0.10,
    shift_fraction: float = 0.15,
) -> np.ndarray:
    """A random affine (2, 3) on patch pixels: ``A(q) = c + s R(theta) (q - c) + t``.

    ``c`` is the patch centre ``(P - 1) / 2``, ``theta`` uniform in ±``rotate_deg``, ``s``
    uniform in ``1 ± scale``, each component of ``t`` uniform in ±``shift_fraction * P``.
    """
    theta = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg))
    s = 1.0 + rng.uniform(-scale, scale)
    t = rng.uniform(-shift_fraction, shift_fraction, size=2) * patch_size
    linear = s * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = np.full(2, (patch_size - 1) / 2.0)
    return np.concatenate([linear, (centre + t - linear @ centre)[:, None]], axis=1)


def _transform(affine: np.ndarray) -> AffineTransform:
    """The (2, 3) affine as a scikit-image transform (points (N, 2) in ``(x, y)`` index order)."""
    return AffineTransform(matrix=np.vstack([np.asarray(affine, dtype=np.float64), [0.0, 0.0, 1.0]]))


def _sample(image: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    """Sample (C, W, H) at (2, P, P) index coordinates; zero outside (bilinear for order 1)."""
    return np.stack(
        [map_coordinates(channel, coords, order=order, mode="constant", cval=0.0) for channel in image]
    ).astype(np.float32)


def cut_patch_pair(
    fixed: np.ndarray,
    moving: np.ndarray,
    pair_affine: np.ndarray,
    origin: tuple[int, int],
    patch_size: int,
    target_affine: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a fixed patch and resample the matching moving patch with a known residual affine.

    Args:
        fixed: (C, W, H) fixed image, ``XY`` layout (:mod:`firereg.transforms.coords`).
        moving: (C, W', H') moving image, same layout.
        pair_affine: (2, 3) affine mapping fixed pixels ``(x, y)`` to moving pixels.
        origin: ``(x, y)`` fixed pixel of the patch's pixel (0, 0); the patch must fit.
        patch_size: ``P``.
        target_affine: (2, 3) affine ``A`` on patch pixels (fixed patch ``q`` → moving patch ``A q``).

    Returns:
        ``(fixed_patch, moving_patch)``, (C, P, P) float32; moving patch pixel ``r`` is the
        moving image (bilinear, zero outside) at ``pair_affine(origin + A⁻¹ r)``.

    Raises:
        ValueError: if the patch does not fit in the fixed image or an input has the wrong shape.
    """
    fixed, moving = np.asarray(fixed), np.asarray(moving)
    if fixed.ndim != 3 or moving.ndim != 3:
        raise ValueError(f"expected (C, W, H) images, got {fixed.shape} and {moving.shape}")
    for name, matrix in (("pair_affine", pair_affine), ("target_affine", target_affine)):
        if np.asarray(matrix).shape != (2, 3):
            raise ValueError(f"{name} must be (2, 3), got {np.asarray(matrix).shape}")
    ox, oy = int(origin[0]), int(origin[1])
    w, h = fixed.shape[1:]
    if not (0 <= ox and 0 <= oy and ox + patch_size <= w and oy + patch_size <= h):
        raise ValueError(f"a {patch_size} px patch at origin ({ox}, {oy}) does not fit in a {w}x{h} image")
    fixed_patch = fixed[:, ox : ox + patch_size, oy : oy + patch_size].astype(np.float32)
    grid = np.stack(np.meshgrid(np.arange(patch_size), np.arange(patch_size), indexing="ij")).astype(np.float64)
    in_fixed = _transform(target_affine).inverse(grid.reshape(2, -1).T) + np.array([ox, oy])
    in_moving = _transform(pair_affine)(in_fixed)
    return fixed_patch, _sample(moving, in_moving.T.reshape(2, patch_size, patch_size), order=1)


def _candidate_origins(
    fixed_mask: np.ndarray, moving_mask: np.ndarray, pair_affine: np.ndarray, patch_size: int
) -> np.ndarray:
    """(K, 2) origins whose patch fits, whose centre is in the fixed FOV and maps into the moving FOV."""
    w, h = fixed_mask.shape
    half = patch_size // 2
    xs, ys = np.nonzero(fixed_mask > 0.5)
    keep = (xs - half >= 0) & (ys - half >= 0) & (xs - half + patch_size <= w) & (ys - half + patch_size <= h)
    xs, ys = xs[keep], ys[keep]
    if len(xs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    mx, my = np.rint(_transform(pair_affine)(np.stack([xs, ys], axis=1).astype(np.float64))).astype(np.int64).T
    mw, mh = moving_mask.shape
    inside = (mx >= 0) & (my >= 0) & (mx < mw) & (my < mh)
    inside[inside] = moving_mask[mx[inside], my[inside]] > 0.5
    return np.stack([xs[inside] - half, ys[inside] - half], axis=1).astype(np.int64)


def _save_npz(path: Path, arrays: dict) -> Path:
    """``np.savez`` written atomically (:func:`firereg.transforms.io.atomic_output`)."""
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def _pair_patches(
    name: str,
    data: dict,
    out: Path,
    n_per_pair: int,
    patch_size: int,
    size: int,
    seed: int,
    ranges: tuple[float, float, float],
) -> list[Path]:
    """Write the patch files of one pair (``data``: its pair pipeline output); [] if it has no usable centre.

    ``ranges``: ``(rotate_deg, scale, shift_fraction)`` of :func:`random_patch_affine`.
    """
    fixed, moving = np.asarray(data["fixed"]), np.asarray(data["moving"])
    fixed_mask, moving_mask = np.asarray(data["fixed_mask"]), np.asarray(data["moving_mask"])
    try:
        pair_affine = fit_affine(
            torch.as_tensor(data["fixed_points"]).double(), torch.as_tensor(data["moving_points"]).double()
        )[0].numpy()
    except ValueError as err:
        raise ValueError(f"pair {name}: {err}") from None
    origins = _candidate_origins(fixed_mask[0], moving_mask[0], pair_affine, patch_size)
    if len(origins) == 0:
        warnings.warn(f"pair {name}: no {patch_size} px patch centre in both fields of view; skipped", stacklevel=3)
        return []
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    written = []
    for k in range(n_per_pair):
        origin = origins[rng.integers(len(origins))]
        target = random_patch_affine(rng, patch_size, *ranges)
        f_patch, m_patch = cut_patch_pair(
            np.concatenate([fixed, fixed_mask]), np.concatenate([moving, moving_mask]),
            pair_affine, origin, patch_size, target,
        )
        written.append(
            _save_npz(
                out / f"{name}_{k:03d}.npz",
                {
                    "fixed": f_patch[:1],
                    "moving": m_patch[:1],
                    "fixed_mask": (f_patch[1:] > 0.5).astype(np.float32),
                    "moving_mask": (m_patch[1:] > 0.5).astype(np.float32),
                    "affine": target.astype(np.float32),
                    "name": np.array(name),
                    "origin": origin.astype(np.int64),
                    "pair_affine": pair_affine.astype(np.float64),
                    "size": np.array(size, dtype=np.int64),
                },
            )
        )
    return written


def make_patches(
    manifest: pd.DataFrame,
    out_dir: str | Path,
    n_per_pair: int = 16,
    patch_size: int = 128,
    size: int = 512,
    seed: int = 0,
    rotate_deg: float = 15.0,
    scale: float = 0.10,
    shift_fraction: float = 0.15,
) -> list[Path]:
    """Write ``n_per_pair`` patch pairs per manifest pair into ``out_dir`` (see the module docstring).

    Patches of pair ``name`` are ``<name>_<k>.npz``; ``patches.json`` records the settings.
    Note that :class:`firereg.pipelines.nn.networks.AffineNet` with its default six stride-2 stages
    needs inputs of at least 128 px (InstanceNorm fails on a 1 x 1 map), hence the default.
    Each pair draws from its own generator seeded by ``(seed, name)``, so a pair's patches
    do not depend on which other pairs are in the manifest. A pair without a usable centre
    (no fixed FOV pixel mapping into the moving FOV) is skipped with a warning.

    Returns:
        The written patch files, in order.

    Raises:
        ValueError: for bad settings, a pair with fewer than 3 control points (naming it),
            or when no pair gave a patch.
    """
    if n_per_pair < 1:
        raise ValueError(f"n_per_pair must be >= 1, got {n_per_pair}")
    if not 8 <= patch_size <= size:
        raise ValueError(f"patch_size must be between 8 and the working size {size}, got {patch_size}")
    if len(manifest) == 0:
        raise ValueError("no pairs to cut patches from (empty manifest)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    transform = pair_transforms(PairTransformConfig(size=size))
    written: list[Path] = []
    for row in manifest_to_dicts(manifest):
        written += _pair_patches(str(row["name"]), transform(row), out, n_per_pair, patch_size, size, seed,
                                 (rotate_deg, scale, shift_fraction))
    if not written:
        raise ValueError(f"no patches written: no pair of {list(manifest['name'])} had a patch centre in both fields of view")
    settings = {
        "pairs": sorted({str(n) for n in manifest["name"]}),
        "files": len(written),
        "n_per_pair": n_per_pair,
        "patch_size": patch_size,
        "size": size,
        "seed": seed,
        "rotate_deg": rotate_deg,
        "scale": scale,
        "shift_fraction": shift_fraction,
        "convention": "affine: fixed patch pixel p=(x,y) -> moving patch pixel A[:, :2] p + A[:, 2] (PILReader index order)",
    }
    atomic_write_text(out / "patches.json", json.dumps(settings, indent=2) + "\n")
    return written


class PatchDataset(Dataset):
    """Patch pairs written by :func:`make_patches`, as dictionaries of tensors.

    Each item: ``fixed``, ``moving``, ``fixed_mask``, ``moving_mask`` (1, P, P) float32
    tensors, ``affine`` (2, 3) float32 tensor (the target), ``name`` (str, the pair).

    Args:
        folder: the folder of ``.npz`` patch files.

    Raises:
        FileNotFoundError: if ``folder`` does not exist or holds no ``.npz`` files.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"patch folder not found: {self.folder}")
        self.files = sorted(p for p in self.folder.glob("*.npz") if not p.name.startswith("."))
        if not self.files:
            raise FileNotFoundError(f"no patch files (*.npz) in {self.folder}; write them with `firereg make-patches`")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in ("fixed", "moving", "affine", "name") if k not in data.files]
                if missing:
                    raise ValueError(f"patch file {path} lacks {missing}")
                item = {key: torch.as_tensor(data[key], dtype=torch.float32) for key in ("fixed", "moving", "affine")}
                for key in ("fixed_mask", "moving_mask"):
                    if key in data.files:
                        item[key] = torch.as_tensor(data[key], dtype=torch.float32)
                item["name"] = str(data["name"])
        except ValueError:
            raise
        except Exception as err:  # a truncated or foreign file
            raise ValueError(f"cannot read patch file {path}: {err}") from None
        if item["affine"].shape != (2, 3) or item["fixed"].ndim != 3 or item["fixed"].shape != item["moving"].shape:
            raise ValueError(
                f"patch file {path}: expected (1, P, P) fixed/moving and a (2, 3) affine, got "
                f"{tuple(item['fixed'].shape)}, {tuple(item['moving'].shape)}, {tuple(item['affine'].shape)}"
            )
        return item
