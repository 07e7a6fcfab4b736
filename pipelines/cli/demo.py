"""``firereg demo``: the main job in one command (data, cascade training, FIRE benchmark, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from firereg.pipelines.cli.errors import user_errors
from firereg.pipelines.cli.options import DataOption

__all__ = ["demo_command"]


@user_errors
def demo_command(
    data: DataOption = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder; re-running into it reuses what is finished.")] = Path(
        "demo-out"
    ),
    budget_minutes: Annotated[
        float, typer.Option("--budget-minutes", help="Wall-clock training budget of the cascade, minutes.")
    ] = 10.0,
    size: Annotated[
        int,
        typer.Option("--size", help="Benchmark size (longest side, px); the cascade keeps its own network size."),
    ] = 512,
    workers: Annotated[int, typer.Option("--workers", help="Benchmark worker processes.")] = 1,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads for training (default: all cores).")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show stage messages and progress bars.")] = True,
) -> None:
    """The main job in one command: data, cascade training, FIRE benchmark and a report.

    Trains the cascade on the train pairs within the budget, benchmarks it (with and without
    test-time refinement) against identity, elastix and SIFT on the validation pairs, and
    writes OUT/report/report.md with tables, figures and the benchmark CSVs.
    """
    from firereg.pipelines.demo.run import DemoConfig, run_demo

    config = DemoConfig(budget_minutes=budget_minutes, benchmark_size=size, workers=workers, num_threads=threads)
    report = run_demo(config, data, out, progress=progress)
    summary = report.parent / "summary.md"
    if summary.is_file():
        typer.echo(summary.read_text())
    typer.echo(f"report: {report}")
