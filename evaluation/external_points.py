"""Score registrations made outside firereg from their predicted control points (``firereg score``).

Another tool (SuperRetina, GeoFormer, an elastix script...) gives, for every ground-truth control
point of a FIRE pair, its predicted position in the other image. A CSV with columns ``pair``,
``point``, ``x``, ``y`` (other columns are ignored) holds them:

- ``pair``: the FIRE pair name (``A01``);
- ``point``: the 0-based index of the control point in the pair's ground-truth file (its line
  order), as in the benchmark's ``points.csv``; every point of a pair must be there, once;
- ``x``, ``y``: the predicted position, full-resolution pixels (:mod:`firereg.transforms.coords`).

With ``space="moving"`` (FIRE's convention: fixed = ``<pair>_1``) a row is where the FIXED point
``point`` lands in the MOVING image, compared with the true moving point; with ``space="fixed"``
it is where the MOVING point lands in the FIXED image (the direction of SuperRetina's FIRE
evaluation). Errors, AUCs and plots follow the benchmark's protocol exactly
(:func:`firereg.evaluation.benchmark.rescore_points`, :func:`firereg.evaluation.report.tables.write_summary`,
:func:`firereg.evaluation.report.figures.plot_success_rate`); a pair without predictions is failed
(``no predictions``), its error infinite. Rows of pairs the manifest excludes as known bad (P37)
are ignored.

:func:`merge_into_benchmark` adds the scored method to a ``firereg benchmark`` folder's tables; a
later ``firereg benchmark`` into that folder rebuilds them from its own records (merge again then).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd

from firereg.evaluation.benchmark import PAIRS_COLUMNS, POINTS_COLUMNS, rescore_points
from firereg.evaluation.landmarks import point_distances
from firereg.evaluation.report.figures import plot_success_rate
from firereg.evaluation.report.tables import write_summary
from firereg.transforms.io import atomic_to_csv, atomic_write_text, folder_lock

__all__ = [
    "EXTERNAL_COLUMNS",
    "SPACES",
    "PointsFileError",
    "read_predictions",
    "predictions_table",
    "score_predictions",
    "write_report",
    "check_merge",
    "merge_into_benchmark",
    "score_external",
]

#: the columns a predictions CSV must have
EXTERNAL_COLUMNS = ("pair", "point", "x", "y")
#: ``moving``: fixed points predicted in the moving image; ``fixed``: moving points predicted in the fixed image
SPACES = ("moving", "fixed")
#: where :func:`merge_into_benchmark` records which methods of a benchmark folder it added
MERGED_NAME = "merged_methods.json"


class PointsFileError(ValueError):
    """A predictions CSV that does not follow the format; the message names the file (and line)."""


def _number(path: Path, line: int, column: str, text: str, integer: bool = False) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise PointsFileError(f"{path}, line {line}: {column} is not a number: {text!r}") from None
    if not np.isfinite(value) or (integer and value != int(value)):
        kind = "an integer point number" if integer else "a finite number"
        raise PointsFileError(f"{path}, line {line}: {column} must be {kind}, got {text!r}")
    return value


def _pair_counts(path: Path, manifest: pd.DataFrame, rows: list[tuple[int, dict]]) -> dict[str, dict[int, tuple]]:
    """``{pair: {point: (x, y, line)}}`` of the CSV rows, checked against the manifest (lines named)."""
    counts = {row["name"]: len(row["fixed_points"]) for row in manifest.to_dict("records")}
    excluded = set(manifest.attrs.get("excluded") or [])
    known = ", ".join(sorted(counts)[:8]) + (", ..." if len(counts) > 8 else "")
    found: dict[str, dict[int, tuple]] = {}
    for line, row in rows:
        pair = (row["pair"] or "").strip()
        if pair in excluded:
            continue
        if pair not in counts:
            raise PointsFileError(f"{path}, line {line}: unknown pair {pair!r}; the data's pairs are {known}")
        point = int(_number(path, line, "point", row["point"], integer=True))
        x, y = (_number(path, line, c, row[c]) for c in ("x", "y"))
        if not 0 <= point < counts[pair]:
            raise PointsFileError(f"{path}, line {line}: pair {pair} has {counts[pair]} control points "
                                  f"(numbered 0..{counts[pair] - 1}), got point {point}")
        if point in found.setdefault(pair, {}):
            raise PointsFileError(f"{path}, line {line}: pair {pair} point {point} given twice "
                                  f"(first on line {found[pair][point][2]})")
        found[pair][point] = (x, y, line)
    for pair, points in found.items():
        missing = sorted(set(range(counts[pair])) - set(points))
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
            raise PointsFileError(f"{path}: pair {pair} lacks predictions for point(s) {shown} "
                                  f"(it has {counts[pair]} control points, numbered 0..{counts[pair] - 1})")
    return found


def read_predictions(path: str | Path, manifest: pd.DataFrame) -> dict[str, np.ndarray]:
    """Read and check a predictions CSV (see the module doc) against a FIRE manifest.

    Args:
        path: the CSV (columns ``pair``, ``point``, ``x``, ``y``; full-resolution px).
        manifest: the pairs (:func:`firereg.transforms.fire_reader.read_fire`).

    Returns:
        ``{pair: (N, 2) float64 (x, y)}`` in point order, for the pairs the CSV has.

    Raises:
        FileNotFoundError: naming a missing file.
        PointsFileError: naming the file for missing columns or no rows, and the line for an
            unknown pair, a non-numeric or non-finite value, a point number out of range or
            given twice; naming the pair for missing point numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in EXTERNAL_COLUMNS if c not in columns]
        if missing:
            raise PointsFileError(f"{path}: missing column(s) {', '.join(missing)}; need {', '.join(EXTERNAL_COLUMNS)} "
                                  f"(header has {', '.join(columns) or 'nothing'})")
        reader.fieldnames = columns
        rows = [(reader.line_num, row) for row in reader if any((v or "").strip() for v in row.values())]
    if not rows:
        raise PointsFileError(f"{path}: no predictions (only a header)")
    found = _pair_counts(path, manifest, rows)
    return {pair: np.array([points[i][:2] for i in range(len(points))], dtype=np.float64)
            for pair, points in found.items()}


def predictions_table(predictions: dict[str, np.ndarray], label: str, space: str) -> pd.DataFrame:
    """The predictions as ``points.csv`` rows of the benchmark (method, pair, point, space, x, y)."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
    rows = [{"method": label, "pair": pair, "point": i, "space": space, "x": float(x), "y": float(y)}
            for pair, pts in predictions.items() for i, (x, y) in enumerate(pts)]
    return pd.DataFrame(rows, columns=POINTS_COLUMNS)


def score_predictions(points: pd.DataFrame, manifest: pd.DataFrame, label: str) -> pd.DataFrame:
    """Per-pair FIRE errors of one method's predicted points, as ``pairs.csv`` rows of the benchmark.

    Args:
        points: :func:`predictions_table` rows of method ``label``.
        manifest: every pair to score; those without points are failed (``no predictions``).
        label: the ``method`` column.

    Returns:
        One row per manifest pair (S, P, A, then by name) with :data:`PAIRS_COLUMNS`: mean error
        by :func:`firereg.evaluation.benchmark.rescore_points`, median and max over the points
        (full-resolution px, in the image named by ``direction``); seconds, Jacobian columns NaN.
    """
    truth = manifest.set_index("name")
    scored = rescore_points(points, manifest).set_index("pair") if len(points) else pd.DataFrame()
    order = {"S": 0, "P": 1, "A": 2}
    rows = []
    for row in sorted(manifest.to_dict("records"), key=lambda r: (order.get(r["category"], 9), r["name"])):
        name = row["name"]
        record = {"method": label, "pair": name, "category": row["category"], "mean_error": float("inf"),
                  "median_error": float("inf"), "max_error": float("inf"), "direction": "", "seconds": float("nan"),
                  "status": "failed", "reason": "no predictions", "jac_min": float("nan"), "folding_fraction": float("nan")}
        if name in scored.index:
            space = scored.loc[name, "direction"]
            sel = points[(points["pair"] == name) & (points["space"] == space)].sort_values("point")
            target = truth.loc[name, "fixed_points" if space == "fixed" else "moving_points"]
            d = point_distances(sel[["x", "y"]].to_numpy(), np.asarray(target))
            record.update(mean_error=float(scored.loc[name, "mean_error"]), median_error=float(np.median(d)),
                          max_error=float(d.max()), direction=space, status="ok", reason="")
        rows.append(record)
    return pd.DataFrame(rows, columns=PAIRS_COLUMNS)


def write_report(pairs: pd.DataFrame, points: pd.DataFrame, out: str | Path, notes: list[str]) -> pd.DataFrame:
    """Write ``pairs.csv``, ``points.csv``, ``summary.csv``/``summary.md`` and ``success_rate.png`` into ``out``.

    Returns:
        The summary (one row per method: AUC per category, mAUC, ...).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_to_csv(pairs, out / "pairs.csv")
    atomic_to_csv(points, out / "points.csv")
    summary = write_summary(pairs, out, notes)
    plot_success_rate(pairs, out / "success_rate.png")
    return summary


def _summary_notes(path: Path) -> list[str]:
    """The notes (data, pairs, size...) of an existing ``summary.md``: its bullets before the protocol lines."""
    notes = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        if line.startswith("- AUC:") or line.startswith("|"):
            break
        if line.startswith("- "):
            notes.append(line[2:])
    return notes


def check_merge(benchmark_out: str | Path, label: str, pairs: pd.Series | list[str]) -> tuple[pd.DataFrame, dict, list[str]]:
    """Check that method ``label`` with these scored pairs can be merged into a benchmark folder.

    Returns:
        The folder's ``pairs.csv`` table, its record of earlier merges (label → note) and its
        pairs (those the merged method's rows are restricted to).

    Raises:
        FileNotFoundError: if the folder has no ``pairs.csv``.
        ValueError: for a label the benchmark itself made, or benchmark pairs not among ``pairs``.
    """
    out = Path(benchmark_out)
    if not (out / "pairs.csv").is_file():
        raise FileNotFoundError(f"--merge {out}: no pairs.csv there (not a firereg benchmark folder)")
    old = pd.read_csv(out / "pairs.csv")
    merged_file = out / MERGED_NAME
    merged = json.loads(merged_file.read_text()) if merged_file.is_file() else {}
    if label in set(old["method"].astype(str)) and label not in merged:
        raise ValueError(f"--merge {out}: method {label!r} is one of that benchmark's own methods; "
                         "name the external one differently with --method-label")
    wanted = list(dict.fromkeys(old.loc[old["method"].astype(str) != label, "pair"].astype(str)))
    lacking = sorted(set(wanted) - set(pairs))
    if lacking:
        raise ValueError(f"--merge {out}: its pairs {', '.join(lacking[:10])} are not in the scored data")
    return old, merged, wanted


def merge_into_benchmark(pairs: pd.DataFrame, points: pd.DataFrame, benchmark_out: str | Path, note: str) -> pd.DataFrame:
    """Add one method's rows to a ``firereg benchmark`` folder and rewrite its summary and plot.

    Only the benchmark's pairs are added. A label already in the folder is refused unless an
    earlier merge added it (then its rows are replaced); ``merged_methods.json`` records the merges.

    Args:
        pairs, points: :func:`score_predictions` and :func:`predictions_table` rows of one method.
        benchmark_out: the benchmark folder (with ``pairs.csv``); locked while it is rewritten.
        note: a line for ``summary.md`` saying what was merged.

    Returns:
        The summary of the merged table.

    Raises:
        FileNotFoundError, ValueError: as :func:`check_merge`.
    """
    out = Path(benchmark_out)
    label = str(pairs["method"].iloc[0])
    with folder_lock(out, "firereg score --merge"):
        old, merged, wanted = check_merge(out, label, pairs["pair"])
        keep = old[old["method"].astype(str) != label]
        new_pairs = pd.concat([keep, pairs[pairs["pair"].isin(wanted)]], ignore_index=True)
        old_points = pd.read_csv(out / "points.csv") if (out / "points.csv").is_file() else pd.DataFrame(columns=POINTS_COLUMNS)
        new_points = pd.concat([old_points[old_points["method"].astype(str) != label],
                                points[points["pair"].isin(wanted)]], ignore_index=True)
        notes = [n for n in _summary_notes(out / "summary.md") if not n.startswith(f"merged {label}:")]
        summary = write_report(new_pairs, new_points, out, notes + [f"merged {label}: {note}"])
        atomic_write_text(out / MERGED_NAME, json.dumps({**merged, label: note}, indent=2))
        return summary


def _notes(manifest: pd.DataFrame, path: Path, space: str, scored: int) -> list[str]:
    counts = manifest["category"].value_counts()
    per_cat = ", ".join(f"{c} {int(counts.get(c, 0))}" for c in ("S", "P", "A"))
    excluded = manifest.attrs.get("excluded") or []
    what = ("fixed points predicted in the moving image" if space == "moving"
            else "moving points predicted in the fixed image")
    return [
        f"data: {manifest.attrs.get('root', '?')}",
        f"pairs: {len(manifest)} ({per_cat}); " + (f"excluded as known bad: {', '.join(excluded)}" if excluded
                                                    else "none excluded as known bad"),
        f"external predictions: {path} ({what}; {scored} pairs predicted, the others failed); "
        "scored by firereg score, errors in full-resolution pixels; seconds unknown",
    ]


def score_external(
    manifest: pd.DataFrame,
    points_path: str | Path,
    out: str | Path,
    space: str = "moving",
    label: str = "external",
    merge: str | Path | None = None,
) -> pd.DataFrame:
    """Score a predictions CSV with the FIRE protocol; write the report into ``out`` (and merge it).

    Args:
        manifest: the pairs (:func:`firereg.transforms.fire_reader.read_fire`); those the CSV
            lacks are failed.
        points_path: the predictions CSV (module doc), full-resolution px.
        out: output folder: ``pairs.csv``, ``points.csv``, ``summary.csv``, ``summary.md``,
            ``success_rate.png``.
        space: ``moving`` (fixed points predicted in the moving image) or ``fixed``.
        label: the method's name in the tables.
        merge: a ``firereg benchmark`` folder to add the method to (:func:`merge_into_benchmark`).

    Returns:
        The per-pair table (``pairs.csv``); ``attrs["summary"]``: the summary row(s) of ``out``.

    Raises:
        FileNotFoundError, PointsFileError, ValueError: bad CSV, space or merge folder, named.
    """
    points_path = Path(points_path)
    if space not in SPACES:
        raise ValueError(f"--space must be one of {', '.join(SPACES)}, got {space!r}")
    if merge is not None:  # before any work or file written
        check_merge(merge, label, manifest["name"])
    predictions = read_predictions(points_path, manifest)
    points = predictions_table(predictions, label, space)
    pairs = score_predictions(points, manifest, label)
    pairs.attrs["summary"] = write_report(pairs, points, out, _notes(manifest, points_path, space, len(predictions)))
    if merge is not None:
        note = f"external predictions {points_path} ({space} space), scored by firereg score"
        pairs.attrs["merged"] = merge_into_benchmark(pairs, points, merge, note)
    return pairs
