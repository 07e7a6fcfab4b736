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
    budget_steps: Annotated[
        int | None,
        typer.Option("--budget-steps", min=1, help="Training budget of the cascade, optimiser steps in total: the same "
                     "model on any machine (default: 3000, about ten minutes on 2 CPU cores, unless "
                     "--budget-minutes is given)."),
    ] = None,
    budget_minutes: Annotated[
        float | None,
        typer.Option("--budget-minutes", help="Wall-clock training budget of the cascade, minutes (the model then "
                     "depends on the machine's speed); with --budget-steps, whichever is spent first."),
    ] = None,
    size: Annotated[
        int,
        typer.Option("--size", help="Benchmark size (longest side, px); the cascade keeps its own network size."),
    ] = 512,
    workers: Annotated[int, typer.Option("--workers", help="Benchmark worker processes.")] = 1,
    threads: Annotated[
        int,
        typer.Option("--threads", min=1, help="CPU threads for training. The default 1 gives the same model for "
                     "the same --budget-steps on any machine (more threads change the weights' last bits)."),
    ] = 1,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show stage messages and progress bars.")] = True,
) -> None:
    """The main job in one command: data, cascade training, FIRE benchmark and a report.

    Trains the cascade on the train pairs within the budget (by default a fixed number of
    optimiser steps, so the same command gives the same model on any machine), benchmarks it (with and without
    test-time refinement) against identity, elastix and SIFT on the validation pairs, and
    writes OUT/report/report.md with tables, figures and the benchmark CSVs.
    """
    from firereg.pipelines.demo.run import DemoConfig, run_demo

    config = DemoConfig(budget_steps=budget_steps, budget_minutes=budget_minutes, benchmark_size=size,
                        workers=workers, num_threads=threads)
    report = run_demo(config, data, out, progress=progress)
    summary = report.parent / "summary.md"
    if summary.is_file():
        typer.echo(summary.read_text())
    typer.echo(f"report: {report}")
