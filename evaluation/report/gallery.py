"""Report figures beyond the success-rate curves: error box plots, a registration gallery
(best, median and worst pair of each method) and deformation-grid pictures.

Every error is a pair's mean control-point distance in full-resolution pixels, as in
``pairs.csv`` (:mod:`firereg.evaluation.benchmark`); a failed pair counts as infinite error.
Images are row-major and points and grids are full-resolution pixels (conventions:
:mod:`firereg.transforms.coords`).

The gallery re-registers the pairs it shows with the same method at the same benchmark
size as the benchmark run (elastix runs with a fixed random seed and the networks have no
randomness at inference, so it sees what the benchmark saw); its captions quote the
benchmark's own error from ``pairs.csv``, so the figures and the tables cannot disagree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from firereg.evaluation.fire_protocol import CATEGORIES  # noqa: E402
from firereg.evaluation.report.figures import (  # noqa: E402
    checkerboard,
    colour_overlay,
    display_grey,
    save_figure,
)
from firereg.evaluation.results import RegistrationMethod, RegistrationResult  # noqa: E402
from firereg.transforms.io import atomic_to_csv  # noqa: E402

__all__ = [
    "ROLES",
    "PICK_COLUMNS",
    "file_label",
    "pair_errors",
    "pick_gallery_pairs",
    "plot_error_boxplot",
    "grid_lines",
    "deformation_grid",
    "make_gallery",
]

#: the pairs shown per method, in this order
ROLES = ("best", "median", "worst")
#: columns of :func:`pick_gallery_pairs` (and of ``index.csv`` in the gallery folder)
PICK_COLUMNS = ["method", "role", "pair", "category", "mean_error", "status"]


def file_label(label: str) -> str:
    """A method label made safe for file names (letters, digits, ``_ . + -``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", label)


def pair_errors(pairs: pd.DataFrame) -> pd.Series:
    """Per-row mean error (px) of a ``pairs.csv`` table with failed pairs as ``inf``."""
    missing = {"method", "pair", "category", "mean_error", "status"} - set(pairs.columns)
    if missing:
        raise ValueError(f"pairs table lacks columns {sorted(missing)}; it has {list(pairs.columns)}")
    errors = pairs["mean_error"].astype(np.float64).copy()
    errors[pairs["status"] != "ok"] = np.inf
    return errors


def pick_gallery_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """The best, median and worst pair of each method by mean error.

    Pairs are ordered by mean error (failed = inf), ties by pair name; of ``n`` pairs,
    best is the first, worst the last and median the ``(n - 1) // 2``-th (the lower
    median). With fewer than three pairs a pair fills more than one role.

    Args:
        pairs: a ``pairs.csv`` table (``method``, ``pair``, ``category``, ``mean_error``, ``status``).

    Returns:
        :data:`PICK_COLUMNS`, three rows per method (roles in :data:`ROLES` order),
        methods in order of first appearance; ``mean_error`` is ``inf`` for a failed pair.

    Raises:
        ValueError: if columns are missing or the table is empty.
    """
    errors = pair_errors(pairs)
    if len(pairs) == 0:
        raise ValueError("pairs table is empty: nothing to pick")
    table = pairs.assign(_error=errors)
    rows = []
    for method in pd.unique(table["method"]):
        sub = table[table["method"] == method].sort_values(["_error", "pair"], kind="stable").reset_index(drop=True)
        n = len(sub)
        for role, index in zip(ROLES, (0, (n - 1) // 2, n - 1)):
            row = sub.iloc[index]
            rows.append({"method": method, "role": role, "pair": row["pair"], "category": row["category"],
                         "mean_error": float(row["_error"]), "status": row["status"]})
    return pd.DataFrame(rows, columns=PICK_COLUMNS)


def plot_error_boxplot(pairs: pd.DataFrame, path: str | Path) -> Path:
    """Box plots of the per-pair mean error (px, log scale), one panel per category plus "all".

    One box per method (with its pairs as dots); failed pairs cannot be drawn on the
    axis, so each panel writes how many pairs of a method failed above its box.

    Raises:
        ValueError: if columns are missing or the table is empty.
    """
    errors = pair_errors(pairs)
    if len(pairs) == 0:
        raise ValueError("pairs table is empty: nothing to plot")
    table = pairs.assign(_error=errors)
    methods = list(pd.unique(table["method"]))
    panels = [c for c in CATEGORIES if c in set(table["category"])] + ["all"]
    finite = table.loc[np.isfinite(table["_error"]), "_error"]
    low = max(float(finite.min()) / 1.5, 0.05) if len(finite) else 0.1
    high = max(float(finite.max()) * 2.5, 10.0) if len(finite) else 100.0
    width = max(4.0, 0.55 * len(methods) + 1.5)
    ncols = 2 if len(panels) == 4 else len(panels)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 4.2 * nrows), sharey=True, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    rng = np.random.default_rng(0)  # jitter of the dots only
    for ax in axes.ravel()[len(panels):]:
        ax.remove()
    for ax, category in zip(axes.ravel(), panels):
        sub = table if category == "all" else table[table["category"] == category]
        for position, method in enumerate(methods, start=1):
            errs = sub.loc[sub["method"] == method, "_error"].to_numpy()
            shown = np.clip(errs[np.isfinite(errs)], low, None)
            if shown.size:
                ax.boxplot([shown], positions=[position], widths=0.6, showfliers=False)
                ax.scatter(position + rng.uniform(-0.15, 0.15, shown.size), shown, s=10, alpha=0.6, zorder=3,
                           color=colours[(position - 1) % len(colours)])
            failed = int((~np.isfinite(errs)).sum())
            if failed:
                ax.text(position, high / 1.6, f"{failed} failed", ha="center", va="top", fontsize=7, color="crimson")
        ax.set_yscale("log")
        ax.set_ylim(low, high)
        ax.set_xlim(0.4, len(methods) + 0.6)
        ax.set_xticks(range(1, len(methods) + 1))
        ax.set_xticklabels(methods, rotation=40, ha="right", fontsize=8)
        ax.set_title(f"category {category}" if category != "all" else "all pairs")
        ax.grid(alpha=0.3, axis="y", which="both")
    for row in axes:
        row[0].set_ylabel("mean landmark error (px, log)")
    fig.tight_layout()
    return save_figure(fig, path)


def grid_lines(shape: tuple[int, int], lines: int = 16, width: int | None = None) -> np.ndarray:
    """(H, W) float32 image of a regular grid: 1 on the lines, 0 elsewhere.

    Args:
        shape: ``(H, W)`` pixels.
        lines: grid cells along the longer side (spacing = longest side / ``lines`` px).
        width: line width in pixels; default ``max(1, longest side // 256)``.
    """
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1 or lines < 1:
        raise ValueError(f"need a positive shape and lines, got shape {shape} and lines {lines}")
    spacing = max(h, w) / lines
    width = width or max(1, max(h, w) // 256)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    on = ((xs + 0.5) % spacing < width) | ((ys + 0.5) % spacing < width)
    return on.astype(np.float32)


def deformation_grid(result: RegistrationResult, fixed: np.ndarray, lines: int = 16) -> np.ndarray:
    """A regular grid of the moving image pulled onto the fixed image, drawn over it.

    The fixed pixel ``p`` shows the grid at the moving position ``result.fixed_to_moving(p)``
    (the grid image resampled with :meth:`RegistrationResult.warp_moving`), so straight
    lines bend, turn and crowd exactly where the fixed → moving map does.

    Args:
        result: a registration of this fixed image.
        fixed: (H, W[, C]) fixed image, row-major.
        lines: grid cells along the moving image's longer side.

    Returns:
        (H, W, 3) uint8: the fixed image in grey, the warped grid in yellow.
    """
    if tuple(np.asarray(fixed).shape[:2]) != result.fixed_shape:
        raise ValueError(f"fixed image has shape {np.asarray(fixed).shape[:2]}, the result expects {result.fixed_shape}")
    grid = np.clip(result.warp_moving(grid_lines(result.moving_shape, lines)), 0, 1)[..., None]
    base = np.repeat(0.85 * display_grey(fixed)[..., None], 3, axis=2)
    yellow = np.array([1.0, 0.85, 0.0], dtype=np.float32)
    return (np.clip(base * (1 - grid) + yellow * grid, 0, 1) * 255).astype(np.uint8)


def _fit(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _error_text(error: float) -> str:
    return "failed" if not math.isfinite(error) else f"{error:.2f} px"


def _gallery_figure(method: str, shown: list[dict], max_side: int) -> plt.Figure:
    """Rows = picks; columns = checkerboard, overlay after, overlay before registration."""
    columns = ("checkerboard (after)", "overlay after", "overlay before")
    fig, axes = plt.subplots(len(shown), 3, figsize=(9.6, 3.3 * len(shown)), squeeze=False)
    for row, item in zip(axes, shown):
        pick = item["pick"]
        fixed, moving, warped = item["fixed"], item["moving"], item["warped"]
        before = colour_overlay(fixed, moving) if fixed.shape == moving.shape else None
        panels = (
            (checkerboard(fixed, warped) if warped is not None else None, "gray"),
            (colour_overlay(fixed, warped) if warped is not None else None, None),
            (before, None),
        )
        for ax, (image, cmap), title in zip(row, panels, columns):
            ax.axis("off")
            if image is None:
                ax.text(0.5, 0.5, "no registration" if warped is None else "sizes differ", ha="center", va="center",
                        transform=ax.transAxes, fontsize=9, wrap=True)
            else:
                ax.imshow(_fit(image, max_side), cmap=cmap, vmin=0, vmax=255)
            ax.set_title(title, fontsize=8)
        row[0].text(-0.04, 0.5, f"{pick['role']}: {pick['pair']} ({pick['category']})\n{_error_text(pick['mean_error'])}",
                    transform=row[0].transAxes, ha="right", va="center", fontsize=9)
        if item["reason"]:
            row[1].text(0.5, 0.1, item["reason"][:90], transform=row[1].transAxes, ha="center", fontsize=7,
                        color="crimson", wrap=True)
    fig.suptitle(f"{method}: best, median and worst pair (magenta = fixed, green = warped moving)", fontsize=10)
    fig.tight_layout(rect=(0.1, 0, 1, 0.97))
    return fig


def _deformation_figure(method: str, shown: list[dict], max_side: int, lines: int) -> plt.Figure:
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 3.9), squeeze=False)
    for ax, item in zip(axes[0], shown):
        pick = item["pick"]
        ax.axis("off")
        if item["result"] is None:
            ax.text(0.5, 0.5, "no registration", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.imshow(_fit(deformation_grid(item["result"], item["fixed"], lines), max_side))
        ax.set_title(f"{pick['role']}: {pick['pair']} ({pick['category']}), {_error_text(pick['mean_error'])}", fontsize=8)
    fig.suptitle(f"{method}: moving-image grid pulled onto the fixed image by the fixed → moving map", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def _load_index(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, dtype={"pair": str, "method": str, "role": str, "category": str, "status": str})
    except (ValueError, pd.errors.ParserError):
        return None


def _same_picks(old: pd.DataFrame | None, new: pd.DataFrame) -> bool:
    if old is None or list(old.columns) != PICK_COLUMNS or len(old) != len(new):
        return False
    a = old.reset_index(drop=True)
    b = new.reset_index(drop=True)
    for column in ("method", "role", "pair", "category", "status"):
        if not (a[column].astype(str) == b[column].astype(str)).all():
            return False
    return bool(np.allclose(a["mean_error"].astype(float), b["mean_error"].astype(float), rtol=0, atol=1e-9, equal_nan=True))


def _register_picks(method: RegistrationMethod, label: str, picks: pd.DataFrame, rows: dict[str, dict],
                    bar: tqdm) -> list[dict]:
    """Register each picked pair once (a failure is kept as its reason); one entry per pick."""
    from firereg.evaluation.benchmark import load_pair

    shown, done = [], {}
    for pick in picks.to_dict("records"):
        if pick["pair"] not in done:
            bar.set_postfix_str(f"{label} {pick['pair']}")
            fixed, moving, fixed_mask, moving_mask = load_pair(rows[pick["pair"]])
            result, warped, reason = None, None, ""
            try:
                result = method.register(fixed, moving, fixed_mask, moving_mask)
                warped = result.warp_moving(moving)
            except Exception as err:  # a failed registration is shown as such, not a crash
                result, reason = None, f"{type(err).__name__}: {err}"
            done[pick["pair"]] = {"fixed": fixed, "moving": moving, "result": result, "warped": warped,
                                  "reason": reason}
            bar.update()
        shown.append({**done[pick["pair"]], "pick": pick})
    return shown


def make_gallery(
    pairs: pd.DataFrame,
    manifest: pd.DataFrame,
    methods: Mapping[str, RegistrationMethod],
    out: str | Path,
    deformation_methods: Sequence[str] = (),
    max_side: int = 384,
    lines: int = 16,
    progress: bool = True,
) -> dict[str, list[Path]]:
    """Write ``OUT/gallery/<method>.png`` for every method and ``OUT/deformation/<method>.png``
    for ``deformation_methods``, showing the best, median and worst pair of each.

    Each shown pair is registered again with ``methods[label]`` (the method at the
    benchmark size, e.g. :class:`firereg.evaluation.results.ResizedMethod`); captions
    give the error from ``pairs``. ``OUT/gallery/index.csv`` records the picks: a method
    whose picks and files are unchanged since the last call is not registered again.

    Args:
        pairs: the benchmark's ``pairs.csv`` table.
        manifest: the benchmarked pairs (:func:`firereg.transforms.fire_reader.read_fire` rows).
        methods: label → method, for every method of ``pairs``.
        out: folder receiving ``gallery/`` and ``deformation/``.
        deformation_methods: labels that also get a deformation-grid picture.
        max_side: longest side of each image panel, pixels.
        lines: grid cells of the deformation pictures.
        progress: show a progress bar.

    Returns:
        ``{"gallery": [...], "deformation": [...]}``: the figure paths, in method order.

    Raises:
        ValueError: if a method of ``pairs`` has no entry in ``methods`` or a picked pair
            is not in ``manifest``.
    """
    out = Path(out)
    picks = pick_gallery_pairs(pairs)
    labels = list(pd.unique(picks["method"]))
    missing = [m for m in labels + list(deformation_methods) if m not in methods]
    if missing:
        raise ValueError(f"no method given for {missing}; have {sorted(methods)}")
    rows = {row["name"]: row for row in manifest.to_dict("records")}
    unknown = sorted(set(picks["pair"]) - set(rows))
    if unknown:
        raise ValueError(f"picked pairs {unknown} are not in the manifest")
    index_path = out / "gallery" / "index.csv"
    previous = _load_index(index_path)

    def paths_of(label: str) -> list[Path]:
        name = file_label(label)
        found = [out / "gallery" / f"{name}.png"]
        if label in deformation_methods:
            found.append(out / "deformation" / f"{name}.png")
        return found

    todo = []
    for label in labels:
        mine = picks[picks["method"] == label]
        old = previous[previous["method"] == label] if previous is not None else None
        if _same_picks(old, mine) and all(p.is_file() for p in paths_of(label)):
            continue
        todo.append(label)
    bar = tqdm(total=sum(picks.loc[picks["method"] == m, "pair"].nunique() for m in todo), desc="gallery",
               unit="pair", disable=not progress)
    for label in todo:
        shown = _register_picks(methods[label], label, picks[picks["method"] == label], rows, bar)
        name = file_label(label)
        save_figure(_gallery_figure(label, shown, max_side), out / "gallery" / f"{name}.png")
        if label in deformation_methods:
            save_figure(_deformation_figure(label, shown, max_side, lines), out / "deformation" / f"{name}.png")
    bar.close()
    atomic_to_csv(picks, index_path)
    return {
        "gallery": [out / "gallery" / f"{file_label(m)}.png" for m in labels],
        "deformation": [out / "deformation" / f"{file_label(m)}.png" for m in labels if m in deformation_methods],
    }
