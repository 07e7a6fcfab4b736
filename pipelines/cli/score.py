"""``firereg score``: score another tool's predicted control points with the FIRE protocol.

The CSV format and the conventions are those of :mod:`firereg.evaluation.external_points`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from firereg.pipelines.cli.errors import user_errors
from firereg.pipelines.cli.options import (
    DataOption,
    IncludeP37Option,
    check_output_folder,
)

__all__ = ["score"]

_LABEL_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")


@user_errors
def score(
    points: Annotated[Path, typer.Option("--points", help="Predictions CSV: columns pair, point, x, y "
                                                          "(point = 0-based control point index; full-resolution px).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: pairs.csv, points.csv, summary.md, success_rate.png.")],
    data: DataOption = None,
    space: Annotated[str, typer.Option("--space", help="moving: where each fixed point lands in the moving image "
                                                       "(FIRE's convention); fixed: where each moving point lands "
                                                       "in the fixed image.")] = "moving",
    method_label: Annotated[str | None, typer.Option("--method-label", help="The method's name in the tables "
                                                                            "(default: the CSV's file name).")] = None,
    merge: Annotated[Path | None, typer.Option("--merge", help="A firereg benchmark folder: add the method to its "
                                                               "pairs.csv, summary.md and success_rate.png.")] = None,
    include_p37: IncludeP37Option = False,
) -> None:
    """Score external predictions (e.g. SuperRetina's) with the same protocol, tables and plots as `firereg benchmark`.

    A pair without predictions counts as failed (error infinite).
    """
    from firereg.evaluation.external_points import SPACES, score_external
    from firereg.pipelines.cli.options import format_table
    from firereg.pipelines.default_data import resolve_data
    from firereg.transforms.fire_reader import read_fire

    if space not in SPACES:
        raise ValueError(f"--space must be one of {', '.join(SPACES)}, got {space!r}")
    label = method_label if method_label is not None else points.stem
    if not _LABEL_RE.match(label):
        raise ValueError(f"method label {label!r}: use letters, digits and _ . + - (set it with --method-label)")
    check_output_folder(out, "--out")
    manifest = read_fire(resolve_data(data), exclude_known_bad=not include_p37)
    pairs = score_external(manifest, points, out, space=space, label=label, merge=merge)
    typer.echo(format_table(pairs.attrs["summary"]))
    failed = int((pairs["status"] == "failed").sum())
    typer.echo(f"{label}: {len(pairs) - failed} of {len(pairs)} pairs scored ({failed} without predictions: failed); "
               f"results in {out}: pairs.csv, points.csv, summary.csv, summary.md, success_rate.png")
    if merge is not None:
        typer.echo(f"merged {label} into {merge}: pairs.csv, points.csv, summary.md, success_rate.png rewritten")
