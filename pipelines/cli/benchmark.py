"""``firereg benchmark``: register FIRE pairs with each method and score them with the FIRE protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from firereg.pipelines.cli.errors import user_errors
from firereg.pipelines.cli.options import (
    DataOption,
    IncludeP37Option,
    check_output_folder,
)

__all__ = ["DEFAULT_METHODS", "benchmark"]

#: the methods benchmarked when ``--methods`` is not given: the classical baselines
DEFAULT_METHODS = "identity,elastix-rigid,elastix-affine,elastix-bspline,sift"


@user_errors
def benchmark(
    data: DataOption = None,
    methods: Annotated[
        str,
        typer.Option(help="Comma-separated methods: baselines (identity, elastix-*, sift, sift-quadratic), default "
                          "(the shipped default), trained models as TYPE:RUN, TYPE+tto:RUN (test-time refinement; "
                          "TYPE+ttoN:RUN for N steps), hybrid:RUN (sift-quadratic, then RUN's VoxelMorph), "
                          "LABEL=TYPE:RUN to name one."),
    ] = DEFAULT_METHODS,
    out: Annotated[Path, typer.Option(help="Output folder; re-running into it resumes.")] = Path("benchmark-out"),
    size: Annotated[
        int,
        typer.Option(help="Benchmark size (longest side, px): every method registers the pairs resized to it "
                          "(a trained network then resizes to its own network size)."),
    ] = 512,
    workers: Annotated[int, typer.Option(help="Parallel worker processes.")] = 1,
    split_file: Annotated[Path | None, typer.Option("--split", help="Split CSV (firereg split); with --subset.")] = None,
    subset: Annotated[str, typer.Option(help="Pairs to use: all, train or validation (needs --split).")] = "all",
    include_p37: IncludeP37Option = False,
    data_label: Annotated[
        str | None,
        typer.Option(help="What the data is, for summary.md (e.g. 'real FIRE'); default: 'real FIRE' only for "
                          "FIRE's own file set, generated data by its generator.json, else 'FIRE-layout folder'."),
    ] = None,
) -> None:
    """Register every pair with each method and score it with the FIRE landmark protocol."""
    from firereg.evaluation.benchmark import BenchmarkConfig, run_benchmark
    from firereg.pipelines.default_data import resolve_data
    from firereg.pipelines.method_specs import make_any_method, parse_method_list
    from firereg.transforms.fire_reader import read_fire
    from firereg.transforms.splits import read_split, select_split

    check_output_folder(out, "--out")
    specs = parse_method_list(methods)  # bad specs and clashing labels fail before any work
    if workers < 1 or size < 16:
        raise ValueError(f"need --workers >= 1 and --size >= 16, got {workers} and {size}")
    manifest = read_fire(resolve_data(data), exclude_known_bad=not include_p37)
    notes = []
    if subset != "all":
        if split_file is None:
            raise ValueError(f"--subset {subset} needs --split FILE")
        manifest = select_split(manifest, read_split(split_file), subset)
        notes.append(f"subset: {subset} pairs of {split_file}")
    config = BenchmarkConfig(methods=specs, benchmark_size=size, workers=workers, notes=notes, data_label=data_label)
    run_benchmark(manifest, config, out, factory=make_any_method)
    typer.echo((out / "summary.md").read_text())
    typer.echo(f"results in {out}: pairs.csv, points.csv, summary.csv, summary.md, success_rate.png, overlays/")
