"""The ``firereg`` command line (typer). Each subcommand is a thin wrapper over the library."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.default_data import resolve_data
from transforms.data_summary import summarize_dataset
from transforms.fire_generator import DEFAULT_PAIRS, GeneratorConfig, make_fire_dataset, parse_pairs
from transforms.fire_reader import read_fire
from transforms.splits import DEFAULT_VAL_FRACTION, make_split, write_split

app = typer.Typer(
    help="firereg: retinal image registration with MONAI, benchmarked with the FIRE landmark protocol.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: errors that mean bad input: shown as one line, exit code 2, no traceback
USER_ERRORS = (FileNotFoundError, FileExistsError, ValueError, RuntimeError)

DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="FIRE folder (real or generated); default: the embedded generated dataset."),
]


def root_cause(err: BaseException) -> BaseException:
    """The innermost cause: MONAI's ``Compose`` wraps a transform's error in "applying transform ..."."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Report bad input as ``error: <message>`` on stderr with exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as err:
            typer.echo(f"error: {root_cause(err)}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper


def _format_table(frame) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}")


@app.command("make-data")
@user_errors
def make_data(
    out: Annotated[Path, typer.Argument(help="Folder to write the FIRE-format dataset to.")],
    source: Annotated[Path | None, typer.Option(help="Fundus photograph to generate from; default skimage.data.retina().")] = None,
    size: Annotated[int, typer.Option(help="Image width = height, px (real FIRE: 2912).")] = 1024,
    pairs: Annotated[str, typer.Option(help="Pairs per category; FIRE-sized: S:71,P:49,A:14.")] = ",".join(
        f"{k}:{v}" for k, v in DEFAULT_PAIRS.items()
    ),
    seed: Annotated[int, typer.Option(help="Random seed; the dataset is deterministic given the options.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it holds something else.")] = False,
) -> None:
    """Write a FIRE-format dataset (Images/, Ground Truth/, Masks/mask.png) from a real fundus photograph."""
    config = GeneratorConfig(size=size, pairs=parse_pairs(pairs), seed=seed, source=str(source) if source else None)
    out = make_fire_dataset(out, config, overwrite=overwrite)
    typer.echo(f"FIRE-format dataset in {out}")
    typer.echo(_format_table(summarize_dataset(read_fire(out, exclude_known_bad=False))))


@app.command("summary")
@user_errors
def summary(
    data: DataOption = None,
    include_p37: Annotated[bool, typer.Option(help="Keep FIRE's P37, whose ground truth is known to be wrong.")] = False,
) -> None:
    """Print pairs per category, overlap and mean landmark displacement of a FIRE folder."""
    root = resolve_data(data)
    manifest = read_fire(root, exclude_known_bad=not include_p37)
    typer.echo(f"FIRE folder: {root}")
    excluded = manifest.attrs.get("excluded") or []
    typer.echo(f"excluded as known bad: {', '.join(excluded) if excluded else 'none'}")
    typer.echo(_format_table(summarize_dataset(manifest)))


@app.command("split")
@user_errors
def split(
    out: Annotated[Path, typer.Argument(help="CSV file to write (name,category,split).")],
    data: DataOption = None,
    val_fraction: Annotated[float, typer.Option(help="Share of pairs for validation (45/134 = FIRE's 89/45).")] = DEFAULT_VAL_FRACTION,
    seed: Annotated[int, typer.Option(help="Random seed of the split.")] = 0,
) -> None:
    """Write a seeded train/validation split, stratified by category."""
    manifest = read_fire(resolve_data(data))
    table = make_split(manifest, val_fraction=val_fraction, seed=seed)
    write_split(table, out)
    counts = table.groupby(["split", "category"]).size().unstack(fill_value=0)
    typer.echo(f"split written to {out}\n{counts.to_string()}")


@app.command("benchmark")
@user_errors
def benchmark(
    data: DataOption = None,
    methods: Annotated[str, typer.Option(help="Comma-separated methods.")] = "identity,elastix-rigid,elastix-affine,elastix-bspline,sift",
    out: Annotated[Path, typer.Option(help="Output folder; re-running into it resumes.")] = Path("benchmark-out"),
    size: Annotated[int, typer.Option(help="Working size (longest side, px) at which methods register.")] = 512,
    workers: Annotated[int, typer.Option(help="Parallel worker processes.")] = 1,
    split_file: Annotated[Path | None, typer.Option("--split", help="Split CSV (firereg split); with --subset.")] = None,
    subset: Annotated[str, typer.Option(help="Pairs to use: all, train or validation (needs --split).")] = "all",
    include_p37: Annotated[bool, typer.Option(help="Keep FIRE's P37, whose ground truth is known to be wrong.")] = False,
) -> None:
    """Register every pair with each method and score it with the FIRE landmark protocol."""
    from evaluation.benchmark import BenchmarkConfig, run_benchmark
    from transforms.splits import read_split, select_split

    if workers < 1 or size < 16:
        raise ValueError(f"need --workers >= 1 and --size >= 16, got {workers} and {size}")
    manifest = read_fire(resolve_data(data), exclude_known_bad=not include_p37)
    notes = []
    if subset != "all":
        if split_file is None:
            raise ValueError(f"--subset {subset} needs --split FILE")
        manifest = select_split(manifest, read_split(split_file), subset)
        notes.append(f"subset: {subset} pairs of {split_file}")
    config = BenchmarkConfig(methods=[m.strip() for m in methods.split(",") if m.strip()], size=size,
                             workers=workers, notes=notes)
    run_benchmark(manifest, config, out)
    typer.echo((out / "summary.md").read_text())
    typer.echo(f"results in {out}: pairs.csv, points.csv, summary.csv, summary.md, success_rate.png, overlays/")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
