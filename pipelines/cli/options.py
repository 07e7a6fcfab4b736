"""Options shared by several ``firereg`` commands (typer ``Annotated`` types).

Sizes: three different things are called ``--size`` by the commands, and their help says which
(see :mod:`firereg.transforms.coords` for full ↔ working resolution):

- the **dataset size** of ``make-data``: width = height of the generated photographs, px;
- the **benchmark size** of ``benchmark`` and ``demo``: the longest side, px, every method's
  images are resized to before it registers (a network then resizes to its own network size);
- the **network size** of ``train``: the side, px, of the square images a network is trained on
  (recorded in its checkpoint, used again by ``benchmark`` and ``register``); ``make-patches``
  cuts its patches from pairs resized to such a working size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DataOption", "IncludeP37Option", "check_output_file", "check_output_folder", "format_table"]

DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="FIRE folder (real or generated); default: the embedded generated dataset."),
]

IncludeP37Option = Annotated[bool, typer.Option(help="Keep FIRE's P37, whose ground truth is known to be wrong.")]


def format_table(frame: pd.DataFrame) -> str:
    """A table as plain text: no index, floats with three decimals."""
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def check_output_folder(path: Path, option: str) -> Path:
    """Check, before any work, that a command can create or write the folder ``path``.

    Nothing is created: the command makes the folder when it writes its first file. The check
    walks up to the nearest part of ``path`` that exists; it must be a folder the user may write
    into (as ``os.access`` says: root may write anywhere).

    Args:
        path: the output folder as given on the command line.
        option: how the command line names it, e.g. ``"--out"`` or ``"OUT"``; it starts the message.

    Returns:
        ``path`` unchanged.

    Raises:
        ValueError: ``<option> <path>: <part> is a file, not a folder`` or ``... is not writable``, naming
            the part of the path at fault (one line; :func:`firereg.pipelines.cli.errors.user_errors`
            prints it and exits with code 2).
    """
    path = Path(path)
    _check_creatable(path, path, option)
    return path


def check_output_file(path: Path, option: str) -> Path:
    """Check, before any work, that a command can write the file ``path`` (e.g. ``split OUT``).

    As :func:`check_output_folder` for the folder the file goes into; ``path`` itself must not
    be a folder.

    Args:
        path: the output file as given on the command line.
        option: how the command line names it, e.g. ``"OUT"``; it starts the message.

    Returns:
        ``path`` unchanged.

    Raises:
        ValueError: ``<option> <path> is a folder, not a file`` or as :func:`check_output_folder`.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder, not a file")
    _check_creatable(path, path.parent, option)
    return path


def _check_creatable(path: Path, folder: Path, option: str) -> None:
    """Raise the message of :func:`check_output_folder` unless ``folder`` exists as a writable folder
    or its nearest existing part is one."""
    part = folder
    while not part.exists() and part != part.parent:
        if part.is_symlink():
            raise ValueError(f"{option} {path}: {part} is a broken link")
        part = part.parent
    where = f"{option} {path}" if part == path else f"{option} {path}: {part}"
    if not part.is_dir():
        raise ValueError(f"{where} is a file, not a folder")
    if not os.access(part, os.W_OK | os.X_OK):
        raise ValueError(f"{where} is not writable")
