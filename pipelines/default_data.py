"""Where the embedded default dataset lives, and making it on first use.

The default dataset is generated from ``skimage.data.retina()`` with
:class:`firereg.transforms.fire_generator.GeneratorConfig` defaults, in
``$FIREREG_HOME/fire-generated`` (``FIREREG_HOME`` defaults to ``~/.cache/firereg``).
"""

from __future__ import annotations

import os
from pathlib import Path

from firereg.transforms.fire_generator import GeneratorConfig, make_fire_dataset

__all__ = ["firereg_home", "default_data_dir", "resolve_data"]


def firereg_home() -> Path:
    """``$FIREREG_HOME`` or ``~/.cache/firereg``."""
    return Path(os.environ.get("FIREREG_HOME", Path.home() / ".cache" / "firereg"))


def default_data_dir() -> Path:
    """Folder of the default generated FIRE-format dataset."""
    return firereg_home() / "fire-generated"


def resolve_data(data: Path | None, progress: bool = True) -> Path:
    """The FIRE folder to use: ``data`` if given (must exist), else the default, generated if absent.

    Raises:
        FileNotFoundError: naming ``data`` if it was given and does not exist.
    """
    if data is not None:
        if not Path(data).is_dir():
            raise FileNotFoundError(f"FIRE folder not found: {data}")
        return Path(data)
    # the default folder is ours: regenerate it if it holds an older version
    return make_fire_dataset(default_data_dir(), GeneratorConfig(), overwrite=True, progress=progress)
