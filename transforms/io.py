"""Files in and out: one RGB image reader, and writes that never leave a half-written file.

Every file firereg writes goes through :func:`atomic_output`: the content is written to a
temporary file in the target's folder (hidden name ``.<name>.tmp-<pid><suffix>``, so a
tool that picks the writer by suffix still works) and renamed into place, so a reader or a
``kill -9`` never sees a half-written file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

__all__ = [
    "PHOTO_EXTENSIONS",
    "atomic_output",
    "atomic_write_text",
    "atomic_to_csv",
    "is_atomic_temporary",
    "read_rgb",
]

#: photograph file types :func:`read_rgb` reads
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
#: the marker in the name of every temporary file of :func:`atomic_output`
_TMP_MARK = ".tmp-"


def _split_suffix(name: str) -> tuple[str, str]:
    for double in (".nii.gz", ".tar.gz"):
        if name.lower().endswith(double):
            return name[: -len(double)], name[-len(double):]
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if dot and stem else (name, "")


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; renamed onto ``path`` on success.

    The temporary file keeps ``path``'s suffix (``.png``, ``.nii.gz``, ``.pt``...), lies in the
    same folder (so the rename is atomic), and is removed if the block raises. The parent
    folder is created.

    Example::

        with atomic_output(out / "warped.png") as tmp:
            Image.fromarray(image).save(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem, suffix = _split_suffix(path.name)
    tmp = path.with_name(f".{stem}{_TMP_MARK}{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def is_atomic_temporary(path: str | Path) -> bool:
    """Whether ``path`` is a temporary file left by an :func:`atomic_output` that was killed."""
    name = Path(path).name
    return name.startswith(".") and _TMP_MARK in name


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_output`)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_to_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """``frame.to_csv`` (no index) written atomically (:func:`atomic_output`)."""
    return atomic_write_text(path, frame.to_csv(index=False))


def read_rgb(path: str | Path) -> np.ndarray:
    """Read a photograph as an (H, W, 3) uint8 RGB array, row-major (``array[y, x]``).

    Raises:
        FileNotFoundError: naming a missing file.
        ValueError: naming the file for an unsupported type (listing the supported ones)
            or an unreadable file (with the reader's reason).
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(PHOTO_EXTENSIONS):
        suffix = _split_suffix(path.name)[1] or "(none)"
        hint = " (NIfTI volumes: firereg.pipelines.fields_io.read_nifti)" if name.endswith((".nii", ".nii.gz")) else ""
        raise ValueError(
            f"cannot read image {path}: unsupported file type {suffix!r}{hint}; supported: {' '.join(PHOTO_EXTENSIONS)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as err:  # PIL raises several types for unreadable files
        raise ValueError(f"cannot read image {path}: {err}") from None
