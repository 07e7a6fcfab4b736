"""A short description of a FIRE folder: pairs per category, overlap, landmark displacement, and how
large and nonlinear its motions are next to FIRE's (:mod:`firereg.transforms.motion_stats`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from firereg.transforms.fire_generator import read_generator_metadata
from firereg.transforms.fire_reader import CATEGORIES
from firereg.transforms.motion_stats import FIRE_REFERENCE, motion_statistics

__all__ = ["pair_statistics", "summarize_dataset", "motion_summary", "MOTION_SUMMARY_TITLE"]

#: the line printed above :func:`motion_summary`
MOTION_SUMMARY_TITLE = (
    "motion, px scaled to FIRE's 2912 px: displacement median/max and median residual after the "
    "least-squares affine, homography and quadratic fit of the control points; this data, then FIRE's"
)


def pair_statistics(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per pair: name, category, n_points, mean displacement (px), overlap.

    The displacement of a pair is the mean distance between its fixed and moving control
    points in full-resolution pixels (the identity method's landmark error). The overlap
    (share of the fixed field of view also seen in the moving image) is known only for
    generated data (``generator.json``); it is NaN for real FIRE.
    """
    meta = read_generator_metadata(manifest.attrs["root"]) if "root" in manifest.attrs else None
    overlaps = {name: rec["overlap"] for name, rec in (meta or {}).get("pairs", {}).items()}
    rows = []
    for row in manifest.itertuples(index=False):
        disp = np.linalg.norm(np.asarray(row.moving_points) - np.asarray(row.fixed_points), axis=1)
        rows.append(
            {
                "name": row.name,
                "category": row.category,
                "n_points": len(disp),
                "displacement_px": float(disp.mean()),
                "overlap": float(overlaps.get(row.name, np.nan)),
            }
        )
    return pd.DataFrame(rows)


def summarize_dataset(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per category (S, P, A, then "all"): pairs, mean/min/max overlap, mean displacement (px)."""
    stats = pair_statistics(manifest)
    groups = [(c, stats[stats["category"] == c]) for c in CATEGORIES] + [("all", stats)]
    rows = []
    for label, group in groups:
        if len(group) == 0:
            continue
        rows.append(
            {
                "category": label,
                "pairs": len(group),
                "overlap_mean": group["overlap"].mean(),
                "overlap_min": group["overlap"].min(),
                "overlap_max": group["overlap"].max(),
                "displacement_mean_px": group["displacement_px"].mean(),
            }
        )
    return pd.DataFrame(rows)


def motion_summary(manifest: pd.DataFrame) -> pd.DataFrame:
    """:func:`firereg.transforms.motion_stats.motion_statistics` of ``manifest`` (px at FIRE's
    2912 px; rows with data "this", categories S, P, A, all) followed by FIRE's published values
    (rows with data "FIRE").

    Columns: data, category, pairs, disp_median, disp_max, affine_res, homography_res, quadratic_res.
    """
    names = {"displacement_median": "disp_median", "displacement_max": "disp_max", "affine_residual": "affine_res",
             "homography_residual": "homography_res", "quadratic_residual": "quadratic_res"}
    table = pd.concat([motion_statistics(manifest).assign(data="this"), FIRE_REFERENCE.assign(data="FIRE")],
                      ignore_index=True)
    return table[["data", *FIRE_REFERENCE.columns]].rename(columns=names)
