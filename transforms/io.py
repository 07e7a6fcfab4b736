"""Files in and out: one RGB image reader (any bit depth and colour mode, optionally decoded
at reduced size: :func:`read_rgb`), writes that never leave a half-written file, and
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
    "REDUCTION_FACTORS",
    "image_size",
    "read_rgb",
    "reduction_factor",
]

#: photograph file types :func:`read_rgb` reads
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
#: the factors :func:`read_rgb` may decode an image smaller by (those JPEG's DCT scaling offers)
REDUCTION_FACTORS = (8, 4, 2)
#: PIL modes of one-channel images wider than 8 bits (16/32-bit integer, 32-bit float)
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
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


def _check_photo_path(path: str | Path) -> Path:
    """``path`` as a Path, checked: a supported photograph type that exists."""
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
    return path


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` in pixels of a photograph, read from its header (nothing is decoded).

    Raises:
        FileNotFoundError, ValueError: as :func:`read_rgb`, naming the file.
    """
    path = _check_photo_path(path)
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as err:  # PIL raises several types for unreadable files
        raise ValueError(f"cannot read image {path}: {err}") from None


def reduction_factor(size: tuple[int, int], max_side: int | None) -> int:
    """The factor ``k`` (8, 4, 2 or 1) an image of ``size`` may be decoded smaller by for a
    caller that needs a longest side of ``max_side`` px.

    The largest ``k`` of :data:`REDUCTION_FACTORS` that divides both sides exactly and keeps the
    longest side at least ``max_side``; exact division keeps the decoded image a whole-pixel
    box reduction, so a full-resolution point ``(x, y)`` maps to it by
    :func:`firereg.transforms.coords.scale_points` (``(x + 0.5) / k - 0.5``) with no error.

    Args:
        size: ``(width, height)`` of the full-resolution image, px.
        max_side: longest side the caller needs, px; None: full resolution (``k = 1``).

    Raises:
        ValueError: if ``max_side`` is not positive.
    """
    if max_side is None:
        return 1
    if max_side <= 0:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
    w, h = size
    for k in REDUCTION_FACTORS:
        if w % k == 0 and h % k == 0 and max(w, h) // k >= max_side:
            return k
    return 1


def _to_uint8(values: np.ndarray, path: Path) -> np.ndarray:
    """Intensities as uint8: 8-bit as is, 16-bit divided by 257; wider integers and floats by
    their range (floats up to 1.0 are 0..1; values up to 255 are 8-bit, up to 65535 16-bit)."""
    if values.dtype == np.uint8:
        return values
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        return np.rint(values.astype(np.float32) / np.float32(257)).astype(np.uint8)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise ValueError(f"cannot read image {path}: non-finite (NaN or infinite) intensities")
    lo, hi = float(values.min()), float(values.max())
    if lo < 0 or hi > 65535:
        raise ValueError(
            f"cannot read image {path}: intensities {lo:g}..{hi:g} lie outside the ranges firereg reads "
            "(0..1 float, 0..255 or 0..65535); rescale the image"
        )
    if values.dtype.kind == "f" and hi <= 1:
        return np.rint(values.astype(np.float32) * np.float32(255)).astype(np.uint8)
    return np.rint(values.astype(np.float32) / np.float32(1 if hi <= 255 else 257)).astype(np.uint8)


def _rawmode(im: Image.Image) -> str:
    """The raw mode of the first tile (e.g. ``"RGB;16B"`` for a 16-bit colour PNG), or ``""``."""
    if not getattr(im, "tile", None):
        return ""
    args = im.tile[0].args if hasattr(im.tile[0], "args") else im.tile[0][3]
    return str(args[0] if isinstance(args, tuple) and args else args)


def _decode(im: Image.Image, path: Path) -> np.ndarray:
    """The opened image as (H, W, 3) uint8 RGB, intensities scaled by bit depth (:func:`_to_uint8`)."""
    if im.mode in _WIDE_GREY_MODES:  # 16/32-bit integer or float grey
        grey = _to_uint8(np.asarray(im), path)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode in ("RGB", "RGBA") and ";16" in _rawmode(im):
        # PIL keeps only the high byte of 16-bit colour; OpenCV reads the full 16 bits
        import cv2

        wide = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if wide is not None and wide.ndim == 3 and wide.shape[:2] == im.size[::-1]:
            return _to_uint8(np.ascontiguousarray(wide[:, :, 2::-1]), path)  # BGR(A) -> RGB
    return np.asarray(im.convert("RGB"))


def read_rgb(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """Read a photograph as an (H, W, 3) uint8 RGB array, row-major (``array[y, x]``).

    The one image reader of firereg. Reads JPEG, PNG, TIFF and BMP (:data:`PHOTO_EXTENSIONS`);
    grey, RGB, RGBA (alpha dropped), CMYK and palette images; 8- and 16-bit samples (16-bit
    divided by 257, so 65535 -> 255) and 32-bit integer or float TIFFs (floats up to 1.0 are
    0..1; otherwise values up to 255 are 8-bit and up to 65535 16-bit).

    Args:
        path: the photograph.
        max_side: longest side, px, the caller needs; the image is then decoded at
            ``1 / k`` of its size with ``k = reduction_factor((W, H), max_side)`` (JPEG: DCT
            scaling while decoding, PIL ``draft``; others: a box reduction after decoding), so
            its longest side stays >= ``max_side`` and its shape is exactly ``(H / k, W / k)``.
            Full-resolution points map to it by :func:`firereg.transforms.coords.scale_points`.
            None (default): full resolution.

    Raises:
        FileNotFoundError: naming a missing file.
        ValueError: naming the file for an unsupported type (listing the supported ones),
            an unreadable or truncated file (with the reader's reason) or intensities outside
            the ranges above.
    """
    path = _check_photo_path(path)
    reduction_factor((1, 1), max_side)  # checks max_side before any decoding
    try:
        with Image.open(path) as im:
            k = reduction_factor(im.size, max_side)
            target = (im.size[0] // k, im.size[1] // k)
            if k > 1 and im.format == "JPEG":
                im.draft(im.mode, target)  # decodes at 1/k: never holds the full image
            rgb = _decode(im, path)
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"cannot read image {path}: {err}") from None
    except Exception as err:  # PIL raises several types for unreadable files (OSError: truncated, ...)
        raise ValueError(f"cannot read image {path}: {err}") from None
    if rgb.shape[1::-1] != target:
        import cv2

        rgb = cv2.resize(rgb, target, interpolation=cv2.INTER_AREA)  # whole-pixel box mean for integer k
    return rgb


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
