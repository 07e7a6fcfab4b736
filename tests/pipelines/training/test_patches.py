"""Tests for firereg.pipelines.training.patches (the affine patch mode); ``firereg make-patches``: tests/cli/test_train.py."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from monai.networks.blocks import Warp
from PIL import Image
from scipy.ndimage import binary_erosion
from skimage.data import retina

from firereg.pipelines.nn.fields import affine_to_ddf
from firereg.pipelines.training.patches import (
    PatchDataset,
    cut_patch_pair,
    make_patches,
    random_patch_affine,
)
from firereg.transforms.fire_reader import read_fire

WARP = Warp(mode="bilinear", padding_mode="zeros")


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    a, b = a[mask] - a[mask].mean(), b[mask] - b[mask].mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _inverse(affine: torch.Tensor) -> torch.Tensor:
    full = torch.cat([affine, torch.tensor([[0.0, 0.0, 1.0]])])
    return torch.linalg.inv(full)[:2]


def _aligned_ncc(item: dict, affine: torch.Tensor | None) -> float:
    """NCC of the fixed patch and the moving patch warped by ``affine`` (None: unwarped), inside both FOVs."""
    fixed, moving = item["fixed"][None], item["moving"][None]
    if affine is None:
        warped, valid, warped_mask = moving, torch.ones_like(moving, dtype=torch.bool), item["moving_mask"][None]
    else:
        ddf = affine_to_ddf(affine[None], fixed.shape[2:])
        warped = WARP(moving, ddf)
        valid = WARP(torch.ones_like(moving), ddf) > 0.999
        warped_mask = WARP(item["moving_mask"][None], ddf)
    inside = valid[0, 0].numpy() & (warped_mask[0, 0].numpy() > 0.999)
    inside &= binary_erosion(item["fixed_mask"][0].numpy() > 0.5, iterations=3)  # away from the dark FOV rim
    return _ncc(warped[0, 0].numpy(), fixed[0, 0].numpy(), inside)


# ---------------------------------------------------------------- exact, synthetic


def test_cut_patch_pair_recovers_known_affine_exactly():
    """Coordinate images (channel 0 = x, channel 1 = y) are linear, so bilinear sampling is exact."""
    size, patch = 96, 32
    xs, ys = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    fixed = np.stack([xs, ys])  # (2, W, H), PILReader layout: fixed[:, x, y] = (x, y)
    # the pair: fixed pixel p -> moving pixel G p; the moving coordinate image holds G^-1(q) at q
    angle = np.deg2rad(8.0)
    linear = 1.04 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pair_affine = np.concatenate([linear, [[3.0], [-2.5]]], axis=1)
    inv = np.linalg.inv(np.vstack([pair_affine, [0, 0, 1]]))[:2]
    moving = np.einsum("ij,jxy->ixy", inv[:, :2], fixed) + inv[:, 2, None, None]

    rng = np.random.default_rng(0)
    for origin in [(30, 32), (34, 28), (31, 35)]:
        target = random_patch_affine(rng, patch)
        f_patch, m_patch = cut_patch_pair(fixed, moving, pair_affine, origin, patch, target)
        assert f_patch.shape == m_patch.shape == (2, patch, patch)
        # fixed patch pixel q is fixed pixel origin + q
        np.testing.assert_array_equal(f_patch[:, 5, 7], [origin[0] + 5, origin[1] + 7])
        # every moving patch pixel r shows fixed position origin + A^-1 r: fit q -> r from the images
        r = np.stack(np.meshgrid(np.arange(patch), np.arange(patch), indexing="ij")).reshape(2, -1).T
        q = m_patch.reshape(2, -1).T.astype(np.float64) - np.asarray(origin)
        design = np.c_[q, np.ones(len(q))]
        recovered = np.linalg.lstsq(design, r, rcond=None)[0].T
        np.testing.assert_allclose(recovered, target, atol=1e-4)
        # and warping the moving patch by the target with MONAI Warp gives back the fixed patch
        warped = WARP(torch.as_tensor(m_patch[None]), affine_to_ddf(torch.as_tensor(target[None], dtype=torch.float32), (patch, patch)))
        inner = slice(8, patch - 8)
        np.testing.assert_allclose(warped[0, :, inner, inner].numpy(), f_patch[:, inner, inner], atol=1e-3)


def _one_image_fire(root: Path, size: int, affine: np.ndarray) -> Path:
    """A FIRE-format folder with one pair: the moving image is the fixed one under ``affine`` (fixed -> moving)."""
    (root / "Images").mkdir(parents=True)
    (root / "Ground Truth").mkdir()
    fixed = cv2.resize(retina(), (size, size), interpolation=cv2.INTER_AREA)
    moving = cv2.warpAffine(fixed, affine.astype(np.float32), (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    Image.fromarray(fixed).save(root / "Images" / "S01_1.png")
    Image.fromarray(moving).save(root / "Images" / "S01_2.png")
    pts = np.random.default_rng(3).uniform(0.3 * size, 0.7 * size, size=(8, 2))
    mapped = pts @ affine[:, :2].T + affine[:, 2]
    lines = [f"{a:.6f} {b:.6f} {c:.6f} {d:.6f}" for (a, b), (c, d) in zip(pts, mapped)]
    (root / "Ground Truth" / "control_points_S01_1_2.txt").write_text("\n".join(lines) + "\n")
    return root


def test_make_patches_on_an_exact_affine_pair(tmp_path):
    full, size, patch = 256, 128, 32
    angle = np.deg2rad(6.0)
    linear = 0.97 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.full(2, (full - 1) / 2)
    affine = np.concatenate([linear, (centre + [10.0, -6.0] - linear @ centre)[:, None]], axis=1)
    root = _one_image_fire(tmp_path / "fire", full, affine)
    files = make_patches(read_fire(root), tmp_path / "patches", n_per_pair=6, patch_size=patch, size=size, seed=2)
    assert [f.name for f in files] == [f"S01_{k:03d}.npz" for k in range(6)]

    # the stored pair affine is the known one, moved to working pixels (pixel-centre scaling)
    r = size / full
    to_work = np.array([[r, 0, 0.5 * r - 0.5], [0, r, 0.5 * r - 0.5], [0, 0, 1]])  # x_w = r (x + 0.5) - 0.5
    expected = (to_work @ np.vstack([affine, [0, 0, 1]]) @ np.linalg.inv(to_work))[:2]
    with np.load(files[0]) as data:
        np.testing.assert_allclose(data["pair_affine"], expected, atol=1e-4)
        assert str(data["name"]) == "S01" and int(data["size"]) == size

    dataset = PatchDataset(tmp_path / "patches")
    scores = [(_aligned_ncc(item, item["affine"]), _aligned_ncc(item, None)) for item in dataset]
    aligned, unaligned = np.array(scores).T
    assert aligned.min() > 0.85, scores  # an exact affine pair aligns up to interpolation (0.92-0.99 here)
    assert np.median(aligned - unaligned) > 0.2, scores


# ---------------------------------------------------------------- generated FIRE data


def test_patch_affines_align_generated_pairs(fire_data, tmp_path):
    manifest = read_fire(fire_data)
    manifest = manifest[manifest["category"] != "A"]  # A pairs carry lesions and haze: NCC says little
    files = make_patches(manifest, tmp_path / "patches", n_per_pair=4, patch_size=64, size=256, seed=0)
    assert len(files) == 4 * len(manifest)
    settings = json.loads((tmp_path / "patches" / "patches.json").read_text())
    assert settings["patch_size"] == 64 and settings["files"] == len(files)

    dataset = PatchDataset(tmp_path / "patches")
    assert len(dataset) == len(files)
    item = dataset[0]
    assert set(item) >= {"fixed", "moving", "affine", "name"}
    assert item["fixed"].shape == item["moving"].shape == (1, 64, 64) and item["fixed"].dtype == torch.float32
    assert item["affine"].shape == (2, 3) and isinstance(item["name"], str)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch["fixed"].shape == (3, 1, 64, 64) and batch["affine"].shape == (3, 2, 3)

    # generated pairs are not exactly affine (~1 px residual at 256 px, own illumination): compare medians;
    # the exact-affine pair above gets NCC > 0.9 on every patch
    aligned = np.array([_aligned_ncc(it, it["affine"]) for it in dataset])
    unaligned = np.array([_aligned_ncc(it, None) for it in dataset])
    inverted = np.array([_aligned_ncc(it, _inverse(it["affine"])) for it in dataset])  # the wrong direction
    assert np.median(aligned) > 0.7, aligned  # 0.80 here; unaligned 0.5
    assert np.median(aligned - unaligned) > 0.15, (aligned, unaligned)
    assert np.median(aligned - inverted) > 0.2, (aligned, inverted)
    assert (aligned > unaligned).mean() >= 0.75

    # deterministic given the seed, per pair
    again = make_patches(manifest.iloc[:1], tmp_path / "again", n_per_pair=4, patch_size=64, size=256, seed=0)
    for a in again:
        with np.load(a) as x, np.load(tmp_path / "patches" / a.name) as y:
            np.testing.assert_array_equal(x["moving"], y["moving"])
            np.testing.assert_array_equal(x["affine"], y["affine"])


def test_patch_errors_are_clear(fire_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="no patch files"):
        PatchDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        PatchDataset(tmp_path / "nowhere")
    manifest = read_fire(fire_data)
    with pytest.raises(ValueError, match="patch_size"):
        make_patches(manifest, tmp_path / "p", patch_size=300, size=256)
    with pytest.raises(ValueError, match="n_per_pair"):
        make_patches(manifest, tmp_path / "p", n_per_pair=0)
    with pytest.raises(ValueError, match="does not fit"):
        cut_patch_pair(np.zeros((1, 32, 32)), np.zeros((1, 32, 32)), np.eye(2, 3), (20, 0), 16, np.eye(2, 3))
    (tmp_path / "bad").mkdir()
    np.savez(tmp_path / "bad" / "x.npz", fixed=np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match=r"x.npz lacks \['moving', 'affine', 'name'\]"):
        PatchDataset(tmp_path / "bad")[0]
