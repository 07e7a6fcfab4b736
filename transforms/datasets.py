"""MONAI datasets of FIRE pairs built from a manifest.

``cache="memory"`` uses ``CacheDataset`` (the deterministic part of the pipeline —
loading, masks, channel, resize, intensity — runs once and is kept in memory);
``cache="disk"`` uses ``PersistentDataset`` (the same, kept in ``cache_dir`` for data
that does not fit in memory); ``cache="none"`` uses a plain ``Dataset``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from monai.data import CacheDataset, Dataset, PersistentDataset

from firereg.transforms.pair_transforms import (
    PairTransformConfig,
    manifest_to_dicts,
    pair_transforms,
)

__all__ = ["CACHE_MODES", "fire_dataset"]

CACHE_MODES = ("none", "memory", "disk")


def fire_dataset(
    manifest: pd.DataFrame,
    config: PairTransformConfig | None = None,
    cache: str = "memory",
    cache_dir: str | Path | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> Dataset:
    """A MONAI dataset of the manifest's pairs through :func:`pair_transforms`.

    Args:
        manifest: from :func:`firereg.transforms.fire_reader.read_fire` (optionally one split).
        config: pipeline settings (working size, channel, augmentation).
        cache: one of :data:`CACHE_MODES`.
        cache_dir: folder for ``cache="disk"``; required there.
        num_workers: worker threads used to fill a memory cache.
        progress: show a progress bar while caching.

    Raises:
        ValueError: for an unknown ``cache`` mode or a missing ``cache_dir``.
    """
    data = manifest_to_dicts(manifest)
    transform = pair_transforms(config)
    if cache == "none":
        return Dataset(data, transform)
    if cache == "memory":
        return CacheDataset(data, transform, cache_rate=1.0, num_workers=num_workers or None, progress=progress)
    if cache == "disk":
        if cache_dir is None:
            raise ValueError("cache='disk' needs a cache_dir")
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        return PersistentDataset(data, transform, cache_dir=cache_dir)
    raise ValueError(f"unknown cache mode {cache!r}; choose one of {list(CACHE_MODES)}")
