"""The demo's report: ``OUT/report/report.md``, its tables and figures, and a short reading of the results.

Every number of ``report.md`` is read back from the files it sits next to (``summary.csv``,
``pairs.csv``), so the text and the tables cannot disagree. Tables are written by
:func:`firereg.evaluation.report.tables.markdown_table` (the benchmark's ``summary.md`` uses
the same writer); errors are mean control-point distances in full-resolution pixels.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from firereg.evaluation.report.tables import format_cell, markdown_table
from firereg.pipelines.inference.refine import (
    FUNDUS_REFINEMENT,
    FUNDUS_REFINEMENT_LAMBDA,
)
from firereg.pipelines.method_specs import DEFAULT_TTO_STEPS, parse_method_spec
from firereg.transforms.fire_generator import read_generator_metadata
from firereg.transforms.fire_reader import CATEGORIES, KNOWN_BAD_PAIRS
from firereg.transforms.io import atomic_output, atomic_write_text

if TYPE_CHECKING:
    from firereg.pipelines.demo.run import DemoConfig, DemoPaths

__all__ = ["REFERENCE", "DemoRun", "category_counts", "reading", "report_lines", "write_report"]

#: the baseline the reading of the results measures the deep model against
REFERENCE = "elastix-bspline"


@dataclass
class DemoRun:
    """What one demo invocation did, as the report tells it.

    Attributes:
        config: the demo's settings.
        paths: its output folders.
        root: the FIRE folder (real or generated).
        manifest: every pair of the data (P37 excluded).
        split: the train/validation split (``split.csv``).
        val_manifest: the validation pairs, the ones benchmarked.
        training: the contents of ``run/demo_training.json``
            (:func:`firereg.pipelines.demo.run.train_model`).
        specs: method label → benchmark spec.
        model: the trained model's name (e.g. ``cascade``).
        stage_seconds: wall time of each stage of this invocation, seconds.
        stage_notes: a note per stage (e.g. "finished run reused").
        fresh: (method, pair) registrations run in this invocation.
        reused: (method, pair) records reused from earlier runs.
    """

    config: DemoConfig
    paths: DemoPaths
    root: Path
    manifest: pd.DataFrame
    split: pd.DataFrame
    val_manifest: pd.DataFrame
    training: dict
    specs: dict[str, str]
    model: str
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_notes: dict[str, str] = field(default_factory=dict)
    fresh: int = 0
    reused: int = 0


# ----------------------------------------------------------------------------- reading


def category_counts(frame: pd.DataFrame) -> str:
    """Pairs per category as text: ``S 3, P 2, A 1``."""
    counts = frame["category"].value_counts()
    return ", ".join(f"{c} {int(counts.get(c, 0))}" for c in CATEGORIES)


def _compare(a: float, b: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)):
        return "cannot be compared with"
    if round(a, 3) == round(b, 3):
        return "ties with"
    return "beats" if a > b else "does not beat"


def reading(summary: pd.DataFrame, model: str, tto_label: str, reference: str = REFERENCE) -> list[str]:
    """A short reading of the results, every number taken from ``summary`` (``summary.csv``).

    States the best method by mAUC, whether ``model`` (and ``tto_label``) beats
    ``reference`` overall and on P pairs, the effect of test-time refinement and failures.
    """
    table = summary.set_index("method")
    lines = []
    mauc = table["mAUC"].astype(float)
    if mauc.notna().any():
        best = mauc.max()
        winners = [m for m, v in mauc.items() if round(v, 3) == round(best, 3)]
        lines.append(f"Best method by mAUC: **{' and '.join(winners)}** (mAUC {format_cell(best)}).")
    for label in (model, tto_label):
        if label not in table.index or reference not in table.index:
            continue
        a, b = table.loc[label], table.loc[reference]
        text = (f"**{label}** {_compare(a['mAUC'], b['mAUC'])} {reference} overall "
                f"(mAUC {format_cell(a['mAUC'])} vs {format_cell(b['mAUC'])})")
        if math.isfinite(a["auc_P"]) and math.isfinite(b["auc_P"]):
            text += (f" and {_compare(a['auc_P'], b['auc_P'])} it on the P pairs "
                     f"(AUC {format_cell(a['auc_P'])} vs {format_cell(b['auc_P'])}).")
        else:
            text += "; there are no P pairs in the validation split."
        lines.append(text)
    if model in table.index and tto_label in table.index:
        a, b = table.loc[model], table.loc[tto_label]
        delta = round(b["mAUC"], 3) - round(a["mAUC"], 3)
        if delta == 0 or not math.isfinite(delta):
            effect = f"leaves the {model}'s mAUC at {format_cell(a['mAUC'])}"
        else:
            effect = (f"{'raises' if delta > 0 else 'lowers'} the {model}'s mAUC from {format_cell(a['mAUC'])} "
                      f"to {format_cell(b['mAUC'])}")
        lines.append(
            f"Test-time refinement ({DEFAULT_TTO_STEPS} steps per pyramid level) {effect} and moves its median error from "
            f"{format_cell(a['median_error'])} px to "
            f"{format_cell(b['median_error'])} px, at a median of {format_cell(b['median_seconds'])} s per pair "
            f"instead of {format_cell(a['median_seconds'])} s."
        )
    failed = table["failed"].astype(int)
    if failed.any():
        lines.append("Failed pairs (no transform, counted as infinite error): "
                     + ", ".join(f"{m} {int(n)}" for m, n in failed.items() if n) + ".")
    else:
        lines.append("No method failed on any pair.")
    return lines


def _noise_line(val_manifest: pd.DataFrame) -> str:
    """How much one pair weighs in each category's AUC (a pair moves it by up to 1/n)."""
    counts = val_manifest["category"].value_counts()
    weights = ", ".join(f"{c} 1/{int(counts[c])} = {1 / int(counts[c]):.3f}" for c in CATEGORIES if counts.get(c, 0))
    return (f"One validation pair moves its category's AUC by up to 1/n ({weights}); differences smaller than "
            "that can hinge on a single pair.")


def _data_lines(root: Path, manifest: pd.DataFrame, split: pd.DataFrame) -> list[str]:
    meta = read_generator_metadata(root)
    if meta is not None:
        cfg = meta.get("config", {})
        pairs = cfg.get("pairs", {})
        lines = [
            f"- Data: `{root}`, **generated** by `firereg make-data` (a FIRE-format dataset, not the real FIRE) "
            f"from the fundus photograph **{meta.get('source', '?')}**: {cfg.get('size', '?')} x {cfg.get('size', '?')} px, "
            f"seed {cfg.get('seed', '?')}, {cfg.get('n_points', '?')} control points per pair, "
            f"pairs asked for: " + ", ".join(f"{k} {v}" for k, v in pairs.items()) + "."
        ]
    else:
        lines = [f"- Data: `{root}`, the **real FIRE** dataset (no `generator.json`)."]
    excluded = manifest.attrs.get("excluded") or []
    bad = ", ".join(KNOWN_BAD_PAIRS)
    if excluded:
        p37 = f"{', '.join(excluded)} excluded: FIRE's ground truth for it is known to be wrong (community practice)."
    else:
        p37 = f"{bad} would be excluded (FIRE's ground truth for it is known to be wrong); it is not in this data."
    train, val = split[split["split"] == "train"], split[split["split"] == "validation"]
    lines += [
        f"- Pairs: {len(manifest)} ({category_counts(manifest)}). {p37}",
        f"- Split (`split.csv`, seeded, stratified by category): train {len(train)} ({category_counts(train)}), "
        f"validation {len(val)} ({category_counts(val)}). The model trains on the train pairs; "
        f"**every number below is on the validation pairs**.",
    ]
    return lines


def _budget_line(training: dict) -> str:
    """Which training budget applied (``demo_training.json``; runs written before step budgets had minutes only)."""
    steps, minutes = training.get("budget_steps"), training.get("budget_minutes")
    parts = []
    if steps is not None:
        parts.append(f"**{int(steps)} optimiser steps** (a step budget: the same model on any machine, at the same thread count)")
    if minutes is not None:
        parts.append(f"**{float(minutes):g} min** of wall time (validation included; depends on the machine)")
    if not parts:
        return "Training budget: none (epochs only)."
    both = " — whichever came first" if len(parts) == 2 else ""
    return f"Training budget: {' or '.join(parts)}{both}; `firereg demo --budget-steps N` / `--budget-minutes M`."


def _settings_lines(run: DemoRun) -> list[str]:
    training, model, specs = run.training, run.model, run.specs
    train_cfg = training["config"]
    shown = {k: v for k, v in train_cfg.items() if v is not None}
    lines = [
        f"- Model: **{model}**, trained by `firereg.pipelines.training.train` into `run/` "
        f"(best validation checkpoint `best.pt` is benchmarked).",
        f"- Sizes: network size {train_cfg.get('size')} x {train_cfg.get('size')} px (the network trains and "
        f"registers there); benchmark size {run.config.benchmark_size} px (longest side: every method is given "
        f"images resized to it); errors are measured in full-resolution pixels.",
        f"- {_budget_line(training)}"
        + (" Finished after resuming an interrupted run." if training.get("resumed") else ""),
        f"- Test-time refinement (`{model}+tto`): the predicted field plus a smooth correction on control points "
        f"{FUNDUS_REFINEMENT['grid']} px apart, optimised on each pair by Adam ({DEFAULT_TTO_STEPS} steps per level, "
        f"lr {FUNDUS_REFINEMENT['lr']}) on a {FUNDUS_REFINEMENT['levels']}-level image pyramid up to "
        f"{FUNDUS_REFINEMENT['size']} px, with local NCC + {FUNDUS_REFINEMENT_LAMBDA:g} x diffusion of the correction "
        f"inside the field of view "
        f"(`firereg.pipelines.inference.refine.fundus_refinement`).",
        "- Methods: " + ", ".join(f"`{s}`" if s == label else f"{label} = `{s}`" for label, s in specs.items()) + ".",
        "- Training settings: " + ", ".join(f"{k}={v}" for k, v in shown.items()) + ".",
    ]
    return lines


def _timing_lines(run: DemoRun, pairs: pd.DataFrame) -> list[str]:
    training = run.training
    result = training["result"]
    steps = int(result.get("steps", 0))
    total = float(training["total_seconds"])
    lines = [
        f"- Training: {format_cell(total)} s wall time over all sessions, {steps} steps in "
        f"{int(result.get('epochs', 0))} full epochs (stopped: {result.get('stopped')}), "
        + (f"{format_cell(total / steps)} s per step including validation; " if steps else "")
        + f"best validation mAUC during training {format_cell(float(result.get('best_mauc', float('nan'))))}.",
        "- This invocation: "
        + ", ".join(f"{name} {format_cell(float(s))} s" + (f" ({run.stage_notes[name]})" if name in run.stage_notes else "")
                    for name, s in run.stage_seconds.items())
        + f"; {run.fresh} (method, pair) registrations run now, {run.reused} reused from earlier runs.",
        "",
        "Seconds per pair of each method (registration at the benchmark size, from `pairs.csv`):",
        "",
    ]
    seconds = pairs.assign(seconds=pairs["seconds"].astype(float)).groupby("method", sort=False)["seconds"]
    table = pd.DataFrame({
        "method": list(seconds.groups),
        "pairs": seconds.size().to_numpy(),
        "median_seconds": seconds.median().to_numpy(),
        "mean_seconds": seconds.mean().to_numpy(),
        "total_seconds": seconds.sum().to_numpy(),
    })
    order = list(pd.unique(pairs["method"]))
    table = table.set_index("method").loc[order].reset_index()
    return lines + markdown_table(table)


# ----------------------------------------------------------------------------- report


def _copy_file(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` atomically (:func:`firereg.transforms.io.atomic_output`)."""
    if not src.is_file():
        raise FileNotFoundError(f"expected output not found: {src}")
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def _copy_outputs(paths: DemoPaths) -> None:
    """The benchmark's tables, the split and the training log, copied into ``report/``."""
    for name in ("summary.csv", "summary.md", "pairs.csv", "points.csv"):
        _copy_file(paths.benchmark / name, paths.report / name)
    _copy_file(paths.split, paths.report / "split.csv")
    if (paths.run / "log.csv").is_file():
        _copy_file(paths.run / "log.csv", paths.report / "training_log.csv")


def _draw_figures(run: DemoRun, pairs: pd.DataFrame, progress: bool) -> dict[str, list[Path]]:
    """Success-rate curves, error box plots, the gallery and the deep methods' deformation grids."""
    from firereg.evaluation.report.figures import plot_success_rate
    from firereg.evaluation.report.gallery import make_gallery, plot_error_boxplot
    from firereg.evaluation.results import ResizedMethod
    from firereg.pipelines.method_specs import make_any_method

    report = run.paths.report
    plot_success_rate(pairs, report / "success_rate.png")
    plot_error_boxplot(pairs, report / "error_boxplot.png")
    deep = [label for label in run.specs if parse_method_spec(run.specs[label]).deep]
    methods = {label: ResizedMethod(make_any_method(spec), run.config.benchmark_size)
               for label, spec in run.specs.items()}
    return make_gallery(pairs, run.val_manifest, methods, report, deformation_methods=deep,
                        max_side=run.config.gallery_side, progress=progress)


def _figure_lines(figures: dict[str, list[Path]]) -> list[str]:
    lines = [
        "## Figures",
        "",
        "Success rate against threshold, per category (`success_rate.png`):",
        "",
        "![success rate](success_rate.png)",
        "",
        "Per-pair mean error per category and method (`error_boxplot.png`; log scale, failed pairs counted above):",
        "",
        "![error box plots](error_boxplot.png)",
        "",
        "Best, median and worst pair of each method, registered again exactly as in the benchmark "
        "(checkerboard of fixed and warped moving image; overlay: magenta = fixed, green = warped moving, "
        "aligned vessels look grey):",
        "",
    ]
    for path in figures["gallery"]:
        lines += [f"![{path.stem}](gallery/{path.name})", ""]
    lines += [
        "Deformation grids of the deep methods: a regular grid of the moving image pulled onto the fixed "
        "image by the fixed → moving map, drawn over the fixed image:",
        "",
    ]
    for path in figures["deformation"]:
        lines += [f"![{path.stem} deformation](deformation/{path.name})", ""]
    return lines


def _file_lines(run: DemoRun) -> list[str]:
    from firereg.evaluation.report.gallery import file_label

    return [
        "## Files",
        "",
        "- here: `summary.csv`, `summary.md`, `pairs.csv` (one row per method and pair), `points.csv` (every "
        "control point as mapped), `split.csv`, `training_log.csv` (validation per epoch), the figures, "
        "`gallery/index.csv` (the pairs shown);",
        f"- `../run/`: the checkpoints (`best.pt`, `last.pt`), logs and TensorBoard scalars; register a pair with "
        f"`firereg register FIXED MOVING --model {run.paths.run} --out DIR`;",
        f"- `../benchmark/`: the benchmark's own outputs (`records/`, `overlays/` of the first pair per category, "
        f"per method: e.g. `overlays/{file_label(run.model)}/`).",
    ]


def report_lines(run: DemoRun, summary: pd.DataFrame, pairs: pd.DataFrame,
                 figures: dict[str, list[Path]]) -> list[str]:
    """The lines of ``report.md``.

    Args:
        run: what the demo did.
        summary: ``summary.csv`` of the benchmark.
        pairs: ``pairs.csv`` of the benchmark.
        figures: the gallery and deformation figure paths (:func:`firereg.evaluation.report.gallery.make_gallery`).
    """
    val = run.val_manifest
    return [
        "# firereg demo report",
        "",
        f"Made by `firereg demo` on {time.strftime('%Y-%m-%d %H:%M')}. The FIRE protocol: the error of a pair is the "
        "mean distance between its control points as mapped by the method and their true positions, in "
        "full-resolution pixels; AUC = mean success rate over thresholds 1..25 px; mAUC = mean of the S, P, A AUCs.",
        "",
        "## Data",
        "",
        *_data_lines(run.root, run.manifest, run.split),
        "",
        "## Settings",
        "",
        *_settings_lines(run),
        "",
        f"## Results on the validation pairs ({len(val)}: {category_counts(val)})",
        "",
        "From `summary.csv` (failed: no transform, error counted as infinite; inaccurate: max error > 50 px or "
        "median > 20 px; median_error in px; median_seconds per pair; folding_pct: share of the fixed field of "
        "view where the fixed → moving map folds):",
        "",
        *markdown_table(summary),
        "",
        "### Reading",
        "",
        *[f"- {line}" for line in reading(summary, run.model, f"{run.model}+tto")],
        f"- {_noise_line(val)}",
        "",
        "## Timings",
        "",
        *_timing_lines(run, pairs),
        "",
        *_figure_lines(figures),
        *_file_lines(run),
    ]


def write_report(run: DemoRun, progress: bool = True) -> Path:
    """Write ``OUT/report/``: copies of the benchmark's tables, the figures and ``report.md``.

    Args:
        run: what the demo did (its benchmark must be complete).
        progress: show the gallery's progress bar.

    Returns:
        The path of ``report.md``.

    Raises:
        FileNotFoundError: naming a benchmark output that is missing.
    """
    report = run.paths.report
    _copy_outputs(run.paths)
    summary = pd.read_csv(report / "summary.csv")  # the numbers of report.md are the file's
    pairs = pd.read_csv(report / "pairs.csv", dtype={"pair": str, "method": str})
    figures = _draw_figures(run, pairs, progress)
    return atomic_write_text(report / "report.md", "\n".join(report_lines(run, summary, pairs, figures)) + "\n")
