"""Tests for firereg.transforms.datasets: the three cache modes give the same items."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset

from firereg.transforms.coords import scale_points
from firereg.transforms.datasets import CACHE_MODES, fire_dataset
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.pair_transforms import PairTransformConfig

KEYS_TENSOR = ("fixed", "moving", "fixed_mask", "moving_mask", "fixed_points", "moving_points")


@pytest.fixture(scope="module")
def manifest(fire_data):
    return read_fire(fire_data, categories="SP")


def _assert_items_equal(a: dict, b: dict) -> None:
    assert a["name"] == b["name"] and a["category"] == b["category"]
    for key in KEYS_TENSOR:
        assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), key


def test_cache_modes_give_identical_items(manifest, tmp_path):
    config = PairTransformConfig(size=64)
    none = fire_dataset(manifest, config, cache="none")
    memory = fire_dataset(manifest, config, cache="memory", progress=False)
    disk = fire_dataset(manifest, config, cache="disk", cache_dir=tmp_path / "cache", progress=False)
    assert type(none) is Dataset
    assert isinstance(memory, CacheDataset)
    assert isinstance(disk, PersistentDataset)
    assert len(none) == len(memory) == len(disk) == len(manifest) == 4
    for i in range(len(manifest)):
        ref = none[i]
        assert ref["name"] == manifest.loc[i, "name"]
        assert tuple(ref["fixed"].shape) == (1, 64, 64)
        np.testing.assert_allclose(
            np.asarray(ref["fixed_points"])[0], scale_points(manifest.loc[i, "fixed_points"], (256, 256), (64, 64)),
            atol=1e-6,
        )
        _assert_items_equal(ref, memory[i])
        _assert_items_equal(ref, disk[i])
        _assert_items_equal(ref, disk[i])  # second read comes from the disk cache


def test_disk_cache_writes_files(manifest, tmp_path):
    cache_dir = tmp_path / "new" / "cache"
    ds = fire_dataset(manifest, PairTransformConfig(size=32), cache="disk", cache_dir=cache_dir)
    assert cache_dir.is_dir()
    assert list(cache_dir.iterdir()) == []
    for i in range(len(ds)):
        ds[i]
    files = [p for p in cache_dir.iterdir() if p.is_file()]
    assert len(files) == len(manifest)
    assert all(p.stat().st_size > 0 for p in files)


def test_memory_cache_does_not_reload(manifest, tmp_path):
    """Once cached, items survive the images being deleted (they are not read again)."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(manifest.attrs["root"], root)
    local = read_fire(root, categories="S")
    ds = fire_dataset(local, PairTransformConfig(size=32), cache="memory", progress=False)
    shutil.rmtree(root / "Images")
    assert tuple(ds[0]["moving"].shape) == (1, 32, 32)
    with pytest.raises(Exception):
        fire_dataset(local, PairTransformConfig(size=32), cache="none")


def test_augmented_memory_cache_still_randomizes(manifest):
    config = PairTransformConfig(size=32, augment=True, affine_prob=1.0, flip_prob=0.0)
    ds = fire_dataset(manifest, config, cache="memory", progress=False)
    ds.transform.set_random_state(0)
    a = np.asarray(ds[0]["moving_points"])
    b = np.asarray(ds[0]["moving_points"])
    assert not np.allclose(a, b)  # the random part runs on every access
    np.testing.assert_array_equal(np.asarray(ds[0]["fixed_points"]), np.asarray(ds[0]["fixed_points"]))


def test_cache_mode_errors(manifest):
    assert CACHE_MODES == ("none", "memory", "disk")
    with pytest.raises(ValueError, match="'ram'"):
        fire_dataset(manifest, cache="ram")
    with pytest.raises(ValueError, match="cache_dir"):
        fire_dataset(manifest, cache="disk")
