"""Displacement fields on disk: NIfTI (``.nii.gz``) and NumPy (``.npy``).

A field here is what :class:`evaluation.interface.DisplacementFieldResult` holds: a
(2, H, W) float32 array on the FIXED image grid, row-major (``field[:, y, x]``),
channel 0 = x displacement, channel 1 = y displacement, in pixels. A fixed pixel
``p = (x, y)`` maps to ``p + field[:, y, x]`` in the moving image (fixed → moving, the
direction MONAI ``Warp`` samples in).

Layouts:

- ``.npy``: the (2, H, W) array exactly as given.
- ``.nii.gz``: a NIfTI-1 vector image of shape (W, H, 1, 1, 2) — axes x, y, z = 1,
  t = 1, then the vector components ``[dx, dy]`` (the NIfTI convention for a
  displacement field: intent ``NIFTI_INTENT_VECTOR`` = 1007, components on the 5th
  axis). The affine is the identity (1 px spacing, origin 0), so voxel index
  ``(i, j) = (x, y)`` is the pixel and the components are in pixels, not millimetres.
  The ``descrip`` header field (at most 80 characters) states units and direction.

Note: tools such as ITK/ANTs read a NIfTI displacement field in physical (LPS)
coordinates; this file stores pixel-index displacements with an identity affine and is
meant for this project, NumPy and viewers, not as an ITK transform.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = [
    "FIELD_DESCRIPTION",
    "NIFTI_INTENT_VECTOR",
    "FieldFormatError",
    "field_stem",
    "save_field",
    "load_field",
]

#: the default ``descrip`` header: units (px) and direction (fixed -> moving)
FIELD_DESCRIPTION = "ddf px fixed->moving: p_moving=p_fixed+u; c0=dx c1=dy"
#: NIfTI intent code of a vector per voxel
NIFTI_INTENT_VECTOR = 1007
_NIFTI_SUFFIXES = (".nii.gz", ".nii")


class FieldFormatError(ValueError):
    """A displacement-field file or array has the wrong shape, intent or format."""


def _check_field(field: np.ndarray, source: str) -> np.ndarray:
    f = np.asarray(field)
    if f.ndim != 3 or f.shape[0] != 2 or min(f.shape[1:]) < 1:
        raise FieldFormatError(f"{source}: a displacement field must have shape (2, H, W), got {f.shape}")
    if not np.issubdtype(f.dtype, np.floating):
        raise FieldFormatError(f"{source}: a displacement field must be floating point, got {f.dtype}")
    return f.astype(np.float32, copy=False)


def field_stem(path: str | Path) -> Path:
    """``path`` without a ``.nii.gz``, ``.nii`` or ``.npy`` suffix (``out/field.nii.gz`` → ``out/field``)."""
    path = Path(path)
    name = path.name
    for suffix in (*_NIFTI_SUFFIXES, ".npy"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path


def _atomic_target(path: Path, suffix: str) -> Path:
    # the temporary name keeps the real suffix: nibabel picks the format (gzip) from it
    return path.with_name(f".{path.name[: -len(suffix)]}.tmp-{os.getpid()}{suffix}")


def save_field(
    field_yx: np.ndarray, path_stem: str | Path, description: str = FIELD_DESCRIPTION
) -> tuple[Path, Path]:
    """Write a (2, H, W) field as ``<stem>.nii.gz`` and ``<stem>.npy``, each atomically.

    Args:
        field_yx: (2, H, W) float array, channel 0 = dx, channel 1 = dy, pixels; row-major.
        path_stem: output path without suffix (a ``.nii.gz``/``.npy`` suffix is dropped).
        description: the NIfTI ``descrip`` header, at most 80 ASCII characters.

    Returns:
        ``(nifti_path, npy_path)``.

    Raises:
        FieldFormatError: for a field that is not (2, H, W) floating point.
        ValueError: for a description longer than 80 characters or not ASCII.
    """
    field = _check_field(field_yx, "save_field")
    if len(description) > 80 or not description.isascii():
        raise ValueError(f"NIfTI descrip must be at most 80 ASCII characters, got {len(description)}: {description!r}")
    stem = field_stem(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)

    # (2, H, W) → (W, H, 1, 1, 2): data[x, y, 0, 0, c] = field[c, y, x]
    data = np.ascontiguousarray(np.transpose(field, (2, 1, 0))[:, :, None, None, :])
    image = nib.Nifti1Image(data, np.eye(4))
    header = image.header
    header.set_data_dtype(np.float32)
    header.set_intent("vector", (), name="ddf_px")
    header.set_xyzt_units(xyz="unknown", t="unknown")  # pixels: NIfTI has no unit for them
    header["descrip"] = description.encode("ascii")
    image.set_sform(np.eye(4), code="aligned")
    image.set_qform(np.eye(4), code="aligned")

    nii_path = stem.with_name(stem.name + ".nii.gz")
    tmp = _atomic_target(nii_path, ".nii.gz")
    try:
        nib.save(image, tmp)
        tmp.replace(nii_path)
    finally:
        tmp.unlink(missing_ok=True)

    npy_path = stem.with_name(stem.name + ".npy")
    tmp = _atomic_target(npy_path, ".npy")
    try:
        with tmp.open("wb") as handle:
            np.save(handle, field)
        tmp.replace(npy_path)
    finally:
        tmp.unlink(missing_ok=True)
    return nii_path, npy_path


def load_field(path: str | Path) -> np.ndarray:
    """Read a field written by :func:`save_field` (``.nii``/``.nii.gz`` or ``.npy``).

    Returns:
        (2, H, W) float32 array, channel 0 = dx, channel 1 = dy, pixels, row-major.

    Raises:
        FileNotFoundError: naming the file.
        FieldFormatError: naming the file for an unknown suffix, a wrong shape or a NIfTI
            file whose intent is not a vector.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"displacement field not found: {path}")
    name = path.name.lower()
    if name.endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as err:
            raise FieldFormatError(f"cannot read displacement field {path}: {err}") from None
        return _check_field(arr, f"displacement field {path}")
    if not name.endswith(_NIFTI_SUFFIXES):
        raise FieldFormatError(f"displacement field {path}: unknown format; expected .nii, .nii.gz or .npy")
    try:
        image = nib.load(path)
    except Exception as err:
        raise FieldFormatError(f"cannot read displacement field {path}: {err}") from None
    intent = int(image.header["intent_code"])
    if intent != NIFTI_INTENT_VECTOR:
        raise FieldFormatError(
            f"displacement field {path} has NIfTI intent code {intent}, expected {NIFTI_INTENT_VECTOR} (vector)"
        )
    shape = image.shape
    if len(shape) != 5 or shape[2] != 1 or shape[3] != 1 or shape[4] != 2:
        raise FieldFormatError(
            f"displacement field {path} has shape {shape}; expected (W, H, 1, 1, 2) for a 2D vector field"
        )
    data = np.asarray(image.dataobj, dtype=np.float32)  # applies scl_slope/inter if set
    return np.ascontiguousarray(np.transpose(data[:, :, 0, 0, :], (2, 1, 0)))
