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

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DataOption", "IncludeP37Option", "format_table"]

DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="FIRE folder (real or generated); default: the embedded generated dataset."),
]

IncludeP37Option = Annotated[bool, typer.Option(help="Keep FIRE's P37, whose ground truth is known to be wrong.")]


def format_table(frame: pd.DataFrame) -> str:
    """A table as plain text: no index, floats with three decimals."""
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}")
