"""Benchmark tables a person can open: ``summary.csv`` and ``summary.md``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from firereg.evaluation.fire_protocol import summarize
from firereg.transforms.io import atomic_to_csv, atomic_write_text

__all__ = ["summary_markdown", "write_summary"]


def _fmt(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return "–"
        if np.isinf(value):
            return "inf"
        return f"{value:.3f}"
    return str(value)


def summary_markdown(summary: pd.DataFrame, notes: list[str]) -> str:
    """The summary table as Markdown, preceded by ``notes`` (data, pairs, P37 handling)."""
    columns = list(summary.columns)
    lines = ["# FIRE benchmark summary", ""]
    lines += [f"- {note}" for note in notes]
    lines += [
        "- AUC: mean success rate over thresholds 1..25 px (error of a pair = mean control-point distance,"
        " full-resolution px); mAUC: mean of the category AUCs present.",
        "- failed: no transform (error infinite); inaccurate: max error > 50 px or median > 20 px.",
        "- folding_pct: mean share (%) of the fixed field of view where the fixed → moving map folds"
        " (Jacobian determinant <= 0).",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in summary.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_summary(pairs: pd.DataFrame, out: str | Path, notes: list[str]) -> pd.DataFrame:
    """Write ``summary.csv`` and ``summary.md`` for a per-pair table; returns the summary."""
    out = Path(out)
    summary = summarize(pairs)
    atomic_to_csv(summary, out / "summary.csv")
    atomic_write_text(out / "summary.md", summary_markdown(summary, notes))
    return summary
