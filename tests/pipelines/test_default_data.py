"""Which FIRE folder a command uses (firereg.pipelines.default_data.resolve_data): the one given, else the
default dataset, generated once under ``$FIREREG_HOME`` and reused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from firereg.pipelines import default_data
from firereg.pipelines.default_data import default_data_dir, resolve_data
from firereg.transforms import fire_generator as generator
from firereg.transforms.fire_generator import GeneratorConfig, read_generator_metadata
from firereg.transforms.fire_reader import read_fire


@pytest.fixture
def generated(monkeypatch) -> SimpleNamespace:
    """A small default config (the real one is 24 pairs at 1024 px) whose seed a test may change,
    and the names of the pairs the generator makes."""
    state = SimpleNamespace(seed=0, pairs=[])
    real = generator.generate_pair

    def counting(name, *args, **kwargs):
        state.pairs.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(generator, "generate_pair", counting)
    monkeypatch.setattr(default_data, "GeneratorConfig",
                        lambda: GeneratorConfig(size=128, pairs={"S": 1, "P": 1, "A": 1}, seed=state.seed, n_points=5))
    return state


def test_given_folder_is_returned_untouched(fire_data, firereg_home):
    assert resolve_data(fire_data) == fire_data
    assert resolve_data(str(fire_data)) == fire_data  # a str is accepted and returned as a Path
    assert not firereg_home.exists()  # the default dataset is not made


def test_missing_folder_is_named(tmp_path, firereg_home):
    missing = tmp_path / "no-such-fire"
    with pytest.raises(FileNotFoundError, match=f"FIRE folder not found: {missing}"):
        resolve_data(missing)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(FileNotFoundError, match="a-file"):
        resolve_data(tmp_path / "a-file")
    assert not firereg_home.exists()


def test_default_is_generated_once_under_firereg_home_and_reused(firereg_home, generated):
    expected = firereg_home / "fire-generated"
    assert default_data.firereg_home() == firereg_home and default_data_dir() == expected
    root = resolve_data(None, progress=False)
    assert root == expected
    assert sorted(generated.pairs) == ["A01", "P01", "S01"]
    assert read_fire(root)["name"].tolist() == ["A01", "P01", "S01"]
    stamp = (root / "generator.json").stat().st_mtime_ns
    assert resolve_data(None, progress=False) == expected
    assert len(generated.pairs) == 3  # reused: nothing generated again
    assert (root / "generator.json").stat().st_mtime_ns == stamp


def test_default_of_another_version_is_regenerated(firereg_home, generated):
    root = resolve_data(None, progress=False)
    assert read_generator_metadata(root)["config"]["seed"] == 0
    generated.seed = 7  # the defaults changed (a newer firereg)
    assert resolve_data(None, progress=False) == root
    assert len(generated.pairs) == 6
    assert read_generator_metadata(root)["config"]["seed"] == 7


def test_firereg_home_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("FIREREG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data.firereg_home() == tmp_path / ".cache" / "firereg"
    assert default_data_dir() == tmp_path / ".cache" / "firereg" / "fire-generated"
