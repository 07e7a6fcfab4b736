"""Displacement fields on disk: NIfTI (``.nii.gz``) and NumPy (``.npy``).

A field here is what :class:`firereg.evaluation.results.DisplacementFieldResult` holds: a
(2, H, W) float32 row-major field on the FIXED image grid, channel 0 = dx, channel 1 = dy,
in pixels, fixed → moving (layout and direction: :mod:`firereg.transforms.coords`).

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

NIfTI images and world-space fields (brain MRI, ``firereg register`` on ``.nii``/``.nii.gz``)
------------------------------------------------------------------------------------------
:func:`read_nifti` reads a 2D or 3D image in NIfTI voxel order (array axis ``n`` = voxel
axis ``n`` of the affine; a 2D image is ``(X, Y)`` or ``(X, Y, 1)``) and refuses 4D data.
:func:`save_nifti_image` writes an image with a given affine (the input's, so outputs
overlay the input in any viewer).

A *world field* (:func:`save_world_field`) is the fixed → moving displacement in
MILLIMETRES along the world axes of the fixed image's affine (NIfTI world = RAS+:
x to the Right, y Anterior, z Superior): the fixed voxel ``p`` at world position
``x = A p`` corresponds to the moving-image world position ``x + u(x)``. It is written as
a NIfTI-1 vector image ``(X, Y, Z, 1, 3)`` (``Z = 1`` for 2D), intent vector, components
``[ux, uy, uz]`` in mm, with the fixed image's affine; :func:`ddf_to_world` converts a
MONAI voxel DDF (``(D, *spatial)``, channel ``n`` along array axis ``n``) with
``u_world = A[:3, :D] @ u_voxel``. ITK/ANTs expect LPS: negate ``ux`` and ``uy`` for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from firereg.transforms.coords import field_xy_to_yx, field_yx_to_xy
from firereg.transforms.io import atomic_output

__all__ = [
    "FIELD_DESCRIPTION",
    "NIFTI_INTENT_VECTOR",
    "FieldFormatError",
    "field_stem",
    "save_field",
    "load_field",
    "WORLD_FIELD_DESCRIPTION",
    "NiftiImage",
    "is_nifti",
    "read_nifti",
    "save_nifti_image",
    "ddf_to_world",
    "save_world_field",
]

#: the default ``descrip`` header: units (px) and direction (fixed -> moving)
FIELD_DESCRIPTION = "ddf px fixed->moving: p_moving=p_fixed+u; c0=dx c1=dy"
#: NIfTI intent code of a vector per voxel
NIFTI_INTENT_VECTOR = 1007
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: the ``descrip`` header of a world field: units (mm), axes and direction (fixed -> moving)
WORLD_FIELD_DESCRIPTION = "ddf mm world RAS fixed->moving: x_mov=x_fix+u; c0..2=ux,uy,uz"


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
    data = np.ascontiguousarray(np.moveaxis(field_yx_to_xy(field), 0, -1)[:, :, None, None, :])
    image = nib.Nifti1Image(data, np.eye(4))
    header = image.header
    header.set_data_dtype(np.float32)
    header.set_intent("vector", (), name="ddf_px")
    header.set_xyzt_units(xyz="unknown", t="unknown")  # pixels: NIfTI has no unit for them
    header["descrip"] = description.encode("ascii")
    image.set_sform(np.eye(4), code="aligned")
    image.set_qform(np.eye(4), code="aligned")

    nii_path = _atomic_nifti_save(image, stem.with_name(stem.name + ".nii.gz"))
    npy_path = stem.with_name(stem.name + ".npy")
    with atomic_output(npy_path) as tmp:  # keeps the .npy suffix, so np.save adds none
        np.save(tmp, field)
    return nii_path, npy_path


def _load_vector_nifti(path: Path):
    """A NIfTI displacement field, checked to be a vector image (errors name the file)."""
    try:
        image = nib.load(path)
    except Exception as err:
        raise FieldFormatError(f"cannot read displacement field {path}: {err}") from None
    intent = int(image.header["intent_code"])
    if intent != NIFTI_INTENT_VECTOR:
        raise FieldFormatError(
            f"displacement field {path} has NIfTI intent code {intent}, expected {NIFTI_INTENT_VECTOR} (vector)"
        )
    return image


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
    image = _load_vector_nifti(path)
    shape = image.shape
    if len(shape) != 5 or shape[2] != 1 or shape[3] != 1 or shape[4] != 2:
        raise FieldFormatError(
            f"displacement field {path} has shape {shape}; expected (W, H, 1, 1, 2) for a 2D vector field"
        )
    data = np.asarray(image.dataobj, dtype=np.float32)  # applies scl_slope/inter if set
    return field_xy_to_yx(np.moveaxis(data[:, :, 0, 0, :], -1, 0))


# ---------------------------------------------------------------- NIfTI images and world fields


def is_nifti(path: str | Path) -> bool:
    """True for a ``.nii`` or ``.nii.gz`` file name."""
    return Path(path).name.lower().endswith(_NIFTI_SUFFIXES)


@dataclass(frozen=True)
class NiftiImage:
    """A 2D or 3D NIfTI image.

    Attributes:
        data: float32 array, spatial axes only: ``(X, Y)`` or ``(X, Y, Z)``, NIfTI voxel order.
        affine: (4, 4) voxel → world (mm) of the file (its sform, else qform).
        header: the file's header (to write outputs with the same geometry codes).
        disk_shape: the shape in the file (e.g. ``(X, Y, 1)`` for a 2D slice).
        path: the file.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    disk_shape: tuple[int, ...]
    path: Path

    @property
    def dims(self) -> int:
        return self.data.ndim

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(float(np.linalg.norm(self.affine[:3, n])) for n in range(self.dims))


def read_nifti(path: str | Path, dims: int | None = None) -> NiftiImage:
    """Read a 2D or 3D NIfTI image (``.nii``/``.nii.gz``).

    Trailing axes of length 1 are dropped: ``(X, Y, 1)`` is 2D, ``(X, Y, Z, 1)`` is 3D.

    Args:
        path: the file.
        dims: 2 or 3 to require that many spatial dimensions (e.g. those of a network).

    Returns:
        :class:`NiftiImage`.

    Raises:
        FileNotFoundError: naming a missing file.
        ValueError: naming the file and quoting its shape for a 4D (or higher) image with
            more than one volume, an image of the wrong dimension, or an unreadable file.
    """
    path = Path(path)
    if not is_nifti(path):
        raise ValueError(f"{path} is not a NIfTI file (.nii or .nii.gz)")
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        image = nib.load(path)
        shape = tuple(int(n) for n in image.shape)
    except Exception as err:
        raise ValueError(f"cannot read NIfTI image {path}: {err}") from None
    if len(shape) > 3 and any(n > 1 for n in shape[3:]):
        raise ValueError(
            f"NIfTI image {path} has shape {shape}: a {len(shape)}D image with {int(np.prod(shape[3:]))} "
            f"volumes/components; a 2D or 3D image is expected (extract one volume first, e.g. "
            f"nibabel's img.slicer[..., 0])"
        )
    spatial = list(shape[:3])
    while len(spatial) > 2 and spatial[-1] == 1:
        spatial.pop()
    if len(spatial) < 2 or min(spatial) < 2:
        raise ValueError(f"NIfTI image {path} has shape {shape}: need at least 2 voxels along 2 axes")
    if dims is not None and len(spatial) != dims:
        kind = "2D" if len(spatial) == 2 else "3D"
        raise ValueError(
            f"NIfTI image {path} is {kind} (shape {shape}) but a {dims}D image is expected "
            f"(the network registers {dims}D images)"
        )
    try:
        data = np.asarray(image.dataobj, dtype=np.float32).reshape(spatial)
    except Exception as err:
        raise ValueError(f"cannot read NIfTI image {path}: {err}") from None
    if not np.isfinite(data).all():
        raise ValueError(f"NIfTI image {path} contains NaN or infinite values")
    return NiftiImage(data, np.asarray(image.affine, dtype=np.float64), image.header, shape, path)


def _atomic_nifti_save(image: nib.Nifti1Image, path: Path) -> Path:
    """``nib.save`` through :func:`firereg.transforms.io.atomic_output` (its temporary keeps the
    suffix, from which nibabel picks the format, gzip or not)."""
    if not is_nifti(path):
        raise ValueError(f"{path}: a NIfTI output needs a .nii or .nii.gz name")
    with atomic_output(path) as tmp:
        nib.save(image, tmp)
    return path


def _geometry(image: nib.Nifti1Image, affine: np.ndarray, like: nib.Nifti1Header | None) -> None:
    """Set sform and qform to ``affine`` with the codes of ``like`` (default: aligned)."""
    s_code = int(like["sform_code"]) if like is not None else 0
    q_code = int(like["qform_code"]) if like is not None else 0
    image.set_sform(affine, code=s_code or 2)
    image.set_qform(affine, code=q_code or 2)
    image.header.set_xyzt_units(xyz="mm")


def save_nifti_image(
    data: np.ndarray, affine: np.ndarray, path: str | Path, like: nib.Nifti1Header | None = None,
    dtype: type = np.float32,
) -> Path:
    """Write an image (any shape, e.g. ``(X, Y, 1)`` for a 2D slice) with ``affine``, atomically.

    Args:
        data: the voxels, NIfTI order.
        affine: (4, 4) voxel → world (mm).
        path: ``.nii`` or ``.nii.gz`` file.
        like: a header whose sform/qform codes to keep (the input image's).
        dtype: stored data type.
    """
    image = nib.Nifti1Image(np.asarray(data).astype(dtype), np.asarray(affine, dtype=np.float64))
    image.header.set_data_dtype(dtype)
    _geometry(image, np.asarray(affine, dtype=np.float64), like)
    return _atomic_nifti_save(image, Path(path))


def ddf_to_world(ddf_voxels: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """A voxel DDF ``(D, *spatial)`` (channel n along array axis n) → ``(*spatial, 3)`` world mm.

    ``u_world = A[:3, :D] @ u_voxel``: the direction and length of a voxel step along each
    array axis come from the affine, so flipped, permuted or oblique axes are handled.

    Raises:
        ValueError: for a field that is not ``(D, *spatial)`` with D in {2, 3}, quoting its shape.
    """
    u = np.asarray(ddf_voxels, dtype=np.float64)
    d = u.ndim - 1
    if d not in (2, 3) or u.shape[0] != d:
        raise ValueError(f"ddf must have shape (D, *spatial) with D == len(spatial) in {{2, 3}}, got {u.shape}")
    linear = np.asarray(affine, dtype=np.float64)[:3, :d]
    return np.einsum("wd,d...->...w", linear, u).astype(np.float32)


def save_world_field(
    ddf_voxels: np.ndarray, affine: np.ndarray, path: str | Path, like: nib.Nifti1Header | None = None,
    description: str = WORLD_FIELD_DESCRIPTION,
) -> Path:
    """Write a voxel DDF as a world-space field in mm (see the module doc), atomically.

    Args:
        ddf_voxels: ``(D, *spatial)`` fixed → moving displacements in voxels of the fixed grid.
        affine: the fixed image's (4, 4) affine; the file gets the same one.
        path: ``.nii``/``.nii.gz`` output.
        like: the fixed image's header (geometry codes).
        description: ``descrip`` header, at most 80 ASCII characters.

    Returns:
        The path. The file is ``(X, Y, Z, 1, 3)`` float32 (``Z = 1`` for 2D), intent vector.
    """
    if len(description) > 80 or not description.isascii():
        raise ValueError(f"NIfTI descrip must be at most 80 ASCII characters, got {len(description)}: {description!r}")
    world = ddf_to_world(ddf_voxels, affine)  # (*spatial, 3)
    if world.ndim == 3:
        world = world[:, :, None, :]
    data = np.ascontiguousarray(world[:, :, :, None, :])
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    image.header.set_data_dtype(np.float32)
    image.header.set_intent("vector", (), name="ddf_mm")
    _geometry(image, np.asarray(affine, dtype=np.float64), like)
    image.header["descrip"] = description.encode("ascii")
    return _atomic_nifti_save(image, Path(path))
