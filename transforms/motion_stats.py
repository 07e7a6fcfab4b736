"""How large and how nonlinear the motions of a FIRE folder are, in FIRE's published terms.

Per pair: the mean displacement of its control points, and the residual — the mean distance
left after the least-squares fit of a model (affine, homography, quadratic) mapping the fixed
control points onto the moving ones. Values come at the data's size (``_px``) and scaled to
FIRE's 2912 px (``_2912``), so a generated dataset at 1024 px compares with FIRE directly.
FIRE's own ground truth (133 pairs; medians over pairs, px at 2912) is
:data:`FIRE_REFERENCE`. Points are ``(x, y)`` full-resolution pixels (:mod:`firereg.transforms.coords`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from firereg.transforms.fire_reader import CATEGORIES
from firereg.transforms.global_models import fit_model
from firereg.transforms.io import image_size

__all__ = [
    "FIRE_SIZE",
    "FIRE_REFERENCE",
    "fit_affine",
    "fit_homography",
    "fit_quadratic",
    "pair_motion_statistics",
    "motion_statistics",
]

#: width of FIRE's photographs, px
FIRE_SIZE = 2912
#: FIRE's ground truth per category (px at 2912): displacement median / max, residual medians
FIRE_REFERENCE = pd.DataFrame(
    [
        {"category": "S", "pairs": 71, "displacement_median": 29.0, "displacement_max": 260.0,
         "affine_residual": 1.21, "homography_residual": 1.06, "quadratic_residual": 0.68},
        {"category": "P", "pairs": 48, "displacement_median": 789.0, "displacement_max": 1797.0,
         "affine_residual": 13.1, "homography_residual": 9.85, "quadratic_residual": 1.48},
        {"category": "A", "pairs": 14, "displacement_median": 44.0, "displacement_max": 93.0,
         "affine_residual": 5.3, "homography_residual": 4.7, "quadratic_residual": 3.4},
    ]
)
MODELS = ("affine", "homography", "quadratic")


def _fitted(kind: str, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``src`` mapped by the least-squares ``kind`` model of ``src`` onto ``dst`` ((N, 2) px);
    NaN where the fit fails (e.g. fewer points than parameters)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    try:
        return fit_model(kind, src, dst).apply(src)
    except (ValueError, np.linalg.LinAlgError):
        return np.full_like(dst, np.nan)


def fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares affine map of ``src`` onto ``dst`` ((N, 2) px, N >= 3); returns the fitted (N, 2)."""
    return _fitted("affine", src, dst)


def fit_quadratic(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 12-parameter quadratic map (``[1, x, y, x^2, xy, y^2]`` per axis) of ``src``
    onto ``dst`` ((N, 2) px, N >= 6); returns the fitted (N, 2)."""
    return _fitted("quadratic", src, dst)


def fit_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares homography (normalised DLT) of ``src`` onto ``dst`` ((N, 2) px, N >= 4);
    returns the fitted (N, 2), NaN where the fit fails."""
    return _fitted("homography", src, dst)


def _residual(fitted: np.ndarray, dst: np.ndarray) -> float:
    return float(np.mean(np.linalg.norm(fitted - dst, axis=1)))


def pair_motion_statistics(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per pair: name, category, size_px (image width), scale (2912 / size_px), and
    ``displacement``, ``affine_residual``, ``homography_residual``, ``quadratic_residual`` each
    as ``<name>_px`` (px of the data) and ``<name>_2912`` (scaled to FIRE's 2912 px).

    The residual of a model is the mean distance between the moving control points and the
    fixed control points mapped by the model's least-squares fit; NaN where the pair has too
    few points for the model (affine 3, homography 4, quadratic 6).
    """
    rows = []
    for row in manifest.itertuples(index=False):
        src = np.asarray(row.fixed_points, np.float64)
        dst = np.asarray(row.moving_points, np.float64)
        size = image_size(row.fixed)[0]
        values = {"displacement": _residual(src, dst)}
        for model, fit, minimum in (("affine", fit_affine, 3), ("homography", fit_homography, 4),
                                    ("quadratic", fit_quadratic, 6)):
            values[f"{model}_residual"] = _residual(fit(src, dst), dst) if len(src) >= minimum else np.nan
        record = {"name": row.name, "category": row.category, "size_px": size, "scale": FIRE_SIZE / size}
        for key, value in values.items():
            record[f"{key}_px"] = value
            record[f"{key}_2912"] = value * FIRE_SIZE / size
        rows.append(record)
    return pd.DataFrame(rows)


def motion_statistics(manifest: pd.DataFrame, scaled: bool = True) -> pd.DataFrame:
    """Per category (S, P, A, then "all"): pairs, displacement median and max, and the median
    residual after the affine, homography and quadratic fits — FIRE's published statistics.

    Args:
        manifest: a FIRE manifest (:func:`firereg.transforms.fire_reader.read_fire`).
        scaled: values in px at FIRE's 2912 px (compare with :data:`FIRE_REFERENCE`); False: px
            of the data.

    Returns:
        Columns category, pairs, displacement_median, displacement_max, affine_residual,
        homography_residual, quadratic_residual.
    """
    stats = pair_motion_statistics(manifest)
    suffix = "_2912" if scaled else "_px"
    rows = []
    if len(stats) == 0:
        return pd.DataFrame(columns=list(FIRE_REFERENCE.columns))
    for label in [c for c in CATEGORIES if (stats["category"] == c).any()] + ["all"]:
        group = stats if label == "all" else stats[stats["category"] == label]
        record = {"category": label, "pairs": len(group),
                  "displacement_median": group[f"displacement{suffix}"].median(),
                  "displacement_max": group[f"displacement{suffix}"].max()}
        for model in MODELS:
            record[f"{model}_residual"] = group[f"{model}_residual{suffix}"].median()
        rows.append(record)
    return pd.DataFrame(rows)
