"""Shared fixtures: a small generated FIRE-format dataset, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from firereg.transforms.fire_generator import GeneratorConfig, make_fire_dataset

#: the settings of the shared dataset (small: a few seconds to make)
SMALL_CONFIG = dict(size=256, pairs={"S": 2, "P": 2, "A": 1}, seed=1)


@pytest.fixture(scope="session")
def fire_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated FIRE-format folder: S01, S02, P01, P02, A01 at 256 x 256 px.

    Shared by the whole session: tests must not modify it (copy it to ``tmp_path`` first).
    """
    out = tmp_path_factory.mktemp("fire-small") / "fire"
    return make_fire_dataset(out, GeneratorConfig(**SMALL_CONFIG), progress=False)


@pytest.fixture
def firereg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``FIREREG_HOME`` at a temporary folder so defaults never touch the real home."""
    home = tmp_path / "firereg-home"
    monkeypatch.setenv("FIREREG_HOME", str(home))
    return home


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (restored afterwards): on a 2-core machine shared with
    other work, more threads only spin. Modules use it with ``pytestmark``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
