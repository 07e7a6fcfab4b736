"""Files in and out: one RGB image reader, writes that never leave a half-written file, and
the lock that keeps two firereg processes out of one run folder (:func:`folder_lock`).

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
    "LOCK_NAME",
    "FolderInUseError",
    "folder_lock",
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
#: the lock file :func:`folder_lock` holds in a run folder
LOCK_NAME = ".firereg.lock"


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


class FolderInUseError(RuntimeError):
    """Another firereg process holds the folder's lock (:func:`folder_lock`)."""


#: folders this process holds locked (resolved path → [file descriptor, depth])
_HELD: dict[str, list[int]] = {}


def _forget_locks_in_child() -> None:
    """After a fork: the child drops its copies of the lock descriptors (closing a copy does not
    unlock; the lock stays the parent's), so an orphaned child never keeps a folder locked."""
    for fd, _ in _HELD.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


@contextmanager
def folder_lock(path: str | Path, what: str) -> Iterator[Path]:
    """Hold an exclusive OS lock on the folder ``path`` (``path/.firereg.lock``) for the block.

    ``fcntl.flock`` on the lock file: the OS releases it when the process exits, however it
    exits (``kill -9`` included), so a stale lock file never blocks. Re-entrant within one
    process (a nested lock of the same folder is free). The folder is created; if it was
    created here and holds nothing but the lock file at the end (the work failed before
    writing anything), it is removed again.

    Args:
        path: the run folder.
        what: who holds it, written into the lock file for the message of a second process,
            e.g. ``"firereg train"``.

    Yields:
        The folder.

    Raises:
        FolderInUseError: naming the folder and its holder when another process holds it.
    """
    import fcntl  # POSIX only; the standard library has no portable file lock

    folder = Path(path)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield folder
        finally:
            _HELD[key][1] -= 1
        return
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "holder unknown"
        os.close(fd)
        raise FolderInUseError(
            f"{folder} is in use by another firereg process ({holder}); wait for it to finish or choose another folder"
        ) from None
    except OSError:
        os.close(fd)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what}, pid {os.getpid()}\n".encode(), 0)
        _HELD[key] = [fd, 1]
        yield folder
    finally:
        _HELD.pop(key, None)
        if created and [p.name for p in folder.iterdir()] == [LOCK_NAME]:  # made for nothing: leave no trace
            (folder / LOCK_NAME).unlink(missing_ok=True)
            try:
                folder.rmdir()
            except OSError:  # another process put something there meanwhile
                pass
        os.close(fd)  # releases the lock
