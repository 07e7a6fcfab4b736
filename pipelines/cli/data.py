"""``firereg make-data``, ``summary`` and ``split``: write, describe and split a FIRE-format folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from firereg.pipelines.cli.errors import user_errors
from firereg.pipelines.cli.options import (
    DataOption,
    IncludeP37Option,
    check_output_file,
    check_output_folder,
    format_table,
)

__all__ = ["DEFAULT_PAIRS_TEXT", "DEFAULT_VAL_FRACTION", "make_data", "summary", "split"]

#: the defaults of ``make-data --pairs`` and ``split --val-fraction``, written out here so that
#: ``firereg --help`` need not import numpy, cv2 and scikit-image for them; tests/cli/test_app.py
#: pins them to :data:`firereg.transforms.fire_generator.DEFAULT_PAIRS` and
#: :data:`firereg.transforms.splits.DEFAULT_VAL_FRACTION`
DEFAULT_PAIRS_TEXT = "S:12,P:8,A:4"
DEFAULT_VAL_FRACTION = 45 / 134


@user_errors
def make_data(
    out: Annotated[Path, typer.Argument(help="Folder to write the FIRE-format dataset to.")],
    source: Annotated[Path | None, typer.Option(help="Fundus photograph to generate from; default skimage.data.retina().")] = None,
    size: Annotated[
        int, typer.Option(help="Dataset size: width = height of the generated photographs, px (real FIRE: 2912).")
    ] = 1024,
    pairs: Annotated[str, typer.Option(help="Pairs per category; FIRE-sized: S:71,P:49,A:14.")] = DEFAULT_PAIRS_TEXT,
    seed: Annotated[int, typer.Option(help="Random seed; the dataset is deterministic given the options.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it holds something else.")] = False,
    retina: Annotated[
        str,
        typer.Option(help="Where each pair's retina comes from: 'photograph' (every pair from the one photograph, "
                          "--source) or 'procedural' (a synthetic retina of its own per pair: many distinct eyes)."),
    ] = "photograph",
) -> None:
    """Write a FIRE-format dataset (Images/, Ground Truth/, Masks/mask.png) from a fundus photograph or
    from procedural retinas (``--retina procedural``)."""
    from firereg.transforms.data_summary import summarize_dataset
    from firereg.transforms.fire_generator import (
        GeneratorConfig,
        make_fire_dataset,
        parse_pairs,
    )
    from firereg.transforms.fire_reader import read_fire

    check_output_folder(out, "OUT")
    config = GeneratorConfig(size=size, pairs=parse_pairs(pairs), seed=seed, source=str(source) if source else None,
                             retina=retina)
    out = make_fire_dataset(out, config, overwrite=overwrite)
    typer.echo(f"FIRE-format dataset in {out}")
    typer.echo(format_table(summarize_dataset(read_fire(out, exclude_known_bad=False))))


@user_errors
def summary(
    data: DataOption = None,
    include_p37: IncludeP37Option = False,
    check: Annotated[
        bool,
        typer.Option("--check", help="First open every file (images fully decoded, mask, control points) and list "
                                     "every problem, one line each; exit code 1 if there is any."),
    ] = False,
) -> None:
    """Print pairs per category, overlap and mean landmark displacement of a FIRE folder."""
    from firereg.pipelines.default_data import resolve_data
    from firereg.transforms.data_summary import (
        MOTION_SUMMARY_TITLE,
        motion_summary,
        summarize_dataset,
    )
    from firereg.transforms.fire_reader import read_fire

    root = resolve_data(data)
    if check:
        _check_folder(root)
    manifest = read_fire(root, exclude_known_bad=not include_p37)
    typer.echo(f"FIRE folder: {root}")
    excluded = manifest.attrs.get("excluded") or []
    typer.echo(f"excluded as known bad: {', '.join(excluded) if excluded else 'none'}")
    typer.echo(format_table(summarize_dataset(manifest)))
    typer.echo(MOTION_SUMMARY_TITLE)
    typer.echo(format_table(motion_summary(manifest)))


def _check_folder(root: Path) -> None:
    """``summary --check``: print every problem of ``root`` and exit with code 1 if there is any."""
    from firereg.transforms.data_check import check_fire_folder

    result = check_fire_folder(root, progress=True)
    for problem in result.problems:
        typer.echo(f"problem: {problem}")
    files = f"{result.images} images, {result.point_files} control-point files, mask: {'yes' if result.mask else 'none'}"
    if not result.ok:
        typer.echo(f"{len(result.problems)} problem(s) in {root} ({files})")
        raise typer.Exit(code=1)
    typer.echo(f"checked {root}: {files}; no problems")


@user_errors
def split(
    out: Annotated[Path, typer.Argument(help="CSV file to write (name,category,split).")],
    data: DataOption = None,
    val_fraction: Annotated[
        float, typer.Option(help="Share of pairs for validation (45/134 = FIRE's 89/45).")
    ] = DEFAULT_VAL_FRACTION,
    seed: Annotated[int, typer.Option(help="Random seed of the split.")] = 0,
) -> None:
    """Write a seeded train/validation split, stratified by category."""
    from firereg.pipelines.default_data import resolve_data
    from firereg.transforms.fire_reader import read_fire
    from firereg.transforms.splits import make_split, write_split

    check_output_file(out, "OUT")
    manifest = read_fire(resolve_data(data))
    table = make_split(manifest, val_fraction=val_fraction, seed=seed)
    write_split(table, out)
    counts = table.groupby(["split", "category"]).size().unstack(fill_value=0)
    typer.echo(f"split written to {out}\n{counts.to_string()}")
