"""The one Markdown table writer (firereg.evaluation.report.tables): exact text, inf / -inf / NaN cells."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from firereg.evaluation.report.tables import (
    format_cell,
    markdown_table,
    summary_markdown,
    write_summary,
)


def _toy() -> pd.DataFrame:
    return pd.DataFrame({
        "method": ["sift", "broken"],
        "n_pairs": [2, 2],
        "mAUC": [0.91234, math.nan],
        "median_error": [1.5, math.inf],
        "delta": [-math.inf, np.float32(0.0005)],
        "ok": [True, False],
    })


def test_format_cell_one_spelling_per_value():
    cells = [format_cell(v) for v in (math.inf, -math.inf, math.nan, np.float64(2.0), np.float32(0.12345), 7,
                                      np.int64(3), True, np.bool_(False), "S01")]
    assert cells == ["inf", "-inf", "–", "2.000", "0.123", "7", "3", "True", "False", "S01"]


def test_markdown_table_exact_text():
    assert markdown_table(_toy()) == [
        "| method | n_pairs | mAUC | median_error | delta | ok |",
        "|---|---|---|---|---|---|",
        "| sift | 2 | 0.912 | 1.500 | -inf | True |",
        "| broken | 2 | – | inf | 0.001 | False |",
    ]


def test_summary_markdown_is_notes_then_the_same_table():
    text = summary_markdown(_toy(), ["data: toy", "pairs: 2"])
    lines = text.splitlines()
    assert lines[:4] == ["# FIRE benchmark summary", "", "- data: toy", "- pairs: 2"]
    assert lines[-4:] == markdown_table(_toy())
    assert lines[-5] == "" and text.endswith(" |\n")


def test_write_summary_writes_the_table_of_the_summary(tmp_path):
    pairs = pd.DataFrame({
        "method": ["m", "m"], "pair": ["S01", "P01"], "category": ["S", "P"],
        "mean_error": [0.5, math.inf], "median_error": [0.5, math.inf], "max_error": [1.0, math.inf],
        "status": ["ok", "failed"], "seconds": [1.0, math.nan],
    })
    summary = write_summary(pairs, tmp_path, ["note"])
    text = (tmp_path / "summary.md").read_text()
    # S AUC 1, P AUC 0 (failed), no A pairs (NaN), median error of (0.5, inf) is inf
    row = "| m | 2 | 1.000 | 0.000 | – | 0.500 | inf | 1 | 0 | 1 | 1.000 |"
    assert text.splitlines()[-1] == row
    assert pd.read_csv(tmp_path / "summary.csv").shape == summary.shape == (1, 11)
