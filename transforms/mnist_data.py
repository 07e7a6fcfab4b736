"""Handwritten digits for atlas registration: real MNIST (IDX files) or scikit-learn's 8x8 digits.

Two sources give the same thing, a :class:`DigitData` of float32 images in [0, 1] and
integer labels:

- **MNIST** (:func:`load_mnist`): the IDX files of LeCun et al. in a folder,
  ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (or ``t10k-*`` for the test
  split), plain or gzip-compressed (``.gz``; the Kaggle spelling ``train-images.idx3-ubyte``
  also works). Parsed here with NumPy (:func:`read_idx`), no download. 28 x 28 images are
  zero-padded by 2 pixels to 32 x 32.
- **scikit-learn digits** (:func:`load_sklearn_digits`, the embedded default): the 1,797
  8 x 8 images (values 0..16) that ship inside scikit-learn (``sklearn.datasets.load_digits``,
  no network), upsampled (bicubic) to 24 x 24 and zero-padded to 32 x 32. They are *not*
  MNIST: blurrier, ~180 per class; every output built from them says so
  (:attr:`DigitData.source`).

The IDX format: a big-endian header ``0x00 0x00 <type> <ndim>`` (so MNIST images have the
magic number 2051 = 0x00000803: unsigned bytes, 3 dimensions; labels 2049 = 0x00000801),
``ndim`` big-endian uint32 sizes, then the data in C order.

Images are row-major arrays ``(N, H, W)`` (axis 0 = row = y); the atlas pipeline treats
array axis 0 as the first spatial axis of the network, so DDF channel 0 is along rows.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "IDXFormatError",
    "DigitData",
    "read_idx",
    "read_mnist_images",
    "read_mnist_labels",
    "find_mnist_files",
    "load_mnist",
    "load_sklearn_digits",
    "load_digit_data",
    "select_digit",
    "atlas_index",
    "SKLEARN_SOURCE",
]

#: magic number of an MNIST image file: unsigned bytes (0x08), 3 dimensions
IDX_IMAGES_MAGIC = 2051
#: magic number of an MNIST label file: unsigned bytes (0x08), 1 dimension
IDX_LABELS_MAGIC = 2049

#: IDX type byte -> big-endian NumPy dtype
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: how outputs built from the embedded default describe it
SKLEARN_SOURCE = (
    "scikit-learn 8x8 digits (embedded default, NOT MNIST): sklearn.datasets.load_digits "
    "upsampled bicubic to 24x24 and zero-padded to 32x32"
)


class IDXFormatError(ValueError):
    """An IDX file is malformed: wrong magic number, unknown type, truncated or too long."""


@dataclass(frozen=True)
class DigitData:
    """Digit images and labels.

    Attributes:
        images: float32 ``(N, H, W)`` in [0, 1], row-major.
        labels: int64 ``(N,)``.
        source: one line saying where the images come from (MNIST folder or the embedded
            scikit-learn digits); put it in every output.
    """

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"need images (N, H, W) and labels (N,), got {self.images.shape} and {self.labels.shape}"
            )


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip, whatever the suffix says
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise IDXFormatError(f"{path}: gzip data is corrupt or truncated ({err})") from None
    return raw


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a NumPy array.

    Args:
        path: the file; gzip is detected from its first bytes, not its name.
        expected_magic: refuse any other magic number (2051 for MNIST images, 2049 for labels).

    Returns:
        The array in native byte order, shape from the header.

    Raises:
        FileNotFoundError: naming a missing file.
        IDXFormatError: naming the file for a wrong magic number (quoting the expected and
            found values), an unknown type byte, a truncated file (quoting the expected
            and the actual number of bytes) or trailing bytes.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IDXFormatError(f"{path}: only {len(raw)} bytes, too short for an IDX header (4-byte magic number)")
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        what = {IDX_IMAGES_MAGIC: "MNIST images", IDX_LABELS_MAGIC: "MNIST labels"}
        found = f" ({what[magic]})" if magic in what else ""
        raise IDXFormatError(
            f"{path}: wrong magic number {magic} (0x{magic:08x}){found}; expected {expected_magic} "
            f"(0x{expected_magic:08x}, {what.get(expected_magic, 'IDX')}) — is this the right file?"
        )
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise IDXFormatError(f"{path}: not an IDX file (magic number {magic} = 0x{magic:08x}, unknown type byte)")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXFormatError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, the file has {len(raw)}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) < expected:
        raise IDXFormatError(
            f"{path}: truncated: the header announces shape {shape} of {dtype.name} "
            f"({expected} bytes in all) but the file has {len(raw)} bytes"
        )
    if len(raw) > expected:
        raise IDXFormatError(f"{path}: {len(raw) - expected} unexpected bytes after the data of shape {shape}")
    data = np.frombuffer(raw[header:], dtype=dtype).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def read_mnist_images(path: str | Path) -> np.ndarray:
    """MNIST images: uint8 ``(N, rows, cols)``; the magic number must be 2051."""
    arr = read_idx(path, IDX_IMAGES_MAGIC)
    if arr.dtype != np.uint8 or arr.ndim != 3:
        raise IDXFormatError(f"{path}: expected uint8 images (N, rows, cols), got {arr.dtype} {arr.shape}")
    return arr


def read_mnist_labels(path: str | Path) -> np.ndarray:
    """MNIST labels: int64 ``(N,)``; the magic number must be 2049."""
    arr = read_idx(path, IDX_LABELS_MAGIC)
    return arr.astype(np.int64)


def _candidates(split: str, kind: str, ndim: int) -> list[str]:
    names = [f"{split}-{kind}-idx{ndim}-ubyte", f"{split}-{kind}.idx{ndim}-ubyte"]
    return [n + suffix for n in names for suffix in ("", ".gz")]


def find_mnist_files(root: str | Path, split: str = "train") -> tuple[Path, Path]:
    """The image and label files of an MNIST split in ``root``.

    Args:
        root: the folder.
        split: ``train`` or ``t10k`` (``test`` is accepted for ``t10k``).

    Returns:
        ``(images_path, labels_path)``.

    Raises:
        FileNotFoundError: naming the folder and the file names looked for.
        ValueError: for an unknown split.
    """
    root = Path(root)
    split = {"test": "t10k"}.get(split, split)
    if split not in ("train", "t10k"):
        raise ValueError(f"unknown MNIST split {split!r}; choose train or t10k")
    if not root.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {root}")
    found = []
    for kind, ndim in (("images", 3), ("labels", 1)):
        names = _candidates(split, kind, ndim)
        hit = next((root / n for n in names if (root / n).is_file()), None)
        if hit is None:
            raise FileNotFoundError(f"no MNIST {kind} file in {root}: looked for {', '.join(names)}")
        found.append(hit)
    return found[0], found[1]


def load_mnist(root: str | Path, split: str = "train", size: int = 32) -> DigitData:
    """Read an MNIST split from its IDX files; images scaled to [0, 1] and padded to ``size``.

    Raises:
        FileNotFoundError, IDXFormatError: see :func:`find_mnist_files` and :func:`read_idx`.
        ValueError: if the image and label counts differ or ``size`` is smaller than the images.
    """
    images_path, labels_path = find_mnist_files(root, split)
    images = read_mnist_images(images_path)
    labels = read_mnist_labels(labels_path)
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    out = _pad_to(images.astype(np.float32) / 255.0, size)
    return DigitData(out, labels, f"MNIST IDX files {images_path.name}, {labels_path.name} in {Path(root)} "
                                  f"({images.shape[1]}x{images.shape[2]} padded to {size}x{size})")


def _pad_to(images: np.ndarray, size: int) -> np.ndarray:
    h, w = images.shape[1:]
    if h > size or w > size:
        raise ValueError(f"images of {h}x{w} do not fit in {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(images, ((0, 0), (top, size - h - top), (left, size - w - left))).astype(np.float32)


def load_sklearn_digits(size: int = 32) -> DigitData:
    """scikit-learn's bundled 8 x 8 digits, upsampled bicubic to ``size - 8`` and padded to ``size``.

    No network access: ``sklearn.datasets.load_digits`` reads a file inside scikit-learn.
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    bunch = load_digits()
    images = torch.as_tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8)
    inner = size - 8
    up = F.interpolate(images, size=(inner, inner), mode="bicubic", align_corners=False).clamp(0, 1)
    out = _pad_to(up[:, 0].numpy(), size)
    source = SKLEARN_SOURCE if size == 32 else SKLEARN_SOURCE.replace("24x24", f"{inner}x{inner}").replace("32x32", f"{size}x{size}")
    return DigitData(out, bunch.target.astype(np.int64), source)


def load_digit_data(mnist_dir: str | Path | None = None, split: str = "train", size: int = 32) -> DigitData:
    """MNIST from ``mnist_dir`` when given, else the embedded scikit-learn digits."""
    if mnist_dir is not None:
        return load_mnist(mnist_dir, split, size)
    return load_sklearn_digits(size)


def select_digit(data: DigitData, digit: int) -> DigitData:
    """Only the images of one class.

    Raises:
        ValueError: for a digit outside 0..9 or a class with fewer than 2 images.
    """
    if not 0 <= int(digit) <= 9:
        raise ValueError(f"digit must be 0..9, got {digit}")
    keep = data.labels == int(digit)
    if keep.sum() < 2:
        raise ValueError(f"digit {digit}: only {int(keep.sum())} images in {data.source}")
    return DigitData(data.images[keep], data.labels[keep], data.source)


def atlas_index(images: np.ndarray) -> int:
    """Index of the image nearest (L2) to the mean image: the atlas of a class."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    return int(np.argmin(((flat - flat.mean(axis=0)) ** 2).sum(axis=1)))
