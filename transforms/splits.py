"""Seeded train/validation splits of a FIRE manifest, stratified by category.

By default 45 of 134 pairs go to validation (89 train / 45 validation on real FIRE, the
split of the original FIRE VoxelMorph work), proportionally on other sizes. A split is a
CSV file (``name,category,split``) so runs are reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from firereg.transforms.io import atomic_to_csv

__all__ = ["DEFAULT_VAL_FRACTION", "make_split", "split_or_reuse", "stored_split", "write_split", "read_split", "select_split"]

DEFAULT_VAL_FRACTION = 45 / 134
SPLITS = ("train", "validation")


def make_split(manifest: pd.DataFrame, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0) -> pd.DataFrame:
    """Split pairs into train and validation, stratified by category.

    The validation total is ``round(len(manifest) * val_fraction)``, shared between
    categories by largest remainder; pairs are drawn with ``numpy.random.default_rng(seed)``.

    Returns:
        DataFrame with columns ``name``, ``category``, ``split`` (train/validation),
        in the manifest's order.

    Raises:
        ValueError: if ``val_fraction`` is not in (0, 1) or the manifest is empty.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(manifest) == 0:
        raise ValueError("cannot split an empty manifest")
    counts = manifest["category"].value_counts().sort_index()
    quota = counts * val_fraction
    n_val = quota.astype(int)
    remaining = int(round(len(manifest) * val_fraction)) - int(n_val.sum())
    for cat in (quota - n_val).sort_values(ascending=False, kind="stable").index[: max(remaining, 0)]:
        n_val[cat] += 1
    rng = np.random.default_rng(seed)
    validation: set[str] = set()
    for cat in counts.index:
        names = sorted(manifest.loc[manifest["category"] == cat, "name"])
        validation.update(rng.choice(names, size=int(n_val[cat]), replace=False).tolist())
    split = manifest[["name", "category"]].copy()
    split["split"] = np.where(split["name"].isin(validation), "validation", "train")
    return split.reset_index(drop=True)


def write_split(split: pd.DataFrame, path: str | Path) -> Path:
    """Write a split to CSV (atomically: a temporary file renamed into place)."""
    return atomic_to_csv(split[["name", "category", "split"]], path)


def split_or_reuse(
    manifest: pd.DataFrame, path: str | Path, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0
) -> pd.DataFrame:
    """The split stored at ``path`` if it is there, else one made with :func:`make_split` and written there.

    A stored split must list exactly the pairs of ``manifest``: one made for other data is
    refused rather than silently reused.

    Raises:
        ValueError: naming ``path`` and the differing pairs if it was made for other data.
    """
    path = Path(path)
    split = stored_split(manifest, path)
    if split is not None:
        return split
    if not path.is_file():
        split = make_split(manifest, val_fraction=val_fraction, seed=seed)
        write_split(split, path)
        return split
    names = set(read_split(path)["name"])
    extra = sorted(names - set(manifest["name"]))
    missing = sorted(set(manifest["name"]) - names)
    raise ValueError(
        f"{path} was made for other data (pairs not in the data: {extra}; pairs it lacks: {missing}); "
        f"delete it or use another output folder"
    )


def stored_split(manifest: pd.DataFrame, path: str | Path) -> pd.DataFrame | None:
    """The split stored at ``path`` if the file is there and lists exactly the pairs of ``manifest``, else None.

    The one "is this split for this data" check: :func:`split_or_reuse` refuses a split made
    for other data, evaluation (the bundles) makes the split again instead.

    Raises:
        ValueError: naming ``path`` if the file is there but malformed (:func:`read_split`).
    """
    path = Path(path)
    if not path.is_file():
        return None
    split = read_split(path)
    return split if set(split["name"]) == set(manifest["name"]) else None


def read_split(path: str | Path) -> pd.DataFrame:
    """Read a split CSV written by :func:`write_split`.

    Raises:
        FileNotFoundError: naming ``path``.
        ValueError: naming ``path`` for missing columns, unknown split values or duplicates.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    split = pd.read_csv(path, dtype=str, keep_default_na=False)  # empty cells stay "" (NaN breaks sorting)
    missing = {"name", "category", "split"} - set(split.columns)
    if missing:
        raise ValueError(f"split file {path} lacks columns {sorted(missing)}")
    bad = sorted(set(split["split"]) - set(SPLITS))
    if bad:
        raise ValueError(f"split file {path} has unknown split values {bad}; expected {list(SPLITS)}")
    dup = split["name"][split["name"].duplicated()].tolist()
    if dup:
        raise ValueError(f"split file {path} lists pairs twice: {dup}")
    return split


def select_split(manifest: pd.DataFrame, split: pd.DataFrame, which: str) -> pd.DataFrame:
    """Rows of ``manifest`` in split ``which`` ("train" or "validation").

    Raises:
        ValueError: if ``which`` is unknown or the split names pairs the manifest lacks.
    """
    if which not in SPLITS:
        raise ValueError(f"unknown split {which!r}; expected one of {list(SPLITS)}")
    unknown = sorted(set(split["name"]) - set(manifest["name"]))
    if unknown:
        raise ValueError(f"split names pairs that are not in the data: {unknown}")
    names = set(split.loc[split["split"] == which, "name"])
    selected = manifest[manifest["name"].isin(names)].reset_index(drop=True)
    selected.attrs = {**manifest.attrs, "split": which}
    return selected
