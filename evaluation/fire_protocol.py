"""The FIRE evaluation protocol, as the literature computes it (see shared DESIGN.md).

- Error of a pair: mean Euclidean distance over its control points, full-resolution pixels.
- Success rate at threshold ``t``: share of pairs with error ``< t`` (strictly less).
- AUC of a category: mean of the success rate over ``t = 1, 2, ..., 25`` pixels.
- mAUC: mean of the S, P, A AUCs.
- Failed: the method produced no transform; its error counts as infinite.
  Inaccurate: max error > 50 px or median error > 20 px. Acceptable: the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "FIRE_THRESHOLDS",
    "CATEGORIES",
    "INACCURATE_MAX",
    "INACCURATE_MEDIAN",
    "PAIR_COLUMNS",
    "success_rate",
    "fire_auc",
    "classify_errors",
    "summarize",
    "success_curves",
]

#: Thresholds of the FIRE success curve, pixels: 1, 2, ..., 25.
FIRE_THRESHOLDS = np.arange(1, 26)

#: FIRE categories: S (super-imposed, large overlap), P (partial overlap), A (anatomical change).
CATEGORIES = ("S", "P", "A")

#: A pair whose largest control-point distance exceeds this (pixels) is inaccurate.
INACCURATE_MAX = 50.0
#: A pair whose median control-point distance exceeds this (pixels) is inaccurate.
INACCURATE_MEDIAN = 20.0

#: Columns :func:`summarize` and :func:`success_curves` need, one row per (method, pair).
PAIR_COLUMNS = ("method", "pair", "category", "mean_error", "median_error", "max_error", "status", "seconds")


def _errors_array(errors: Sequence[float] | np.ndarray) -> np.ndarray:
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 1:
        raise ValueError(f"errors must be a 1-D array of per-pair mean errors, got shape {e.shape}")
    if e.size == 0:
        raise ValueError("errors is empty: no pairs to evaluate")
    if np.isnan(e).any():
        raise ValueError(
            f"errors contain NaN at positions {np.flatnonzero(np.isnan(e)).tolist()}; "
            "use np.inf for failed pairs"
        )
    if (e < 0).any():
        raise ValueError(f"errors must be non-negative distances, got minimum {e.min()}")
    return e


def success_rate(
    errors: Sequence[float] | np.ndarray, thresholds: Sequence[float] | np.ndarray = FIRE_THRESHOLDS
) -> np.ndarray:
    """Share of pairs whose mean error is strictly below each threshold.

    Args:
        errors: (P,) per-pair mean errors, pixels; ``np.inf`` for failed pairs.
        thresholds: (T,) thresholds, pixels; default :data:`FIRE_THRESHOLDS` (1..25).

    Returns:
        (T,) float array in [0, 1]: for each ``t``, the fraction of pairs with error ``< t``.

    Raises:
        ValueError: if ``errors`` is empty, not 1-D, contains NaN or negative values, or
            ``thresholds`` is empty or not 1-D.
    """
    e = _errors_array(errors)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D array, got shape {t.shape}")
    return (e[None, :] < t[:, None]).mean(axis=1)


def fire_auc(
    errors: Sequence[float] | np.ndarray, thresholds: Sequence[float] | np.ndarray = FIRE_THRESHOLDS
) -> float:
    """FIRE AUC: the mean of :func:`success_rate` over the thresholds.

    Args:
        errors: (P,) per-pair mean errors, pixels; ``np.inf`` for failed pairs.
        thresholds: (T,) thresholds, pixels; default :data:`FIRE_THRESHOLDS` (1..25).

    Returns:
        The AUC in [0, 1].

    Raises:
        ValueError: as :func:`success_rate`.
    """
    return float(np.mean(success_rate(errors, thresholds)))


def classify_errors(median_error: float, max_error: float, failed: bool) -> str:
    """Classify a pair from its median and largest control-point distance.

    Args:
        median_error: median distance over the pair's control points, pixels.
        max_error: largest distance, pixels.
        failed: whether the method produced no transform.

    Returns:
        ``"failed"`` if ``failed``; ``"inaccurate"`` if ``max_error > 50`` or
        ``median_error > 20`` (or either is not finite); else ``"acceptable"``.
    """
    if failed:
        return "failed"
    median_error = float(median_error)
    max_error = float(max_error)
    if not (np.isfinite(median_error) and np.isfinite(max_error)):
        return "inaccurate"
    if max_error > INACCURATE_MAX or median_error > INACCURATE_MEDIAN:
        return "inaccurate"
    return "acceptable"


def _check_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in PAIR_COLUMNS if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs table lacks columns {missing}; it has {list(pairs.columns)}")
    if len(pairs) == 0:
        raise ValueError("pairs table is empty")
    bad_cat = sorted(set(pairs["category"]) - set(CATEGORIES))
    if bad_cat:
        raise ValueError(f"unknown categories {bad_cat}; expected one of {CATEGORIES}")
    bad_status = sorted(set(pairs["status"]) - {"ok", "failed"})
    if bad_status:
        raise ValueError(f"unknown status values {bad_status}; expected 'ok' or 'failed'")
    dup = pairs.duplicated(subset=["method", "pair"])
    if dup.any():
        first = pairs.loc[dup, ["method", "pair"]].iloc[0].tolist()
        raise ValueError(f"pairs table has {int(dup.sum())} duplicate (method, pair) rows, e.g. {first}")
    out = pairs.copy()
    # A failed pair counts as infinite error, whatever was written in its error columns.
    failed = out["status"] == "failed"
    for col in ("mean_error", "median_error", "max_error"):
        out[col] = out[col].astype(np.float64)
        out.loc[failed, col] = np.inf
    return out


def summarize(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row of FIRE results per method.

    Args:
        pairs: one row per (method, pair) with columns ``method``, ``pair``, ``category``
            (``"S"``, ``"P"`` or ``"A"``), ``mean_error``, ``median_error``, ``max_error``
            (pixels; inf for failed pairs), ``status`` (``"ok"`` or ``"failed"``) and
            ``seconds``. Rows with status ``"failed"`` count as infinite error whatever
            their error columns hold.

    Returns:
        One row per method, in order of first appearance, with columns ``method``,
        ``n_pairs``, ``auc_S``, ``auc_P``, ``auc_A`` (NaN for a category without pairs),
        ``mAUC`` (mean of the AUCs of categories that have pairs; NaN if none),
        ``median_error`` (median of the per-pair mean errors, failed pairs as inf, pixels),
        ``failed``, ``inaccurate``, ``acceptable`` (pair counts, classified from the
        ``median_error``/``max_error`` columns) and ``median_seconds`` (NaN skipped); when
        ``pairs`` has a ``folding_fraction`` column, also ``folding_pct`` (mean share of the
        fixed field of view where the map folds, over successful pairs, percent).

    Raises:
        ValueError: if columns are missing, the table is empty, a category or status is
            unknown, a (method, pair) appears twice, or a mean error is NaN.
    """
    table = _check_pairs(pairs)
    rows = []
    for method in pd.unique(table["method"]):
        sub = table[table["method"] == method]
        row: dict[str, object] = {"method": method, "n_pairs": int(len(sub))}
        aucs = []
        for cat in CATEGORIES:
            errs = sub.loc[sub["category"] == cat, "mean_error"].to_numpy()
            auc = fire_auc(errs) if errs.size else float("nan")
            row[f"auc_{cat}"] = auc
            if errs.size:
                aucs.append(auc)
        row["mAUC"] = float(np.mean(aucs)) if aucs else float("nan")
        row["median_error"] = float(np.median(_errors_array(sub["mean_error"].to_numpy())))
        classes = [
            classify_errors(med, mx, failed=(status == "failed"))
            for med, mx, status in zip(sub["median_error"], sub["max_error"], sub["status"])
        ]
        for name in ("failed", "inaccurate", "acceptable"):
            row[name] = int(sum(c == name for c in classes))
        row["median_seconds"] = float(sub["seconds"].astype(np.float64).median())
        if "folding_fraction" in sub.columns:  # optional: deformation quality of the maps
            ok = sub["status"] == "ok"
            row["folding_pct"] = float(100 * sub.loc[ok, "folding_fraction"].astype(np.float64).mean())
        rows.append(row)
    columns = [
        "method",
        "n_pairs",
        *(f"auc_{c}" for c in CATEGORIES),
        "mAUC",
        "median_error",
        "failed",
        "inaccurate",
        "acceptable",
        "median_seconds",
    ]
    if "folding_fraction" in table.columns:
        columns.append("folding_pct")
    return pd.DataFrame(rows, columns=columns)


def success_curves(
    pairs: pd.DataFrame, thresholds: Sequence[float] | np.ndarray = FIRE_THRESHOLDS
) -> pd.DataFrame:
    """Success rate against threshold per method and category, long format for plotting.

    Args:
        pairs: the per-pair table of :func:`summarize`.
        thresholds: thresholds, pixels; default :data:`FIRE_THRESHOLDS` (1..25).

    Returns:
        Columns ``method``, ``category`` (``"S"``, ``"P"``, ``"A"`` for categories that
        have pairs, then ``"all"``), ``threshold`` (pixels) and ``success_rate`` (in [0, 1]);
        methods in order of first appearance.

    Raises:
        ValueError: as :func:`summarize`.
    """
    table = _check_pairs(pairs)
    t = np.asarray(thresholds, dtype=np.float64)
    frames = []
    for method in pd.unique(table["method"]):
        sub = table[table["method"] == method]
        groups = [(cat, sub.loc[sub["category"] == cat, "mean_error"].to_numpy()) for cat in CATEGORIES]
        groups = [(cat, errs) for cat, errs in groups if errs.size]
        groups.append(("all", sub["mean_error"].to_numpy()))
        for cat, errs in groups:
            frames.append(
                pd.DataFrame(
                    {
                        "method": method,
                        "category": cat,
                        "threshold": t,
                        "success_rate": success_rate(errs, t),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)
