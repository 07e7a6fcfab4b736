"""Tests for firereg.transforms.pair_transforms: points follow every spatial step of the MONAI pipeline."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from firereg.transforms.coords import scale_points, yx_to_xy
from firereg.transforms.fire_generator import fov_disk
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.fov import estimate_fov_mask, field_of_view, read_mask
from firereg.transforms.pair_transforms import (
    FieldOfViewMaskd,
    PairTransformConfig,
    SelectChannel,
    SelectChanneld,
    manifest_to_dicts,
    pair_transforms,
)

# --- a pair of black images with one bright Gaussian dot at each control point ---------

DOT_W, DOT_H = 200, 150  # W != H: a swapped axis cannot pass
DOT_FIXED = (70.0, 60.0)
DOT_MOVING = (120.0, 90.0)


def _dot_image(point, sigma=4.0) -> np.ndarray:
    yy, xx = np.mgrid[0:DOT_H, 0:DOT_W]
    g = np.exp(-((xx - point[0]) ** 2 + (yy - point[1]) ** 2) / (2 * sigma**2))
    a = (g * 255 + 0.5).astype(np.uint8)
    return np.stack([a, a, a], axis=-1)  # row-major (H, W, 3)


@pytest.fixture
def dot_pair(tmp_path) -> dict:
    root = tmp_path / "dots"
    (root / "Images").mkdir(parents=True)
    (root / "Ground Truth").mkdir()
    Image.fromarray(_dot_image(DOT_FIXED)).save(root / "Images" / "S01_1.png")
    Image.fromarray(_dot_image(DOT_MOVING)).save(root / "Images" / "S01_2.png")
    (root / "Ground Truth" / "control_points_S01_1_2.txt").write_text(
        f"{DOT_FIXED[0]} {DOT_FIXED[1]} {DOT_MOVING[0]} {DOT_MOVING[1]}\n"
    )
    data = manifest_to_dicts(read_fire(root))
    assert len(data) == 1 and data[0]["mask"] is None
    return data[0]


def _centroid(img: torch.Tensor) -> np.ndarray:
    """Intensity-weighted centroid (x, y) of a (1, W, H) image (axis 1 = x)."""
    a = np.asarray(img[0], dtype=np.float64)
    xs, ys = np.meshgrid(np.arange(a.shape[0]), np.arange(a.shape[1]), indexing="ij")
    return np.array([(a * xs).sum() / a.sum(), (a * ys).sum() / a.sum()])


def _point(out: dict, key: str) -> np.ndarray:
    pts = out[key]
    assert tuple(pts.shape) == (1, 1, 2)
    return np.asarray(pts[0, 0], dtype=np.float64)


# --- no augmentation --------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 100])
def test_points_follow_resize_on_generated_data(fire_data, size):
    dicts = manifest_to_dicts(read_fire(fire_data))
    transform = pair_transforms(PairTransformConfig(size=size))
    for d in dicts[:3]:
        full_fixed, full_moving = d["fixed_points"].copy(), d["moving_points"].copy()
        out = transform(dict(d))
        for key, full in (("fixed_points", full_fixed), ("moving_points", full_moving)):
            pts = np.asarray(out[key], dtype=np.float64)
            assert pts.shape == (1, len(full), 2)
            expected = scale_points(full, (256, 256), (size, size))
            np.testing.assert_allclose(pts[0], expected, atol=1e-6)
            back = scale_points(pts[0], (size, size), (256, 256))
            assert np.abs(back - full).max() < 0.5
        for key in ("fixed", "moving"):
            img = out[key]
            assert tuple(img.shape) == (1, size, size)
            assert img.dtype == torch.float32
            assert float(img.min()) == 0.0 and float(img.max()) == pytest.approx(1.0)
        for key in ("fixed_mask", "moving_mask"):
            mask = out[key]
            assert tuple(mask.shape) == (1, size, size)
            assert set(torch.unique(mask).tolist()) == {0.0, 1.0}


def test_points_follow_non_square_resize(dot_pair):
    out = pair_transforms(PairTransformConfig(size=64))(dict(dot_pair))
    expected = scale_points(np.array([DOT_FIXED, DOT_MOVING]), (DOT_W, DOT_H), (64, 64))
    np.testing.assert_allclose(_point(out, "fixed_points"), expected[0], atol=1e-6)
    np.testing.assert_allclose(_point(out, "moving_points"), expected[1], atol=1e-6)
    # the dots are where the points say
    assert np.abs(_centroid(out["fixed"]) - expected[0]).max() < 0.5
    assert np.abs(_centroid(out["moving"]) - expected[1]).max() < 0.5


def test_green_channel_is_kept_by_default(tmp_path):
    root = tmp_path / "rgb"
    (root / "Images").mkdir(parents=True)
    (root / "Ground Truth").mkdir()
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[..., 0] = 200  # red everywhere
    rgb[8:24, 8:40, 1] = 255  # a green rectangle: x 8..39, y 8..23
    for i in ("1", "2"):
        Image.fromarray(rgb).save(root / "Images" / f"S01_{i}.png")
    (root / "Ground Truth" / "control_points_S01_1_2.txt").write_text("10 10 10 10\n")
    d = manifest_to_dicts(read_fire(root))[0]
    out = pair_transforms(PairTransformConfig(size=48))(d)
    green = out["fixed"][0]
    assert float(green[:8].max()) == 0.0 and float(green[40:].max()) == 0.0  # x outside 8..39
    # resized y: rows 8..23 of 32 -> 12..35 of 48
    assert float(green[8:40, :12].max()) == 0.0 and float(green[8:40, 36:].max()) == 0.0
    assert float(green[8:40, 12:36].mean()) > 0.9


# --- masks ------------------------------------------------------------------------------


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool(), b.bool()
    return float((a & b).sum() / (a | b).sum())


def test_mask_from_file_and_estimated_agree(fire_data):
    d = manifest_to_dicts(read_fire(fire_data))[0]
    assert d["mask"] == str(fire_data / "Masks" / "mask.png")
    transform = pair_transforms(PairTransformConfig(size=128))
    from_file = transform(dict(d))
    estimated = transform({**d, "mask": None})
    for key in ("fixed_mask", "moving_mask"):
        assert set(torch.unique(estimated[key]).tolist()) == {0.0, 1.0}
        assert _iou(from_file[key], estimated[key]) > 0.95
        assert not torch.equal(from_file[key], estimated[key])  # really two different masks
    # the file mask is the generator's disk, resized
    disk = torch.as_tensor(yx_to_xy(fov_disk(128))[0])
    assert _iou(from_file["fixed_mask"][0], disk) > 0.97


def test_mask_file_layout_is_transposed_to_xy(fire_data, tmp_path):
    """A mask that covers the left half (x < W/2) of the image must cover axis-1 indices < S/2."""
    root = tmp_path / "fire"
    shutil.copytree(fire_data, root)
    left = np.zeros((256, 256), np.uint8)
    left[:, :128] = 255
    left[:64, :] = 0  # and not the top quarter (y < 64)
    Image.fromarray(left).save(root / "Masks" / "mask.png")
    d = manifest_to_dicts(read_fire(root))[0]
    out = pair_transforms(PairTransformConfig(size=64))(d)
    mask = out["fixed_mask"][0]  # (W, H) = [x, y]
    assert float(mask[:32, 16:].min()) == 1.0
    assert float(mask[32:].max()) == 0.0
    assert float(mask[:, :16].max()) == 0.0


def test_mask_size_mismatch_is_named(fire_data, tmp_path):
    root = tmp_path / "fire"
    shutil.copytree(fire_data, root)
    Image.fromarray(np.full((100, 120), 255, np.uint8)).save(root / "Masks" / "mask.png")
    d = manifest_to_dicts(read_fire(root))[0]
    with pytest.raises(Exception) as err:
        pair_transforms(PairTransformConfig(size=64))(d)
    # MONAI's Compose wraps the error ("applying transform ..."); ours is in the chain
    messages = []
    exc = err.value
    while exc is not None:
        messages.append(str(exc))
        exc = exc.__cause__
    ours = [m for m in messages if "mask.png" in m]
    assert ours and "120x100" in ours[0] and "256x256" in ours[0]


def _disk_image(h=60, w=80, r=25.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (xx - 40) ** 2 + (yy - 30) ** 2 <= r**2
    img = np.zeros((h, w, 3), np.uint8)
    img[inside] = (180, 90, 40)
    return img


def test_estimate_fov_mask_fills_holes_and_drops_specks():
    img = _disk_image()
    disk = img.max(axis=2) > 0
    img[28:33, 38:43] = 0  # a dark spot inside the field of view (vessel, haemorrhage)
    img[2, 2] = 255  # a bright speck outside it
    mask = estimate_fov_mask(img, erode_px=0)
    assert mask.shape == (60, 80) and mask.dtype == bool
    np.testing.assert_array_equal(mask, disk)
    # erosion by 2 px removes the rim: a disk of radius ~23
    eroded = estimate_fov_mask(img, erode_px=2)
    assert eroded.sum() < mask.sum() and not eroded[30, 40 + 24] and eroded[30, 40 + 22]
    assert eroded[30, 40]  # the filled spot stays inside


def test_estimate_fov_mask_errors():
    with pytest.raises(ValueError, match="empty"):
        estimate_fov_mask(np.zeros((10, 12), np.uint8))
    with pytest.raises(ValueError, match=re.escape("(2, 3, 4, 5)")):
        estimate_fov_mask(np.zeros((2, 3, 4, 5)))


def test_read_mask(tmp_path):
    img = np.zeros((30, 40), np.uint8)
    img[5:10, 20:30] = 7  # any non-zero pixel is inside
    Image.fromarray(img).save(tmp_path / "mask.png")
    mask = read_mask(tmp_path / "mask.png", shape=(30, 40))
    np.testing.assert_array_equal(mask, img > 0)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "mask.png"))):
        read_mask(tmp_path / "mask.png", shape=(40, 30))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.png"))):
        read_mask(tmp_path / "nope.png")


def test_fov_maskd_uses_the_shared_rule(tmp_path):
    """Estimated: field_of_view of the row-major image, in XY; from a file: the file, in XY."""
    img_yx = _disk_image()  # (60, 80, 3): W != H
    img = MetaTensor(torch.as_tensor(yx_to_xy(img_yx), dtype=torch.float32))  # (3, W, H)
    out = FieldOfViewMaskd(keys=("fixed",), mask_keys=("fixed_mask",))({"fixed": img, "mask": None})
    mask = out["fixed_mask"]
    assert isinstance(mask, MetaTensor) and tuple(mask.shape) == (1, 80, 60) and mask.dtype == torch.float32
    np.testing.assert_array_equal(mask.numpy(), yx_to_xy(field_of_view(img_yx)).astype(np.float32))
    left = np.zeros((60, 80), np.uint8)
    left[:, :20] = 255  # x < 20
    Image.fromarray(left).save(tmp_path / "mask.png")
    out = FieldOfViewMaskd(keys=("fixed",), mask_keys=("fixed_mask",))({"fixed": img, "mask": str(tmp_path / "mask.png")})
    assert float(out["fixed_mask"][0, :20].min()) == 1.0 and float(out["fixed_mask"][0, 20:].max()) == 0.0
    # an all-black mask file leaves no field of view: an error, not a silently empty mask
    Image.fromarray(np.zeros((60, 80), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(ValueError, match="empty"):
        FieldOfViewMaskd(keys=("fixed",), mask_keys=("fixed_mask",))({"fixed": img, "mask": str(tmp_path / "black.png")})


def test_fov_mask_keys_must_match():
    with pytest.raises(ValueError, match="one mask key per image key"):
        FieldOfViewMaskd(keys=("fixed", "moving"), mask_keys=("m",))


# --- SelectChannel ------------------------------------------------------------------------


def _rgb() -> torch.Tensor:
    img = torch.zeros(3, 2, 2)
    img[0] = torch.tensor([[1.0, 0.0], [0.5, 0.2]])
    img[1] = torch.tensor([[0.0, 1.0], [0.5, 0.4]])
    img[2] = torch.tensor([[0.0, 0.0], [1.0, 0.6]])
    return img


def test_select_channel_values():
    img = _rgb()
    np.testing.assert_allclose(SelectChannel("green")(img).numpy(), [[[0.0, 1.0], [0.5, 0.4]]])
    np.testing.assert_allclose(SelectChannel("red")(img).numpy(), img[0:1].numpy())
    np.testing.assert_allclose(SelectChannel("blue")(img).numpy(), img[2:3].numpy())
    lum = SelectChannel("luminance")(img).numpy()
    expected = [[[0.299, 0.587], [0.299 * 0.5 + 0.587 * 0.5 + 0.114, 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6]]]
    np.testing.assert_allclose(lum, expected, atol=1e-6)
    assert SelectChannel()(img).shape == (1, 2, 2)
    one = torch.rand(1, 4, 4)
    assert torch.equal(SelectChannel("luminance")(one), one)
    # RGBA: the alpha channel is ignored
    rgba = torch.cat([img, torch.ones(1, 2, 2)])
    np.testing.assert_allclose(SelectChannel("luminance")(rgba).numpy(), expected, atol=1e-6)


def test_select_channeld():
    out = SelectChanneld(keys=("a",), channel="blue")({"a": _rgb(), "b": 1})
    np.testing.assert_allclose(out["a"].numpy(), _rgb()[2:3].numpy())
    assert out["b"] == 1


def test_select_channel_errors():
    with pytest.raises(ValueError, match="'purple'"):
        SelectChannel("purple")
    with pytest.raises(ValueError, match=re.escape("(2, 4, 4)")):
        SelectChannel()(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=re.escape("(4, 4)")):
        SelectChannel()(torch.zeros(4, 4))


def test_working_size_too_small():
    with pytest.raises(ValueError, match="8"):
        pair_transforms(PairTransformConfig(size=8))


# --- augmentation: the dots stay on the points ---------------------------------------------

SEEDS = range(6)


def _run(dot_pair, seed, **kwargs):
    transform = pair_transforms(PairTransformConfig(size=128, augment=True, **kwargs))
    transform.set_random_state(seed)
    return transform(dict(dot_pair))


def _no_augment(dot_pair):
    return pair_transforms(PairTransformConfig(size=128))(dict(dot_pair))


def test_flip_moves_points_with_images(dot_pair):
    plain = _no_augment(dot_pair)
    for seed in SEEDS:
        out = _run(dot_pair, seed, affine_prob=0.0, flip_prob=1.0)
        for img_key, pts_key in (("fixed", "fixed_points"), ("moving", "moving_points")):
            p = _point(out, pts_key)
            q = _point(plain, pts_key)
            # a left-right flip: x -> S - 1 - x, y unchanged
            np.testing.assert_allclose(p, [127.0 - q[0], q[1]], atol=1e-6)
            assert np.abs(_centroid(out[img_key]) - p).max() < 1.0


@pytest.mark.parametrize("flip_prob", [0.0, 0.5])
def test_random_affine_moves_moving_point_with_moving_image(dot_pair, flip_prob):
    plain = _no_augment(dot_pair)
    moved = []
    flipped = []
    for seed in SEEDS:
        out = _run(dot_pair, seed, affine_prob=1.0, flip_prob=flip_prob,
                   rotate_deg=30.0, translate_fraction=0.1, scale=0.2)
        p_moving = _point(out, "moving_points")
        p_fixed = _point(out, "fixed_points")
        assert np.abs(_centroid(out["moving"]) - p_moving).max() < 1.0, seed
        assert np.abs(_centroid(out["fixed"]) - p_fixed).max() < 1.0, seed
        is_flipped = abs(p_fixed[0] - (127.0 - _point(plain, "fixed_points")[0])) < 1e-6
        flipped.append(is_flipped)
        if not is_flipped:  # the affine is applied to the moving image only
            np.testing.assert_allclose(p_fixed, _point(plain, "fixed_points"), atol=1e-6)
            moved.append(np.linalg.norm(p_moving - _point(plain, "moving_points")))
        # masks follow their images
        assert tuple(out["moving_mask"].shape) == (1, 128, 128)
        assert set(torch.unique(out["moving_mask"]).tolist()) <= {0.0, 1.0}
    # the augmentation really did something
    if flip_prob == 0.0:
        assert not any(flipped)
        assert max(moved) > 3.0 and sum(m > 1.0 for m in moved) >= 4
    else:
        assert any(flipped) and not all(flipped)


def test_augmentation_is_reproducible(dot_pair):
    a = _run(dot_pair, 11, affine_prob=1.0, flip_prob=0.5)
    b = _run(dot_pair, 11, affine_prob=1.0, flip_prob=0.5)
    c = _run(dot_pair, 12, affine_prob=1.0, flip_prob=0.5)
    assert torch.equal(a["moving"], b["moving"])
    np.testing.assert_array_equal(_point(a, "moving_points"), _point(b, "moving_points"))
    assert not np.allclose(_point(a, "moving_points"), _point(c, "moving_points"))


# --- manifest_to_dicts -------------------------------------------------------------------------


def test_manifest_to_dicts(fire_data):
    manifest = read_fire(fire_data)
    dicts = manifest_to_dicts(manifest)
    assert [d["name"] for d in dicts] == manifest["name"].tolist()
    d = dicts[0]
    assert set(d) == {"name", "category", "fixed", "moving", "mask", "fixed_points", "moving_points"}
    assert d["fixed"] == manifest.loc[0, "fixed"]
    np.testing.assert_array_equal(d["moving_points"], manifest.loc[0, "moving_points"])


def test_manifest_to_dicts_missing_image_is_named(fire_data, tmp_path):
    root = tmp_path / "fire"
    shutil.copytree(fire_data, root)
    manifest = read_fire(root)
    gone = Path(manifest.loc[2, "moving"])
    gone.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(gone))):
        manifest_to_dicts(manifest)


def test_self_pairs_carry_exact_points_through_a_large_affine(dot_pair):
    plain = _no_augment(dot_pair)
    sources, shifts = [], []
    for seed in SEEDS:
        out = _run(dot_pair, seed, affine_prob=0.0, flip_prob=0.0, self_pair_prob=1.0,
                   self_pair_translate_fraction=0.2, self_pair_rotate_deg=30.0)
        assert out["synthetic"] is True
        p_fixed, p_moving = _point(out, "fixed_points"), _point(out, "moving_points")
        # both images are one source image: its dot sits at each image's point
        assert np.abs(_centroid(out["fixed"]) - p_fixed).max() < 1.0, seed
        assert np.abs(_centroid(out["moving"]) - p_moving).max() < 1.0, seed
        source = "fixed" if np.allclose(p_fixed, _point(plain, "fixed_points"), atol=1e-6) else "moving"
        np.testing.assert_allclose(p_fixed, _point(plain, f"{source}_points"), atol=1e-6)
        sources.append(source)
        shifts.append(np.linalg.norm(p_moving - p_fixed))
        assert set(torch.unique(out["moving_mask"]).tolist()) <= {0.0, 1.0}
    assert set(sources) == {"fixed", "moving"}  # both images serve as the source
    assert max(shifts) > 10.0  # px at 128: the large affine really moved it
    off = _run(dot_pair, SEEDS[0], affine_prob=0.0, flip_prob=0.0, self_pair_prob=0.0)
    assert "synthetic" not in off  # no self-pair step in the pipeline at all


def test_intensity_augmentation_changes_the_two_images_independently(dot_pair):
    plain = _no_augment(dot_pair)
    out = _run(dot_pair, 3, affine_prob=0.0, flip_prob=0.0, intensity=True)
    changed_f = not torch.allclose(out["fixed"], plain["fixed"])
    changed_m = not torch.allclose(out["moving"], plain["moving"])
    assert changed_f or changed_m
    np.testing.assert_allclose(_point(out, "moving_points"), _point(plain, "moving_points"), atol=1e-6)
