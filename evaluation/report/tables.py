"""Benchmark tables a person can open: ``summary.csv`` and ``summary.md``, and the one
Markdown table writer every report uses (the benchmark's ``summary.md``, the demo's ``report.md``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from firereg.evaluation.fire_protocol import summarize
from firereg.transforms.io import atomic_to_csv, atomic_write_text

__all__ = ["format_cell", "markdown_table", "summary_markdown", "write_summary"]


def format_cell(value: object) -> str:
    """One table cell: floats with 3 decimals, ``–`` for NaN, ``inf`` / ``-inf``; anything else as text.

    Booleans stay ``True`` / ``False``; integers are written as they are.
    """
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return "–"
        if np.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.3f}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> list[str]:
    """A DataFrame as Markdown table lines (header, rule, one line per row; cells by :func:`format_cell`).

    Hand-written: pandas' ``DataFrame.to_markdown`` needs the ``tabulate`` package, which
    firereg does not depend on.
    """
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(format_cell(v) for v in row) + " |")
    return lines


def summary_markdown(summary: pd.DataFrame, notes: list[str]) -> str:
    """The summary table as Markdown, preceded by ``notes`` (data, pairs, P37 handling)."""
    lines = ["# FIRE benchmark summary", ""]
    lines += [f"- {note}" for note in notes]
    lines += [
        "- AUC: mean success rate over thresholds 1..25 px (error of a pair = mean control-point distance,"
        " full-resolution px); mAUC: mean of the category AUCs present.",
        "- failed: no transform (error infinite); inaccurate: max error > 50 px or median > 20 px.",
        "- folding_pct: mean share (%) of the fixed field of view where the fixed → moving map folds"
        " (Jacobian determinant <= 0).",
        "",
        *markdown_table(summary),
    ]
    return "\n".join(lines) + "\n"


def write_summary(pairs: pd.DataFrame, out: str | Path, notes: list[str]) -> pd.DataFrame:
    """Write ``summary.csv`` and ``summary.md`` for a per-pair table; returns the summary."""
    out = Path(out)
    summary = summarize(pairs)
    atomic_to_csv(summary, out / "summary.csv")
    atomic_write_text(out / "summary.md", summary_markdown(summary, notes))
    return summary
