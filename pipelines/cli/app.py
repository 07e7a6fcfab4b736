"""The ``firereg`` command line: the typer app and its commands, one module per command group.

- :mod:`firereg.pipelines.cli.data`: ``make-data``, ``summary``, ``split``;
- :mod:`firereg.pipelines.cli.benchmark`: ``benchmark``;
- :mod:`firereg.pipelines.cli.demo`: ``demo``;
- :mod:`firereg.pipelines.cli.register`: ``register``;
- :mod:`firereg.pipelines.cli.train`: ``make-patches``, ``train``;
- :mod:`firereg.pipelines.cli.examples`: ``mnist``, ``brain``.

Each command is a thin wrapper over the library and imports it when it runs, so that
``firereg --help`` loads typer only. Bad input ends a command with ``error: <message>`` and exit
code 2 (:mod:`firereg.pipelines.cli.errors`).
"""

from __future__ import annotations

import typer

from firereg.pipelines.cli.benchmark import benchmark
from firereg.pipelines.cli.data import make_data, split, summary
from firereg.pipelines.cli.demo import demo_command
from firereg.pipelines.cli.examples import brain_command, mnist_command
from firereg.pipelines.cli.register import register
from firereg.pipelines.cli.score import score
from firereg.pipelines.cli.train import make_patches_command, train_command

__all__ = ["app", "main"]

app = typer.Typer(
    help="firereg: retinal image registration with MONAI, benchmarked with the FIRE landmark protocol.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# in the order `firereg --help` lists them
for _name, _command in (
    ("make-data", make_data),
    ("summary", summary),
    ("split", split),
    ("benchmark", benchmark),
    ("demo", demo_command),
    ("register", register),
    ("score", score),
    ("make-patches", make_patches_command),
    ("train", train_command),
    ("mnist", mnist_command),
    ("brain", brain_command),
):
    app.command(_name)(_command)


def main() -> None:  # pragma: no cover - console entry point
    """Run the ``firereg`` command line (the ``[project.scripts]`` entry point)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
