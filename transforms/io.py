"""Files in and out: writes that never leave a half-written file behind."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

__all__ = ["atomic_write_text", "atomic_to_csv"]


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def atomic_to_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """``frame.to_csv`` (no index) through a temporary file renamed into place."""
    return atomic_write_text(path, frame.to_csv(index=False))
