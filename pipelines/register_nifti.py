"""Register two NIfTI images (2D or 3D, one voxel grid) with a trained network; write NIfTI results.

When both images of ``firereg register`` are NIfTI files, :func:`register_nifti_pair` registers them (brain MRI,
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

import numpy as np
import torch
import torch.nn.functional as F

from firereg.evaluation.report.figures import colour_overlay, save_png
from firereg.pipelines.checkpoints import load_model
from firereg.pipelines.fields_io import read_nifti, save_nifti_image, save_world_field
from firereg.pipelines.inference.refine import RefineConfig, refine_ddf
from firereg.pipelines.nn.fields import resample_ddf
from firereg.pipelines.nn.losses import LossConfig
from firereg.transforms.brain_data import normalize_minmax
from firereg.transforms.brain_data import warp as warp_image
from firereg.transforms.coords import xy_to_yx
from firereg.transforms.io import atomic_output

__all__ = ["predict_nifti_ddf", "register_nifti_pair"]


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
