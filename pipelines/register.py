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
The field ``u`` lives on the FIXED image grid at full resolution, in PIXELS, and maps fixed
to moving (``warped(p) = moving(p + u(p))``, :data:`firereg.transforms.coords.FIELD_DIRECTION`);
it is *not* the inverse (moving → fixed) map.

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
from firereg.pipelines.inference.refine import (
    RefineConfig,
    fundus_refinement,
    refine_ddf,
)
from firereg.pipelines.nn.fields import resample_ddf
from firereg.pipelines.nn.losses import LossConfig
from firereg.transforms.brain_data import normalize_minmax
from firereg.transforms.brain_data import warp as warp_image
from firereg.transforms.coords import xy_to_yx
from firereg.transforms.fire_reader import read_control_points
from firereg.transforms.io import atomic_output, atomic_to_csv, read_rgb

__all__ = [
    "points_table",
    "register_pair",
    "register_nifti_pair",
    "predict_nifti_ddf",
]


def _field_from_grid(map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """The row-major (2, H, W) field of a sampling grid (``cv2.remap`` maps): map minus identity."""
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
    fixed = read_rgb(fixed_path)
    moving = read_rgb(moving_path)
    _check_sizes(fixed, moving, fixed_path, moving_path)
    points = None
    if points_path is not None:
        h, w = fixed.shape[:2]
        points = read_control_points(points_path, ((w, h), (w, h)), allow_fixed_only=True)
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
    :func:`firereg.pipelines.inference.refine.refine_ddf` (per voxel, one level) with the
    checkpoint's ``loss``, ``refine_lr`` and ``refine_sigma`` when it records them (a ``firereg
    brain`` checkpoint), else the defaults of :class:`RefineConfig` and no smoothing. The DDF is
    then resampled to the full grid (:func:`firereg.pipelines.nn.fields.resample_ddf`).
    """
    dims = fixed.ndim
    shape = tuple(fixed.shape)
    work = _working_shape(ckpt, dims)
    f = normalize_minmax(_resize(torch.as_tensor(fixed, dtype=torch.float32)[None, None], work))
    m = normalize_minmax(_resize(torch.as_tensor(moving, dtype=torch.float32)[None, None], work))
    with torch.no_grad():
        _, ddf = net(m, f)
    if refine_steps > 0:
        loss = LossConfig(**ckpt["loss"]) if isinstance(ckpt.get("loss"), dict) else LossConfig()
        config = RefineConfig(steps=refine_steps, lr=float(ckpt.get("refine_lr", RefineConfig.lr)), loss=loss,
                              sigma=float(ckpt.get("refine_sigma", 0.0)))
        ddf = refine_ddf(ddf, m, f, None, config)
    return resample_ddf(ddf, shape)[0].detach().numpy().astype(np.float32)


def _middle_slice(a: np.ndarray) -> np.ndarray:
    """Row-major preview (rows = axis 1, reversed so that +y is up) of the middle slice along axis 2."""
    plane = a[:, :, a.shape[2] // 2] if a.ndim == 3 else a
    return np.ascontiguousarray(xy_to_yx(plane[None])[::-1, :, 0])


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
    warped = warp_image(torch.as_tensor(moving.data)[None, None], torch.as_tensor(ddf)[None])[0, 0].numpy()

    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    written["warped"] = save_nifti_image(warped.reshape(fixed.disk_shape), fixed.affine, out / "warped.nii.gz",
                                         like=fixed.header)
    written["field_nifti"] = save_world_field(ddf, fixed.affine, out / "field.nii.gz", like=fixed.header)
    with atomic_output(out / "ddf_voxels.npy") as tmp:
        np.save(tmp, ddf)
    written["ddf_voxels"] = out / "ddf_voxels.npy"
    written["overlay"] = save_png(colour_overlay(_middle_slice(fixed.data), _middle_slice(warped)), out / "overlay.png")
    return written
