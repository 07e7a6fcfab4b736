"""Run registration methods over FIRE pairs and score them with the FIRE protocol.

Every (method, pair) is registered at the benchmark size (longest side, px;
:class:`ResizedMethod`; a deep method resizes further, to its network size) and scored in
full-resolution pixels (conventions: :mod:`firereg.transforms.coords`). Each finished (method, pair) is stored at once as a small JSON
record under ``OUT/records/`` (written atomically), so an interrupted benchmark resumes
where it stopped. A record carries the fingerprint of what produced it (data, the pair's files,
benchmark size, method spec and settings, checkpoint hash, firereg version:
:mod:`firereg.evaluation.fingerprints`); a re-run reuses only records whose fingerprint still
holds and recomputes the others, saying how many and why. ``OUT`` is locked for the run
(:func:`firereg.transforms.io.folder_lock`): a second benchmark on it stops at once. The tables
and plots are rebuilt from the records at the end:

- ``pairs.csv``: method, pair, category, mean/median/max error (px), direction, seconds,
  status (ok/failed), reason, and the deformation quality of the fixed → moving map inside
  the fixed field of view (``jac_min``: smallest Jacobian determinant; ``folding_fraction``:
  share of it with determinant <= 0; see :func:`firereg.evaluation.deformation.mapping_quality`);
- ``points.csv``: method, pair, point, space, x, y — every control point mapped by the
  method (``space=fixed``: the moving point mapped into the fixed image;
  ``space=moving``: the fixed point mapped into the moving image);
- ``summary.csv`` / ``summary.md``, ``success_rate.png``, ``overlays/``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from firereg.evaluation.data_notes import data_label, data_notes
from firereg.evaluation.deformation import mapping_quality
from firereg.evaluation.fingerprints import (
    method_parts,
    record_fingerprint,
    stale_reason,
)
from firereg.evaluation.landmarks import measure_pair, point_distances
from firereg.evaluation.report.figures import (
    checkerboard,
    colour_overlay,
    plot_success_rate,
    save_png,
)
from firereg.evaluation.report.tables import write_summary
from firereg.evaluation.results import (
    RegistrationMethod,
    RegistrationResult,
    ResizedMethod,
    ScaledResult,
)
from firereg.evaluation.workers import die_with_parent
from firereg.transforms.fov import read_mask
from firereg.transforms.io import (
    atomic_to_csv,
    atomic_write_text,
    folder_lock,
    image_size,
    read_rgb,
)

__all__ = [
    "BenchmarkConfig",
    "run_benchmark",
    "score_pair",
    "register_and_score",
    "rescore_points",
    "load_pair",
    "data_label",
    "record_name",
    "PAIRS_COLUMNS",
    "POINTS_COLUMNS",
]

PAIRS_COLUMNS = [
    "method", "pair", "category", "mean_error", "median_error", "max_error",
    "direction", "seconds", "status", "reason", "jac_min", "folding_fraction",
]
POINTS_COLUMNS = ["method", "pair", "point", "space", "x", "y"]

logger = logging.getLogger(__name__)


@dataclass
class BenchmarkConfig:
    """Settings of one benchmark run.

    Attributes:
        methods: method specs, e.g. ``["identity", "elastix-affine", "sift"]``.
        benchmark_size: longest side, pixels, of the images every method registers (the
            CLI's ``--size``; the networks resize further to their network size).
        workers: parallel processes (1 = in this process).
        overlay_pairs: pairs per method that get checkerboard/overlay PNGs (the first
            pair of each category, in S, P, A order).
        notes: extra lines for ``summary.md`` (e.g. which split).
        data_label: what the data is, for ``summary.md`` (e.g. ``"real FIRE"``); None: decided
            from the folder (generated data: its ``generator.json``; "real FIRE" only for a
            folder holding FIRE's file set, else "FIRE-layout folder").
    """

    methods: list[str]
    benchmark_size: int = 512
    workers: int = 1
    overlay_pairs: int = 3
    notes: list[str] = field(default_factory=list)
    data_label: str | None = None


def load_pair(
    row: dict, max_side: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read a manifest row's images and field-of-view masks, at full or reduced resolution.

    Args:
        row: a manifest row (``fixed``, ``moving`` image paths; ``mask``: a mask path or absent/NaN).
        max_side: longest side, px, the caller needs: each image (and the mask) is decoded
            at ``1 / k`` of its size (:func:`firereg.transforms.io.read_rgb`); the full-resolution
            shapes come from :func:`firereg.transforms.io.image_size`. None: full resolution.

    Returns:
        ``(fixed, moving, fixed_mask, moving_mask)``: (H, W, 3) uint8 RGB images, row-major
        (:func:`firereg.transforms.io.read_rgb`), and (H, W) bool masks or None.

    Raises:
        FileNotFoundError: naming a missing image or mask.
        ValueError: naming an unreadable image or mask, an empty or wrongly sized mask, or
            (with a mask) both images and both sizes when the moving image's size is not the fixed one's.
    """
    paths = (row["fixed"], row["moving"])
    images = [read_rgb(path, max_side) for path in paths]
    mask = row.get("mask")
    if not isinstance(mask, str):
        return images[0], images[1], None, None
    sizes = [image_size(path) for path in paths]
    if sizes[0] != sizes[1]:
        (wf, hf), (wm, hm) = sizes
        raise ValueError(
            f"pair {row.get('name', '?')}: the fixed image {paths[0]} is {wf}x{hf} px but the moving image "
            f"{paths[1]} is {wm}x{hm} px (width x height), so the one field-of-view mask {mask} cannot fit both; "
            "give the pair's images one size, or remove the mask to have each field of view estimated"
        )
    fov = read_mask(mask, (sizes[0][1], sizes[0][0]), max_side)
    return images[0], images[1], fov, fov.copy()


def record_name(text: str) -> str:
    """The file/folder name a method label or pair name gets under ``records/``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


_METHOD_CACHE: dict[tuple[str, int], RegistrationMethod] = {}


def _method(spec: str, benchmark_size: int, factory: Callable[[str], RegistrationMethod]) -> RegistrationMethod:
    key = (spec, benchmark_size)
    if key not in _METHOD_CACHE:
        _METHOD_CACHE[key] = ResizedMethod(factory(spec), benchmark_size)
    return _METHOD_CACHE[key]


def _save_overlays(result: RegistrationResult, fixed: np.ndarray, moving: np.ndarray, folder: Path, pair: str) -> None:
    warped = result.warp_moving(moving)
    save_png(checkerboard(fixed, warped), folder / f"{pair}_checkerboard.png")
    save_png(colour_overlay(fixed, warped), folder / f"{pair}_overlay.png")


def _full_mask(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """A mask decoded at ``1 / k`` (:func:`load_pair`) blown back up to the full ``shape`` (H, W)."""
    if mask is None or mask.shape == tuple(shape):
        return mask
    k = shape[0] // mask.shape[0]
    return np.repeat(np.repeat(mask, k, axis=0), k, axis=1)


def _reason(err: BaseException, prefix: str = "") -> str:
    return f"{prefix}{type(err).__name__}: {err}"[:800]


def _failed_record(label: str, row: dict, reason: str = "") -> dict:
    """A failed record of the pair (infinite errors, FIRE protocol); :func:`score_pair` fills it in."""
    return {
        "method": label, "pair": row["name"], "category": row["category"],
        "mean_error": float("inf"), "median_error": float("inf"), "max_error": float("inf"),
        "direction": "", "seconds": float("nan"), "status": "failed", "reason": reason, "points": [],
        "jac_min": float("nan"), "folding_fraction": float("nan"),
    }


def score_pair(method: RegistrationMethod, label: str, row: dict, overlay_dir: Path | None = None) -> dict:
    """Register one manifest pair with a ready method and score it; never raises for the pair's faults.

    The one register-and-score routine: ``firereg benchmark`` (through :func:`register_and_score`)
    and training's validation both call it, so both report the same numbers for the same
    method. Errors are full-resolution pixels (FIRE protocol); points use the conventions of
    :mod:`firereg.transforms.coords`. A :class:`~firereg.evaluation.results.ResizedMethod`
    gets its images decoded at reduced size (``load_pair(row, max_side=benchmark_size)``:
    an 8000 px JPEG never lies in memory at full size) and its result is presented in the
    full-resolution pixels of the files (:class:`~firereg.evaluation.results.ScaledResult`).
    A pair that cannot be read (a missing, truncated or corrupt image or mask; a wrongly
    sized mask) is a failed record whose reason names the file, as is a method's failure.

    Args:
        method: the registration method, already wrapped to its benchmark size
            (:class:`firereg.evaluation.results.ResizedMethod`) where one applies.
        label: the ``method`` column of the record.
        row: a manifest row (``name``, ``category``, ``fixed``, ``moving``, ``mask``, points).
        overlay_dir: where to write the checkerboard/overlay PNGs (None: none); they are
            drawn at the size the images were decoded at.

    Returns:
        A record with the ``pairs.csv`` fields and a ``points`` list of ``points.csv`` rows.
    """
    record = _failed_record(label, row)
    try:
        max_side = method.benchmark_size if isinstance(method, ResizedMethod) else None
        fixed, moving, fixed_mask, moving_mask = load_pair(row, max_side=max_side)
        full_shapes = [image_size(row[key])[::-1] for key in ("fixed", "moving")]  # (H, W) of the files
        fixed_points = np.asarray(row["fixed_points"], dtype=np.float64)
        moving_points = np.asarray(row["moving_points"], dtype=np.float64)
    except Exception as err:  # a damaged input is this pair's failure, not the run's
        record["reason"] = _reason(err, "cannot read the pair: ")
        return record
    try:
        start = time.perf_counter()
        loaded = method.register(fixed, moving, fixed_mask, moving_mask)  # in the pixels of the decoded images
        record["seconds"] = time.perf_counter() - start
        result = loaded
        if (loaded.fixed_shape, loaded.moving_shape) != tuple(full_shapes):
            result = ScaledResult(loaded, full_shapes[0], full_shapes[1])
        error, mapped = measure_pair(result, fixed_points, moving_points)
        if not np.all(np.isfinite(mapped)):
            raise RuntimeError("the method mapped control points to non-finite positions")
    except Exception as err:  # a method's failure is a result, not a crash (FIRE protocol: failed)
        record["reason"] = _reason(err)
        return record
    record.update(
        mean_error=error.mean, median_error=error.median, max_error=error.max,
        direction=error.direction, status="ok",
    )
    try:  # deformation quality of the fixed → moving map
        quality = mapping_quality(result, _full_mask(fixed_mask, full_shapes[0]))
        record.update(jac_min=quality.jac_min, folding_fraction=quality.folding_fraction)
    except Exception as err:  # the registration stands; its quality stays unknown (NaN)
        logger.warning("%s %s: no deformation quality: %s", label, row["name"], err)
    spaces = {error.direction: mapped}  # the scored points; the other space where the result can map them
    try:
        if "moving" not in spaces:
            spaces["moving"] = result.fixed_to_moving(fixed_points)
        elif result.invertible:
            spaces["fixed"] = result.moving_to_fixed(moving_points)
    except Exception as err:  # the scored error above stands without them
        logger.warning("%s %s: no mapped points in the other image: %s", label, row["name"], err)
    for space, pts in spaces.items():
        record["points"] += [
            {"method": label, "pair": row["name"], "point": i, "space": space, "x": float(x), "y": float(y)}
            for i, (x, y) in enumerate(pts)
        ]
    if overlay_dir is not None:
        _save_overlays(loaded, fixed, moving, overlay_dir, row["name"])
    return record


def register_and_score(
    spec: str,
    label: str,
    row: dict,
    benchmark_size: int,
    factory: Callable[[str], RegistrationMethod],
    overlay_dir: Path | None,
) -> dict:
    """The benchmark's worker: the method of ``spec`` at ``benchmark_size`` (longest side, px;
    built once per process), then :func:`score_pair`. A method that cannot be built is a failed record."""
    try:
        method = _method(spec, benchmark_size, factory)
    except Exception as err:  # e.g. a missing checkpoint: failed, with the reason (no image is read)
        return _failed_record(label, row, _reason(err))
    return score_pair(method, label, row, overlay_dir)


def _task(args: tuple) -> dict:
    return register_and_score(*args)


def _overlay_names(rows: list[dict], n: int) -> list[str]:
    """The pairs that get overlay PNGs: the first pair of each category (S, P, A order), at most ``n``."""
    names = []
    for cat in ("S", "P", "A"):
        first = next((r["name"] for r in rows if r["category"] == cat), None)
        if first is not None:
            names.append(first)
    return names[:n]


def _run_tasks(tasks: list[tuple], store: Callable[[dict], None], workers: int, progress: bool) -> None:
    """Run :func:`register_and_score` on every task (in ``workers`` processes that die with this
    one: :func:`firereg.evaluation.workers.die_with_parent`), storing each record at once."""
    bar = tqdm(total=len(tasks), desc="benchmark", unit="pair", disable=not progress)
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(_task, t) for t in tasks]
            for future in as_completed(futures):
                try:
                    record = future.result()
                except BrokenProcessPool:  # a worker was killed (e.g. out of memory): no record for its pair
                    raise RuntimeError(
                        "a benchmark worker process died (killed, e.g. for lack of memory); the finished pairs "
                        "are saved: re-run to continue, with fewer --workers or a smaller --size"
                    ) from None
                store(record)
                bar.set_postfix_str(f"{record['method']} {record['pair']}")
                bar.update()
    else:
        for task in tasks:
            bar.set_postfix_str(f"{task[1]} {task[2]['name']}")
            store(_task(task))
            bar.update()
    bar.close()


def _read_record(path: Path) -> dict:
    """One stored record; a damaged or missing one is a ``ValueError`` naming the file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"benchmark record {path} is missing; re-run the benchmark to compute it") from None
    except (OSError, ValueError) as err:
        raise ValueError(
            f"benchmark record {path} is damaged ({err}); delete it and re-run the benchmark to recompute it"
        ) from None


def _reuse_note(reused: int, new: int, stale: list[str]) -> str:
    """One line: how many records were reused, computed for the first time, and recomputed (and why)."""
    line = f"records: {reused} reused from an earlier run, {new} new, {len(stale)} recomputed"
    if not stale:
        return line
    groups: dict[str, int] = {}
    damaged = [reason for reason in stale if reason.startswith("damaged: ")]
    for reason in stale:
        if not reason.startswith("damaged: "):
            groups[reason] = groups.get(reason, 0) + 1
    details = [f"{n} {'settings ' + r if r.startswith('changed') else r}" for r, n in groups.items()]
    if damaged:
        more = f"; and {len(damaged) - 3} more" if len(damaged) > 3 else ""
        details.append(f"{len(damaged)} damaged: {'; '.join(r[len('damaged: '):] for r in damaged[:3])}{more}")
    return f"{line} ({'; '.join(details)})"


def run_benchmark(
    manifest: pd.DataFrame,
    config: BenchmarkConfig,
    out: str | Path,
    factory: Callable[[str], RegistrationMethod] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Benchmark ``config.methods`` on the manifest's pairs; write the outputs to ``out``.

    Re-running into the same ``out`` reuses the (method, pair) records already there whose
    fingerprint (:mod:`firereg.evaluation.fingerprints`) matches this run, and recomputes those
    made by other data, pair files, benchmark size, method spec or settings, checkpoint or
    firereg version, those without a fingerprint and damaged ones. How many were reused and
    recomputed (and why) is logged, shown under the progress bar, written to ``summary.md``
    and returned in ``pairs.attrs["records"]``. A method's settings come from its own
    ``fingerprint`` dict where it carries one (the methods of
    :func:`firereg.pipelines.method_specs.make_any_method` do, with the checkpoint's hash), else
    from its class and dataclass fields.

    Args:
        manifest: pairs to evaluate (:func:`firereg.transforms.fire_reader.read_fire`, maybe one split).
        config: methods, benchmark size, workers.
        out: output folder; locked for the run (:func:`firereg.transforms.io.folder_lock`).
        factory: builds a method from its spec; default :func:`firereg.evaluation.baselines.make_method`.
        progress: show a progress bar.

    Returns:
        The per-pair table (as written to ``pairs.csv``); ``attrs["records"]``: ``reused``,
        ``new``, ``recomputed`` (counts) and ``reasons`` (one per recomputed record).

    Raises:
        ValueError: for an unknown method spec (before any work) or an empty manifest.
        firereg.transforms.io.FolderInUseError: if another firereg process is using ``out``.
    """
    if factory is None:
        from firereg.evaluation.baselines import make_method as factory
    _METHOD_CACHE.clear()  # built anew per run: a checkpoint may have changed since the last one
    if len(manifest) == 0:
        raise ValueError("no pairs to benchmark")
    if not config.methods:
        raise ValueError("no methods to benchmark")
    labels, parts = {}, {}
    for spec in config.methods:  # fails fast on a bad spec
        method = factory(spec)
        labels[spec], parts[spec] = method.name, method_parts(spec, method)
    del method
    out = Path(out)
    with folder_lock(out, "firereg benchmark"):
        return _run_locked(manifest, config, out, factory, progress, labels, parts)


def _run_locked(
    manifest: pd.DataFrame,
    config: BenchmarkConfig,
    out: Path,
    factory: Callable[[str], RegistrationMethod],
    progress: bool,
    labels: dict[str, str],
    parts: dict[str, dict],
) -> pd.DataFrame:
    """:func:`run_benchmark` once ``out`` is locked: reuse or compute every record, then the tables."""
    records_dir = out / "records"
    records_dir.mkdir(parents=True, exist_ok=True)
    order = {"S": 0, "P": 1, "A": 2}
    rows = sorted(manifest.to_dict("records"), key=lambda r: (order.get(r["category"], 9), r["name"]))
    overlay_names = _overlay_names(rows, config.overlay_pairs)
    root = manifest.attrs.get("root")

    def record_path(label: str, pair: str) -> Path:
        return records_dir / record_name(label) / f"{pair}.json"

    tasks, fingerprints, stale, reused = [], {}, [], 0
    for spec, label in labels.items():
        for row in rows:
            path = record_path(label, row["name"])
            fingerprint = fingerprints[label, row["name"]] = record_fingerprint(
                parts[spec], row, root, config.benchmark_size)
            if path.is_file():
                reason = stale_reason(path, fingerprint)
                if reason is None:
                    reused += 1
                    continue
                stale.append(reason)
            overlay = out / "overlays" / record_name(label) if row["name"] in overlay_names else None
            tasks.append((spec, label, row, config.benchmark_size, factory, overlay))
    note = _reuse_note(reused, len(tasks) - len(stale), stale)
    logger.info("%s: %s", out, note)
    if progress and (reused or stale):
        tqdm.write(f"{out}: {note}")

    def store(record: dict) -> None:
        record["fingerprint"] = fingerprints[record["method"], record["pair"]]
        atomic_write_text(record_path(record["method"], record["pair"]), json.dumps(record))

    _run_tasks(tasks, store, config.workers, progress)

    records = [_read_record(record_path(label, row["name"])) for label in labels.values() for row in rows]
    points = pd.DataFrame([p for r in records for p in r["points"]], columns=POINTS_COLUMNS)
    pairs = pd.DataFrame([{k: r.get(k, float("nan")) for k in PAIRS_COLUMNS} for r in records], columns=PAIRS_COLUMNS)
    atomic_to_csv(pairs, out / "pairs.csv")
    atomic_to_csv(points, out / "points.csv")
    write_summary(pairs, out, data_notes(manifest, config.benchmark_size, config.data_label) + list(config.notes) + [note])
    plot_success_rate(pairs, out / "success_rate.png")
    pairs.attrs["records"] = {"reused": reused, "new": len(tasks) - len(stale), "recomputed": len(stale),
                              "reasons": stale}
    return pairs


def rescore_points(points: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Recompute per-pair mean errors from a ``points.csv`` table (for anyone re-scoring a run).

    Uses ``space=fixed`` rows where present (error in the fixed image), else ``space=moving``.
    """
    truth = manifest.set_index("name")
    rows = []
    for (method, pair), group in points.groupby(["method", "pair"], sort=False):
        space = "fixed" if (group["space"] == "fixed").any() else "moving"
        sel = group[group["space"] == space].sort_values("point")
        target = truth.loc[pair, "fixed_points" if space == "fixed" else "moving_points"]
        d = point_distances(sel[["x", "y"]].to_numpy(), np.asarray(target))
        rows.append({"method": method, "pair": pair, "direction": space, "mean_error": float(d.mean())})
    return pd.DataFrame(rows)

