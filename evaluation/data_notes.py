"""What a benchmark's ``summary.md`` says about its data, honestly.

A folder is "real FIRE" only when it holds FIRE's own file set
(:func:`firereg.transforms.fire_reader.is_fire_file_set`) or the user says so; a generated one
names its source (``generator.json``); anything else is a "FIRE-layout folder".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from firereg.transforms.fire_generator import read_generator_metadata
from firereg.transforms.fire_reader import is_fire_file_set

__all__ = ["data_label", "data_notes"]


def data_label(root: str | Path, given: str | None = None) -> str:
    """What the data in ``root`` is, as ``summary.md`` says it.

    ``given`` if the user said so (``BenchmarkConfig.data_label`` of
    :mod:`firereg.evaluation.benchmark`); "generated from ... by `firereg make-data`" for a folder
    with ``generator.json``; "real FIRE" only for a folder holding FIRE's file set
    (:func:`firereg.transforms.fire_reader.is_fire_file_set`); else "FIRE-layout folder".
    """
    if given:
        return given
    root = Path(root)
    meta = read_generator_metadata(root) if root.is_dir() else None
    if meta:
        return f"generated from {meta['source']} by `firereg make-data`"
    try:
        if is_fire_file_set(root):
            return "real FIRE"
    except OSError:  # a folder that cannot be listed is not FIRE's file set
        pass
    return "FIRE-layout folder, not FIRE's own file set"


def data_notes(manifest: pd.DataFrame, benchmark_size: int, label: str | None = None) -> list[str]:
    """The lines ``summary.md`` opens with: the data (:func:`data_label`), its pairs per category
    and the P37 rule, the benchmark size (longest side, px)."""
    root = manifest.attrs.get("root", "?")
    source = data_label(root, label) if root != "?" or label else "data of unknown origin"
    excluded = manifest.attrs.get("excluded") or []
    p37 = (
        f"excluded as known bad: {', '.join(excluded)}"
        if excluded
        else "P37 excluded by default (not present in this data)" if manifest.attrs.get("exclude_known_bad", True)
        else "P37 kept (--include-p37)"
    )
    counts = manifest["category"].value_counts()
    per_cat = ", ".join(f"{c} {int(counts.get(c, 0))}" for c in ("S", "P", "A"))
    return [
        f"data: {root} ({source})",
        f"pairs: {len(manifest)} ({per_cat}); {p37}",
        f"benchmark size: {benchmark_size} px (longest side of the images every method registers); "
        "errors in full-resolution pixels",
    ]
