"""Register one image pair with a trained network and write everything a person needs.

``register_pair`` (and ``firereg register FIXED MOVING --model RUN --out DIR``) writes:

- ``warped.png``: the moving image resampled onto the fixed grid (RGB, full resolution,
  bilinear, zero outside the moving image);
- ``field.nii.gz`` and ``field.npy``: the full-resolution displacement field (see below);
- ``checkerboard.png`` and ``overlay.png``: fixed vs warped moving (previews, longest side
  at most 1024 px; overlay: fixed magenta, warped green, aligned vessels grey);
- ``points_mapped.csv`` when control points are given (see :func:`register_pair`).

The displacement field — units and direction
--------------------------------------------
The field ``u`` lives on the FIXED image grid at full resolution and is in PIXELS.
It maps fixed to moving: the fixed pixel ``p = (x, y)`` (x = column, y = row, pixel
centres at integers) corresponds to the moving-image position ``p + u(p)``; the warped
image is ``warped(p) = moving(p + u(p))``. This is the direction MONAI ``Warp``,
VoxelMorph and elastix/transformix use; it is *not* the inverse (moving → fixed) map.

- ``field.npy``: float32 array (2, H, W), row-major: ``u[0, y, x]`` = dx, ``u[1, y, x]`` = dy.
- ``field.nii.gz``: NIfTI-1 vector image (W, H, 1, 1, 2), intent vector (1007), identity
  affine (voxel index (i, j) = pixel (x, y)), components ``[dx, dy]`` in pixels; the
  ``descrip`` header says ``ddf px fixed->moving: p_moving=p_fixed+u; c0=dx c1=dy``.

Both load with :func:`firereg.pipelines.fields_io.load_field`, and
``DisplacementFieldResult(load_field(path))`` maps fixed points exactly as the network's
result does at the pixels (between pixels it interpolates the field bilinearly).

NIfTI images (``.nii`` / ``.nii.gz``, 2D or 3D)
-----------------------------------------------
When both images are NIfTI files, :func:`register_nifti_pair` is used instead (brain MRI,
e.g. with the ``model.pt`` of ``firereg brain``, or any VoxelMorph checkpoint of the right
dimension). The images must have the same shape and the same affine (resample the moving
image onto the fixed grid first, e.g. with ``nilearn.image.resample_to_img``): the network
registers arrays voxel by voxel. It writes:

- ``warped.nii.gz``: the moving image (its original intensities) resampled onto the fixed
  grid — trilinear (bilinear in 2D), zero outside — with the FIXED image's shape, affine
  and geometry codes, so it overlays the fixed image in any viewer;
- ``field.nii.gz``: the fixed → moving displacement in MILLIMETRES along the world axes of
  the fixed image's affine (NIfTI world = RAS+): the fixed voxel at world position ``x``
  corresponds to the moving-image position ``x + u(x)``; vector image ``(X, Y, Z, 1, 3)``
  (``Z = 1`` in 2D), components ``[ux, uy, uz]``, the fixed affine
  (:func:`firereg.pipelines.fields_io.save_world_field`; ITK/ANTs use LPS: negate ``ux``, ``uy``);
- ``ddf_voxels.npy``: the same field as a MONAI DDF in fixed VOXELS, float32
  ``(D, *spatial)``, channel ``n`` = displacement along array axis ``n``
  (``warped(p) = moving(p + ddf(p))``);
- ``overlay.png``: fixed (magenta) and warped moving (green) on the middle slice.

Images are resampled to the checkpoint's working shape (``shape`` of a ``firereg brain``
checkpoint, else ``size`` along every axis) and scaled to [0, 1] (min-max) for the network;
the field is resampled back to the full grid.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from firereg.evaluation.report.figures import checkerboard, colour_overlay, save_png
from firereg.evaluation.results import RegistrationResult
from firereg.pipelines.checkpoints import load_model
from firereg.pipelines.fields_io import (
    FIELD_DESCRIPTION,
    is_nifti,
    read_nifti,
    save_field,
    save_nifti_image,
    save_world_field,
)
from firereg.pipelines.inference.deep_method import DeepMethod
from firereg.pipelines.inference.refine import RefineConfig, fundus_refinement
from firereg.pipelines.nn.losses import LossConfig
from firereg.transforms.fire_reader import FireFormatError, read_control_points
from firereg.transforms.io import atomic_to_csv
from PIL import Image

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "FIELD_DESCRIPTION",
    "read_image",
    "read_points",
    "field_from_result",
    "points_table",
    "register_pair",
    "register_nifti_pair",
    "predict_nifti_ddf",
]

#: photograph file types :func:`read_image` reads (NIfTI pairs go through :func:`register_nifti_pair`)
SUPPORTED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB row-major array.

    Raises:
        ValueError: for an unsupported file type, listing the supported ones, or an
            unreadable file, naming it.
        FileNotFoundError: naming a missing file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        nifti = path.name.lower().endswith((".nii", ".nii.gz"))
        suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else suffix
        # read_image reads photographs; register_pair sends NIfTI pairs to register_nifti_pair
        hint = (" (read_image reads photographs; for NIfTI use firereg.pipelines.fields_io.read_nifti, "
                "or register_pair with two NIfTI files)") if nifti else ""
        raise ValueError(
            f"cannot read image {path}: unsupported file type {suffix or '(none)'!r}{hint}; "
            f"supported: {' '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as err:  # PIL raises several types for unreadable files
        raise ValueError(f"cannot read image {path}: {err}") from None


def read_points(
    path: str | Path, image_sizes: tuple[tuple[int, int], tuple[int, int]] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read control points: a FIRE file (``x_fixed y_fixed x_moving y_moving``) or fixed points (``x y``).

    Whitespace-separated, one point per line, blank lines skipped; full-resolution pixels.

    Args:
        path: the points file.
        image_sizes: ``((W_fixed, H_fixed), (W_moving, H_moving))``; points must lie inside.

    Returns:
        ``(fixed_points, moving_points)``, (N, 2) float64 each; ``moving_points`` is None
        for a 2-column file.

    Raises:
        FileNotFoundError: naming the file.
        FireFormatError: naming the file and line for a malformed file or a point outside its image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"points file not found: {path}")
    lines = [(n, line.split()) for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)]
    lines = [(n, fields) for n, fields in lines if fields]
    if not lines:
        raise FireFormatError(f"{path}: no points in the file")
    columns = len(lines[0][1])
    if columns == 4:
        return read_control_points(path, image_sizes)
    if columns != 2:
        raise FireFormatError(
            f"{path}, line {lines[0][0]}: expected 4 columns (x_fixed y_fixed x_moving y_moving) "
            f"or 2 columns (x y of fixed points), got {columns}"
        )
    rows = []
    for line_no, fields in lines:
        if len(fields) != 2:
            raise FireFormatError(f"{path}, line {line_no}: expected 2 columns (x y), got {len(fields)}")
        try:
            x, y = (float(v) for v in fields)
        except ValueError:
            raise FireFormatError(f"{path}, line {line_no}: not a number in {' '.join(fields)!r}") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise FireFormatError(f"{path}, line {line_no}: non-finite value in {' '.join(fields)!r}")
        if image_sizes is not None:
            w, h = image_sizes[0]
            if not (-0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5):
                raise FireFormatError(
                    f"{path}, line {line_no}: fixed point ({x:g}, {y:g}) lies outside the fixed image "
                    f"of size {w}x{h} (width x height)"
                )
        rows.append((x, y))
    return np.asarray(rows, dtype=np.float64), None


def field_from_result(result: RegistrationResult) -> np.ndarray:
    """The full-resolution fixed → moving displacement field (2, H, W) float32 of any result.

    ``field = result.sampling_grid() - identity``: channel 0 = dx, channel 1 = dy, pixels.
    """
    return _field_from_grid(*result.sampling_grid())


def _field_from_grid(map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    h, w = map_x.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([map_x - xs, map_y - ys]).astype(np.float32)


def points_table(
    result: RegistrationResult, fixed_points: np.ndarray, moving_points: np.ndarray | None = None
) -> pd.DataFrame:
    """Control points mapped by ``result``, one row per point (full-resolution pixels).

    Columns: ``point``, ``x_fixed``, ``y_fixed``, ``x_moving_mapped``, ``y_moving_mapped``
    (fixed points mapped into the moving image); with ``moving_points``: ``x_moving``,
    ``y_moving`` and ``error_moving`` (distance of the mapped point to the true moving
    point, moving-image pixels); when the result is invertible also ``x_fixed_mapped``,
    ``y_fixed_mapped`` (moving points mapped into the fixed image) and ``error_fixed``
    (fixed-image pixels, the direction of SuperRetina's FIRE evaluation).
    """
    fixed_points = np.asarray(fixed_points, dtype=np.float64)
    mapped = result.fixed_to_moving(fixed_points)
    table = pd.DataFrame(
        {
            "point": np.arange(len(fixed_points)),
            "x_fixed": fixed_points[:, 0],
            "y_fixed": fixed_points[:, 1],
            "x_moving_mapped": mapped[:, 0],
            "y_moving_mapped": mapped[:, 1],
        }
    )
    if moving_points is None:
        return table
    moving_points = np.asarray(moving_points, dtype=np.float64)
    table["x_moving"] = moving_points[:, 0]
    table["y_moving"] = moving_points[:, 1]
    table["error_moving"] = np.linalg.norm(mapped - moving_points, axis=1)
    if result.invertible:
        back = result.moving_to_fixed(moving_points)
        table["x_fixed_mapped"] = back[:, 0]
        table["y_fixed_mapped"] = back[:, 1]
        table["error_fixed"] = np.linalg.norm(back - fixed_points, axis=1)
    return table


def _check_sizes(fixed: np.ndarray, moving: np.ndarray, fixed_path: Path, moving_path: Path) -> None:
    if fixed.shape[:2] != moving.shape[:2]:
        (hf, wf), (hm, wm) = fixed.shape[:2], moving.shape[:2]
        raise ValueError(
            f"fixed image {fixed_path} is {wf}x{hf} but moving image {moving_path} is {wm}x{hm} "
            "(width x height); register needs two images of one size, as FIRE pairs are"
        )


def register_pair(
    fixed_path: str | Path,
    moving_path: str | Path,
    checkpoint: str | Path,
    out_dir: str | Path,
    points_path: str | Path | None = None,
    refine_steps: int = 0,
    expected_type: str | None = None,
) -> dict[str, Path]:
    """Register ``moving`` onto ``fixed`` with a trained network and write the results.

    Two NIfTI files (``.nii``/``.nii.gz``) are registered by :func:`register_nifti_pair`
    (no control points); see the module doc for its outputs.

    Args:
        fixed_path: fixed image (``.jpg .jpeg .png .tif .tiff``, or ``.nii .nii.gz``).
        moving_path: moving image, the same size as the fixed one.
        checkpoint: run folder (``best.pt``, else ``last.pt``) or ``.pt`` file.
        out_dir: output folder (created); files in it are replaced atomically.
        points_path: optional FIRE control-point file (``x_fixed y_fixed x_moving y_moving``)
            or a 2-column file of fixed points (``x y``), full-resolution pixels.
        refine_steps: test-time refinement steps per pyramid level (0 = off; 2D:
            :func:`firereg.pipelines.inference.refine.fundus_refinement`).
        expected_type: refuse a checkpoint of another model type (e.g. ``"affine"``).

    Returns:
        Written paths by key: ``warped``, ``field_nifti``, ``field_npy``, ``checkerboard``,
        ``overlay`` and, with points, ``points``.

    Raises:
        FileNotFoundError: naming a missing image, points file or checkpoint.
        ValueError: for an unsupported image type (listing the supported ones), images of
            different sizes (quoting both), negative ``refine_steps`` or a malformed points file.
        firereg.pipelines.checkpoints.CheckpointError: naming a checkpoint that is unreadable or of
            another model type.
    """
    fixed_path, moving_path, out = Path(fixed_path), Path(moving_path), Path(out_dir)
    if refine_steps < 0:
        raise ValueError(f"refine_steps must be >= 0, got {refine_steps}")
    if is_nifti(fixed_path) or is_nifti(moving_path):
        if not (is_nifti(fixed_path) and is_nifti(moving_path)):
            raise ValueError(
                f"fixed image {fixed_path} and moving image {moving_path}: register needs two NIfTI files "
                "(.nii/.nii.gz) or two photographs, not one of each"
            )
        if points_path is not None:
            raise ValueError(f"control points ({points_path}) are supported for photographs only, not NIfTI images")
        return register_nifti_pair(fixed_path, moving_path, checkpoint, out, refine_steps, expected_type)
    fixed = read_image(fixed_path)
    moving = read_image(moving_path)
    _check_sizes(fixed, moving, fixed_path, moving_path)
    points = None
    if points_path is not None:
        h, w = fixed.shape[:2]
        points = read_points(points_path, ((w, h), (w, h)))
    method = DeepMethod(checkpoint, expected_type=expected_type,
                        refine=fundus_refinement(refine_steps) if refine_steps > 0 else None)

    result = method.register(fixed, moving)
    map_x, map_y = result.sampling_grid()  # computed once: it is the costly part at full resolution
    field = _field_from_grid(map_x, map_y)
    # exactly result.warp_moving(moving), reusing the grid
    warped = cv2.remap(moving, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    h, w = result.fixed_shape

    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    written["warped"] = save_png(warped, out / "warped.png", max_size=max(h, w))
    written["field_nifti"], written["field_npy"] = save_field(field, out / "field", FIELD_DESCRIPTION)
    written["checkerboard"] = save_png(checkerboard(fixed, warped), out / "checkerboard.png")
    written["overlay"] = save_png(colour_overlay(fixed, warped), out / "overlay.png")
    if points is not None:
        written["points"] = atomic_to_csv(points_table(result, *points), out / "points_mapped.csv")
    return written


# ---------------------------------------------------------------- NIfTI pairs


def _working_shape(ckpt: dict, dims: int) -> tuple[int, ...]:
    shape = ckpt.get("shape")
    if shape is None:
        return (int(ckpt["size"]),) * dims
    if len(shape) != dims:
        raise ValueError(f"checkpoint {ckpt.get('path')} has working shape {tuple(shape)} for a {dims}D network")
    return tuple(int(n) for n in shape)


def _resize(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Resize (B, C, *spatial) to ``shape`` (area when shrinking every axis, else (bi/tri)linear)."""
    if tuple(x.shape[2:]) == tuple(shape):
        return x
    if all(n <= m for n, m in zip(shape, x.shape[2:])):
        return F.interpolate(x, size=shape, mode="area")
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(x, size=shape, mode=mode, align_corners=False)


def predict_nifti_ddf(
    net: torch.nn.Module, ckpt: dict, fixed: np.ndarray, moving: np.ndarray, refine_steps: int = 0
) -> np.ndarray:
    """The fixed → moving DDF (D, *spatial) in voxels of the full grid for two arrays of one shape.

    Both images are resampled to the working shape and min-max scaled to [0, 1]; the DDF is
    predicted and refined for ``refine_steps`` steps (0 = off) by
    :func:`firereg.pipelines.examples.brain_mri.instance_optimise` with the checkpoint's ``loss``, ``refine_lr``
    and ``refine_sigma`` when it records them (a ``firereg brain`` checkpoint), else the
    defaults of :class:`RefineConfig` and no smoothing. The DDF is then
    resampled to the full grid with ``align_corners=False`` geometry — working voxel ``q`` is
    full voxel ``(q + 0.5) * r - 0.5`` along each axis, ``r = full / working`` — and scaled by ``r``.
    """
    from firereg.transforms.brain_data import normalize_minmax

    dims = fixed.ndim
    shape = tuple(fixed.shape)
    work = _working_shape(ckpt, dims)
    f = normalize_minmax(_resize(torch.as_tensor(fixed, dtype=torch.float32)[None, None], work))
    m = normalize_minmax(_resize(torch.as_tensor(moving, dtype=torch.float32)[None, None], work))
    with torch.no_grad():
        _, ddf = net(m, f)
    if refine_steps > 0:
        from firereg.pipelines.examples.brain_mri import instance_optimise

        loss = LossConfig(**ckpt["loss"]) if isinstance(ckpt.get("loss"), dict) else LossConfig()
        ddf = instance_optimise(ddf, m, f, loss, refine_steps, lr=float(ckpt.get("refine_lr", RefineConfig.lr)),
                                sigma=float(ckpt.get("refine_sigma", 0.0)))
    from firereg.pipelines.nn.fields import resample_ddf

    return resample_ddf(ddf, shape)[0].detach().numpy().astype(np.float32)


def _middle_slice(a: np.ndarray) -> np.ndarray:
    """Row-major preview (rows = axis 1, reversed so that +y is up) of the middle slice along axis 2."""
    plane = a[:, :, a.shape[2] // 2] if a.ndim == 3 else a
    return np.ascontiguousarray(plane.T[::-1])


def register_nifti_pair(
    fixed_path: str | Path,
    moving_path: str | Path,
    checkpoint: str | Path,
    out_dir: str | Path,
    refine_steps: int = 0,
    expected_type: str | None = None,
) -> dict[str, Path]:
    """Register two NIfTI images (2D or 3D, one grid) with a trained network; write NIfTI results.

    Args:
        fixed_path, moving_path: ``.nii``/``.nii.gz`` images of one shape and affine; 2D
            images may be ``(X, Y)`` or ``(X, Y, 1)``. Their dimension must be the network's.
        checkpoint: run folder or ``.pt`` file (e.g. ``firereg brain``'s ``model.pt``).
        out_dir: output folder (created).
        refine_steps: test-time refinement steps (0 = off), with the checkpoint's loss.
        expected_type: refuse a checkpoint of another model type.

    Returns:
        Written paths by key: ``warped``, ``field_nifti`` (mm, world axes), ``ddf_voxels``
        (``.npy``, voxels), ``overlay``. See the module doc for units and direction.

    Raises:
        FileNotFoundError: naming a missing image or checkpoint.
        ValueError: naming the file and quoting its shape for a 4D image or an image of the
            wrong dimension; quoting both for different shapes or affines.
        firereg.pipelines.checkpoints.CheckpointError: for an unreadable checkpoint or another model type.
    """
    fixed_path, moving_path, out = Path(fixed_path), Path(moving_path), Path(out_dir)
    if refine_steps < 0:
        raise ValueError(f"refine_steps must be >= 0, got {refine_steps}")
    for path in (fixed_path, moving_path):
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
    net, ckpt = load_model(checkpoint, expected_type)
    dims = int(getattr(net, "spatial_dims", 2))
    fixed = read_nifti(fixed_path, dims)
    moving = read_nifti(moving_path, dims)
    if fixed.data.shape != moving.data.shape:
        raise ValueError(
            f"fixed image {fixed_path} has shape {fixed.disk_shape} but moving image {moving_path} has shape "
            f"{moving.disk_shape}; register needs two images on one voxel grid (resample the moving image first)"
        )
    if not np.allclose(fixed.affine, moving.affine, rtol=1e-5, atol=1e-3):
        raise ValueError(
            f"fixed image {fixed_path} and moving image {moving_path} have different affines "
            f"({np.round(fixed.affine[:3], 3).tolist()} vs {np.round(moving.affine[:3], 3).tolist()}); the network "
            "registers voxel arrays, so resample the moving image onto the fixed grid first "
            "(e.g. nilearn.image.resample_to_img)"
        )
    ddf = predict_nifti_ddf(net, ckpt, fixed.data, moving.data, refine_steps)
    from firereg.transforms.brain_data import warp as warp_image

    warped = warp_image(torch.as_tensor(moving.data)[None, None], torch.as_tensor(ddf)[None])[0, 0].numpy()

    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    written["warped"] = save_nifti_image(warped.reshape(fixed.disk_shape), fixed.affine, out / "warped.nii.gz",
                                         like=fixed.header)
    written["field_nifti"] = save_world_field(ddf, fixed.affine, out / "field.nii.gz", like=fixed.header)
    tmp = out / f".ddf_voxels.tmp-{os.getpid()}.npy"
    np.save(tmp, ddf)
    tmp.replace(out / "ddf_voxels.npy")
    written["ddf_voxels"] = out / "ddf_voxels.npy"
    written["overlay"] = save_png(colour_overlay(_middle_slice(fixed.data), _middle_slice(warped)), out / "overlay.png")
    return written
