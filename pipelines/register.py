"""Register one image pair with any benchmark method and write everything a person needs.

:func:`register_images` (``firereg register FIXED MOVING --method SPEC --out DIR``; ``--model RUN``
stands for the spec ``TYPE:RUN``, :func:`model_spec`) registers with the method of a spec
(:mod:`firereg.pipelines.method_specs`) at the benchmark's working size (:class:`ResizedMethod`,
longest side ``size`` px, default :data:`DEFAULT_SIZE`) and writes, in full-resolution pixels:

- ``warped.png``: the moving image resampled onto the fixed grid (RGB, bilinear, zero outside);
- ``field.nii.gz`` and ``field.npy``: the dense displacement field of the transform (see below;
  for a matrix method, computed from its sampling grid);
- ``checkerboard.png`` and ``overlay.png``: fixed vs warped moving (previews, longest side
  at most 1024 px; overlay: fixed magenta, warped green, aligned vessels grey);
- ``points_mapped.csv`` when control points are given (see :func:`points_table`);
- ``transform.json``: method spec, label, status, seconds (registration only), working size,
  fixed/moving sizes ``[W, H]``, ``kind`` (``field``, ``affine``, ``homography`` or ``quadratic``) and, for a
  matrix, ``matrix`` (3×3, fixed ``(x, y, 1)`` → moving, full-resolution px) and ``inverse``; for
  ``sift-quadratic``, ``quadratic`` (2×6 on ``[1, x, y, x², xy, y²]``, full-resolution px);
  ``fingerprint``: the method's settings as the benchmark's records hold them.

A method that fails (raises, or maps to non-finite positions) raises :class:`RegistrationFailed`
before anything is written. :func:`register_pair` is the older entry point for a checkpoint at
the images' own size (no ``transform.json``); ``firereg register --pairs`` registers a FIRE folder.

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
``DisplacementFieldResult(load_field(path))`` maps fixed points as the method's result does
at the pixels (between pixels it interpolates the field bilinearly).

NIfTI images (``.nii`` / ``.nii.gz``): :mod:`firereg.pipelines.register_nifti`
(:func:`register_nifti_pair`, used by :func:`register_images` and :func:`register_pair`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from firereg.evaluation.benchmark import BenchmarkConfig
from firereg.evaluation.report.figures import checkerboard, colour_overlay, save_png
from firereg.evaluation.results import (
    MatrixResult,
    RegistrationMethod,
    RegistrationResult,
    ResizedMethod,
    ScaledResult,
)
from firereg.evaluation.sanity import RegistrationFailed
from firereg.pipelines.checkpoints import load_checkpoint
from firereg.pipelines.fields_io import FIELD_DESCRIPTION, is_nifti, save_field
from firereg.pipelines.inference.deep_method import DeepMethod
from firereg.pipelines.inference.refine import fundus_refinement
from firereg.pipelines.method_specs import (
    DEFAULT_TTO_STEPS,
    make_any_method,
    parse_method_spec,
)
from firereg.pipelines.nn.networks import MODEL_TYPES
from firereg.pipelines.register_nifti import predict_nifti_ddf, register_nifti_pair
from firereg.transforms.coords import size_of
from firereg.transforms.fire_reader import read_control_points
from firereg.transforms.io import atomic_to_csv, atomic_write_text, read_rgb

__all__ = [
    "DEFAULT_SIZE",
    "RegistrationFailed",
    "full_resolution_matrix",
    "model_spec",
    "points_table",
    "OUTPUT_NAMES",
    "register_arrays",
    "register_fire_folder",
    "register_images",
    "register_nifti_pair",
    "register_pair",
    "predict_nifti_ddf",
    "write_outputs",
]

#: working size (longest side, px) of ``firereg register``: the benchmark's default
DEFAULT_SIZE = BenchmarkConfig.benchmark_size


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


def _scaling(from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """The 3×3 matrix of :func:`firereg.transforms.coords.scale_points` from ``from_size`` to ``to_size`` (W, H)."""
    r = np.asarray(to_size, dtype=np.float64) / np.asarray(from_size, dtype=np.float64)
    return np.array([[r[0], 0.0, 0.5 * r[0] - 0.5], [0.0, r[1], 0.5 * r[1] - 0.5], [0.0, 0.0, 1.0]])


def full_resolution_matrix(result: RegistrationResult) -> np.ndarray | None:
    """The 3×3 matrix mapping fixed ``(x, y, 1)`` to moving pixels of ``result``, or None for a dense field.

    Unwraps :class:`ScaledResult` layers (the working sizes of :class:`ResizedMethod` and of a
    network) around a :class:`MatrixResult`, so the matrix is in the pixels ``result`` answers in.
    """
    if isinstance(result, MatrixResult):
        return result.matrix.copy()
    if isinstance(result, ScaledResult):
        inner = full_resolution_matrix(result.inner)
        if inner is None:
            return None
        full_f, full_m = size_of(result.fixed_shape), size_of(result.moving_shape)
        work_f, work_m = size_of(result.inner.fixed_shape), size_of(result.inner.moving_shape)
        return np.linalg.inv(_scaling(full_m, work_m)) @ inner @ _scaling(full_f, work_f)
    return None


def full_resolution_quadratic(result: RegistrationResult) -> np.ndarray | None:
    """The (2, 6) quadratic map (fixed ``[1, x, y, x², xy, y²]`` → moving x, y; full-resolution px) of a
    ``sift-quadratic`` result, or None for any other result.

    The working-size quadratic composed with the (affine) resizes is again a quadratic, so a
    least-squares fit to the result's own map on a 16 × 16 lattice recovers it exactly.
    """
    from firereg.evaluation.baselines.quadratic import QuadraticResult
    from firereg.transforms.global_models import fit_model

    inner = result
    while isinstance(inner, ScaledResult):
        inner = inner.inner
    if not isinstance(inner, QuadraticResult):
        return None
    w, h = size_of(result.fixed_shape)
    xs, ys = np.meshgrid(np.linspace(0, w - 1, 16), np.linspace(0, h - 1, 16))
    src = np.stack([xs.ravel(), ys.ravel()], axis=1)
    return np.asarray(fit_model("quadratic", src, result.fixed_to_moving(src)).params, dtype=np.float64)


def _transform_record(result: RegistrationResult, method: RegistrationMethod, size: int, seconds: float) -> dict:
    """The content of ``transform.json`` (see the module doc)."""
    fingerprint = getattr(method, "fingerprint", None) or {}
    record = {
        "method": fingerprint.get("spec", method.name), "label": method.name, "status": "ok",
        "seconds": round(seconds, 4), "working_size": size,
        "fixed_size": list(size_of(result.fixed_shape)), "moving_size": list(size_of(result.moving_shape)),
        "field": "field.nii.gz / field.npy: fixed -> moving, full-resolution px (p_moving = p_fixed + u)",
    }
    matrix = full_resolution_matrix(result)
    quadratic = full_resolution_quadratic(result) if matrix is None else None
    if quadratic is not None:
        record["kind"] = "quadratic"
        record["quadratic"] = quadratic.tolist()
        record["quadratic_convention"] = ("fixed (x, y) -> moving x = row 0 . [1, x, y, x^2, x*y, y^2], "
                                          "y = row 1 . [...], full-resolution px")
    elif matrix is None:
        record["kind"] = "field"
    else:
        matrix = matrix / matrix[2, 2]
        record["kind"] = "affine" if np.allclose(matrix[2, :2], 0.0, atol=1e-12) else "homography"
        record["matrix"] = matrix.tolist()
        record["matrix_convention"] = "fixed (x, y, 1) -> moving (x, y, w) / w, full-resolution px"
        if result.invertible:
            inverse = np.linalg.inv(matrix)
            record["inverse"] = (inverse / inverse[2, 2]).tolist()
    if fingerprint:
        record["fingerprint"] = fingerprint
    return record


def register_arrays(
    method: RegistrationMethod,
    fixed: np.ndarray,
    moving: np.ndarray,
    size: int,
    masks: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    points: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> dict:
    """Register at working size ``size`` (:class:`ResizedMethod`) and compute every output in memory.

    Args:
        method: the registration method (not yet resized).
        fixed, moving: row-major (H, W, 3) uint8 images of one size, full resolution.
        size: working size, longest side in px (the benchmark's ``--size``).
        masks: fixed and moving field-of-view masks (None: the method estimates them).
        points: ``(fixed_points, moving_points or None)``, (N, 2) ``(x, y)`` full-resolution px.

    Returns:
        ``result``, ``warped`` (RGB, fixed grid), ``field`` ((2, H, W) px, fixed → moving),
        ``checkerboard``, ``overlay``, ``points`` (:func:`points_table` or None), ``transform``
        (the ``transform.json`` content) and ``seconds`` (registration only).

    Raises:
        RegistrationFailed: (:mod:`firereg.evaluation.sanity`) when :class:`ResizedMethod`'s checks
            refuse the inputs or the result, or the method raises (``"<error type>: <message>"``) or
            maps the fixed grid or the points to non-finite positions.
    """
    wrapped = ResizedMethod(method, size)
    try:
        start = time.perf_counter()
        result = wrapped.register(fixed, moving, *masks)
        seconds = time.perf_counter() - start
        map_x, map_y = result.sampling_grid()  # computed once: it is the costly part at full resolution
        if not (np.isfinite(map_x).all() and np.isfinite(map_y).all()):
            raise RuntimeError("the method maps part of the fixed image to non-finite positions")
        table = points_table(result, *points) if points is not None else None
        if table is not None and not np.isfinite(table.drop(columns="point").to_numpy()).all():
            raise RuntimeError("the method mapped control points to non-finite positions")
    except RegistrationFailed:  # ResizedMethod's checks: the message is the reason
        raise
    except Exception as err:  # a method's failure is a result (FIRE protocol: failed), not a crash
        raise RegistrationFailed(f"{type(err).__name__}: {err}"[:300]) from err
    # exactly result.warp_moving(moving), reusing the grid
    warped = cv2.remap(moving, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return {
        "result": result, "warped": warped, "field": _field_from_grid(map_x, map_y),
        "checkerboard": checkerboard(fixed, warped), "overlay": colour_overlay(fixed, warped),
        "points": table, "transform": _transform_record(result, method, size, seconds), "seconds": seconds,
    }


def write_outputs(outputs: dict, out_dir: str | Path, transform: bool = True, field: bool = True) -> dict[str, Path]:
    """Write what :func:`register_arrays` computed into ``out_dir`` (each file atomically; see the module doc).

    Args:
        outputs: from :func:`register_arrays`.
        out_dir: the folder (created).
        transform: write ``transform.json``.
        field: write ``field.nii.gz`` and ``field.npy`` (float32, 2 x H x W: ~68 MB each at FIRE's
            2912 px); False removes those of an earlier run, so the folder holds only this run's files.

    Returns:
        Written paths by key: ``warped``, ``field_nifti``, ``field_npy`` (with ``field``), ``checkerboard``,
        ``overlay``, ``points`` (with points) and ``transform`` (when ``transform``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h, w = outputs["warped"].shape[:2]
    written: dict[str, Path] = {"warped": save_png(outputs["warped"], out / "warped.png", max_size=max(h, w))}
    if field:
        written["field_nifti"], written["field_npy"] = save_field(outputs["field"], out / "field", FIELD_DESCRIPTION)
    else:
        for name in ("field.nii.gz", "field.npy"):
            (out / name).unlink(missing_ok=True)
    written["checkerboard"] = save_png(outputs["checkerboard"], out / "checkerboard.png")
    written["overlay"] = save_png(outputs["overlay"], out / "overlay.png")
    if outputs["points"] is not None:
        written["points"] = atomic_to_csv(outputs["points"], out / "points_mapped.csv")
    if transform:
        written["transform"] = atomic_write_text(out / "transform.json", json.dumps(outputs["transform"], indent=2))
    return written


def _read_photo_pair(fixed_path: Path, moving_path: Path, points_path: str | Path | None):
    """The two photographs (checked to be of one size) and the optional control points."""
    fixed = read_rgb(fixed_path)
    moving = read_rgb(moving_path)
    _check_sizes(fixed, moving, fixed_path, moving_path)
    points = None
    if points_path is not None:
        h, w = fixed.shape[:2]
        points = read_control_points(points_path, ((w, h), (w, h)), allow_fixed_only=True)
    return fixed, moving, points


def _check_nifti_pair(fixed_path: Path, moving_path: Path, points_path: str | Path | None) -> bool:
    """Whether the pair is two NIfTI images (refusing one of each, and points on NIfTI images)."""
    if not (is_nifti(fixed_path) or is_nifti(moving_path)):
        return False
    if not (is_nifti(fixed_path) and is_nifti(moving_path)):
        raise ValueError(
            f"fixed image {fixed_path} and moving image {moving_path}: register needs two NIfTI files "
            "(.nii/.nii.gz) or two photographs, not one of each"
        )
    if points_path is not None:
        raise ValueError(f"control points ({points_path}) are supported for photographs only, not NIfTI images")
    return True


def model_spec(model: str | Path, model_type: str | None = None, refine_steps: int = 0) -> str:
    """The method spec ``TYPE[+ttoN]:RUN`` that ``firereg register --model RUN`` stands for.

    Args:
        model: run folder or ``.pt`` checkpoint.
        model_type: the expected type; None: the checkpoint's own (read from it).
        refine_steps: test-time refinement steps per pyramid level (0 = off).

    Raises:
        FileNotFoundError, firereg.pipelines.checkpoints.CheckpointError: naming a missing or unreadable checkpoint.
        ValueError: for negative ``refine_steps``.
    """
    if refine_steps < 0:
        raise ValueError(f"refine_steps must be >= 0, got {refine_steps}")
    if model_type is None:
        model_type = load_checkpoint(model)["model_type"]
    tto = "" if refine_steps == 0 else "+tto" if refine_steps == DEFAULT_TTO_STEPS else f"+tto{refine_steps}"
    return f"{model_type}{tto}:{model}"


def register_images(
    fixed_path: str | Path,
    moving_path: str | Path,
    spec: str,
    out_dir: str | Path,
    points_path: str | Path | None = None,
    size: int = DEFAULT_SIZE,
    field: bool = True,
) -> dict[str, Path]:
    """Register ``moving`` onto ``fixed`` with the method of a benchmark spec and write every output.

    Photographs are registered at working size ``size`` (:class:`ResizedMethod`, as ``firereg
    benchmark --size`` does) and answered in full-resolution pixels; two NIfTI images need a
    trained network (a ``TYPE:RUN`` spec) and go to :func:`register_nifti_pair`.

    Args:
        fixed_path, moving_path: the images (see :func:`register_pair`).
        spec: a method spec (:mod:`firereg.pipelines.method_specs`): ``identity``, ``sift``,
            ``elastix-affine``, ``TYPE:RUN``, ``TYPE+tto:RUN`` ...
        out_dir: output folder (created); nothing is written when the registration fails.
        points_path: optional control points (see :func:`register_pair`).
        size: working size, longest side in px.
        field: write the dense field files (photographs; :func:`write_outputs`).

    Returns:
        Written paths by key (:func:`write_outputs`, with ``transform``).

    Raises:
        ValueError, FileNotFoundError: bad spec, image, points or checkpoint, naming it.
        RegistrationFailed: the method produced no usable transform (nothing is written).
    """
    fixed_path, moving_path = Path(fixed_path), Path(moving_path)
    if size < 16:
        raise ValueError(f"working size must be >= 16 px, got {size}")
    parsed = parse_method_spec(spec)
    if _check_nifti_pair(fixed_path, moving_path, points_path):
        if parsed.model_type not in MODEL_TYPES:
            raise ValueError(f"method {spec!r} registers photographs only; NIfTI images need a trained network "
                             "(TYPE:RUN or --model RUN)")
        return register_nifti_pair(fixed_path, moving_path, parsed.path, out_dir, parsed.tto_steps, parsed.model_type)
    fixed, moving, points = _read_photo_pair(fixed_path, moving_path, points_path)
    method = make_any_method(spec)
    return write_outputs(register_arrays(method, fixed, moving, size, points=points), out_dir, field=field)


def register_pair(
    fixed_path: str | Path,
    moving_path: str | Path,
    checkpoint: str | Path,
    out_dir: str | Path,
    points_path: str | Path | None = None,
    refine_steps: int = 0,
    expected_type: str | None = None,
) -> dict[str, Path]:
    """Register ``moving`` onto ``fixed`` with a trained network at full resolution and write the results.

    Two NIfTI files (``.nii``/``.nii.gz``) are registered by :func:`register_nifti_pair`
    (no control points); see the module doc for its outputs. Photographs are given to the
    network at their own size (the network resizes them to its network size); ``firereg
    register`` uses :func:`register_images` instead, at the benchmark's working size.

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
        ``overlay`` and, with points, ``points`` (no ``transform.json``).

    Raises:
        FileNotFoundError: naming a missing image, points file or checkpoint.
        ValueError: for an unsupported image type (listing the supported ones), images of
            different sizes (quoting both), negative ``refine_steps`` or a malformed points file.
        firereg.pipelines.checkpoints.CheckpointError: naming a checkpoint that is unreadable or of
            another model type.
        RegistrationFailed: the network produced no usable transform (nothing is written).
    """
    fixed_path, moving_path = Path(fixed_path), Path(moving_path)
    if refine_steps < 0:
        raise ValueError(f"refine_steps must be >= 0, got {refine_steps}")
    if _check_nifti_pair(fixed_path, moving_path, points_path):
        return register_nifti_pair(fixed_path, moving_path, checkpoint, out_dir, refine_steps, expected_type)
    fixed, moving, points = _read_photo_pair(fixed_path, moving_path, points_path)
    method = DeepMethod(checkpoint, expected_type=expected_type,
                        refine=fundus_refinement(refine_steps) if refine_steps > 0 else None)
    outputs = register_arrays(method, fixed, moving, max(fixed.shape[:2]), points=points)
    return write_outputs(outputs, out_dir, transform=False)


#: the files :func:`write_outputs` writes into a pair's folder
OUTPUT_NAMES = ("warped.png", "field.nii.gz", "field.npy", "checkerboard.png", "overlay.png", "points_mapped.csv",
                "transform.json")


def register_fire_folder(
    manifest: pd.DataFrame, spec: str, out_dir: str | Path, size: int = DEFAULT_SIZE, progress: bool = True,
    field: bool = True,
) -> pd.DataFrame:
    """Register every pair of a FIRE manifest with the method of ``spec`` into ``out_dir/<pair>/``.

    Each pair gets the outputs of :func:`register_images`, its ground-truth control points mapped
    (``points_mapped.csv``) and its FOV masks (``Masks/mask.png`` when the folder has one, else the
    method estimates them), as ``firereg benchmark`` registers it. A pair whose registration fails
    gets no files (those of an earlier run are removed). ``out_dir/pairs.csv`` lists every pair.

    Args:
        manifest: pairs (:func:`firereg.transforms.fire_reader.read_fire`).
        spec: a method spec (:mod:`firereg.pipelines.method_specs`).
        out_dir: output folder; locked for the run (:func:`firereg.transforms.io.folder_lock`).
        size: working size, longest side in px.
        progress: show a progress bar.
        field: write each pair's dense field files (:func:`write_outputs`).

    Returns:
        The ``pairs.csv`` table: ``method`` (label), ``pair``, ``category``, ``status`` (ok/failed), ``reason``,
        ``seconds``, ``mean_error``, ``median_error``, ``max_error`` (full-resolution px, in the
        image named by ``direction``, as the benchmark measures them), ``direction``, ``folder``.

    Raises:
        ValueError, FileNotFoundError: bad spec, checkpoint or image (before or at that pair).
        firereg.transforms.io.FolderInUseError: if another firereg process is using ``out_dir``.
    """
    from tqdm.auto import tqdm

    from firereg.evaluation.benchmark import load_pair
    from firereg.evaluation.landmarks import measure_pair
    from firereg.transforms.io import folder_lock

    if size < 16:
        raise ValueError(f"working size must be >= 16 px, got {size}")
    method = make_any_method(spec)
    out, rows = Path(out_dir), []
    with folder_lock(out, "firereg register"):
        for row in tqdm(manifest.to_dict("records"), desc="register", unit="pair", disable=not progress):
            fixed, moving, fixed_mask, moving_mask = load_pair(row)
            record = {"method": method.name, "pair": row["name"], "category": row["category"], "status": "ok", "reason": "",
                      "seconds": float("nan"), "mean_error": float("inf"), "median_error": float("inf"),
                      "max_error": float("inf"), "direction": "", "folder": str(out / row["name"])}
            try:
                outputs = register_arrays(method, fixed, moving, size, (fixed_mask, moving_mask),
                                          (row["fixed_points"], row["moving_points"]))
            except RegistrationFailed as err:
                record.update(status="failed", reason=str(err), folder="")
                for name in OUTPUT_NAMES:
                    (out / row["name"] / name).unlink(missing_ok=True)
                rows.append(record)
                continue
            write_outputs(outputs, out / row["name"], field=field)
            error, _ = measure_pair(outputs["result"], row["fixed_points"], row["moving_points"])
            record.update(seconds=outputs["seconds"], mean_error=error.mean, median_error=error.median,
                          max_error=error.max, direction=error.direction)
            rows.append(record)
        table = pd.DataFrame(rows)
        atomic_to_csv(table, out / "pairs.csv")
    return table
