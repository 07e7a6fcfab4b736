"""Output folders the commands cannot write (firereg.pipelines.cli.options.check_output_folder; the
file of ``split OUT``: check_output_file): one line naming the folder and why, exit code 2, and
nothing computed.

``--out`` of ``benchmark``, ``train`` and ``make-patches`` and ``OUT`` of ``make-data`` below a
file, being a file, or in a folder without write permission. The work each command would do is
replaced by a function that fails the test, so a check that runs too late is caught.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from firereg.pipelines.cli.app import app
from firereg.pipelines.cli.options import check_output_folder

runner = CliRunner()


def _must_not_run(*args, **kwargs):
    raise AssertionError("the command started its work before checking its output folder")


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the work of every command checked here by :func:`_must_not_run`."""
    import firereg.evaluation.benchmark
    import firereg.pipelines.training
    import firereg.pipelines.training.patches
    import firereg.transforms.fire_generator

    monkeypatch.setattr(firereg.evaluation.benchmark, "run_benchmark", _must_not_run)
    monkeypatch.setattr(firereg.pipelines.training, "train", _must_not_run)
    monkeypatch.setattr(firereg.pipelines.training.patches, "make_patches", _must_not_run)
    monkeypatch.setattr(firereg.transforms.fire_generator, "make_fire_dataset", _must_not_run)


def _command(name: str, out: Path, fire_data: Path) -> list[str]:
    """The command line of ``name`` writing to ``out``."""
    if name == "make-data":
        return ["make-data", str(out), "--size", "64"]
    return [name, "--data", str(fire_data), "--out", str(out)]


COMMANDS = ["benchmark", "train", "make-patches", "make-data"]


def _option(name: str) -> str:
    return "OUT" if name == "make-data" else "--out"


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("name", COMMANDS)
def test_output_below_a_file(name, fire_data, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "run" / "x"
    result = runner.invoke(app, _command(name, out, fire_data))
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {_option(name)} {out}: {blocker} is a file, not a folder\n"
    assert "Traceback" not in result.output
    assert blocker.read_text() == "not a folder"


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("name", COMMANDS)
def test_output_is_a_file(name, fire_data, tmp_path):
    out = tmp_path / "a-file"
    out.write_text("not a folder")
    result = runner.invoke(app, _command(name, out, fire_data))
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {_option(name)} {out} is a file, not a folder\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("name", COMMANDS)
def test_output_in_a_read_only_folder(name, fire_data, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        out = locked / "run"
        result = runner.invoke(app, _command(name, out, fire_data))
        assert result.exit_code == 2, result.output
        assert result.stderr == f"error: {_option(name)} {out}: {locked} is not writable\n"
        assert not out.exists()
    finally:
        locked.chmod(0o700)


def test_not_writable_is_reported_even_as_root(tmp_path, monkeypatch):
    """The permission branch, as ``os.access`` answers it (root is never refused, so it is simulated)."""
    (tmp_path / "run").mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path / "run")
    with pytest.raises(ValueError, match=r"^--out .*/run/new: .*/run is not writable$"):
        check_output_folder(tmp_path / "run" / "new", "--out")
    assert check_output_folder(tmp_path / "other" / "new", "--out") == tmp_path / "other" / "new"


def test_writable_folders_pass(tmp_path, monkeypatch):
    existing = tmp_path / "run"
    existing.mkdir()
    assert check_output_folder(existing, "--out") == existing
    assert check_output_folder(tmp_path / "a" / "b" / "c", "--out") == tmp_path / "a" / "b" / "c"
    assert not (tmp_path / "a").exists()  # nothing created
    monkeypatch.chdir(tmp_path)
    assert check_output_folder(Path("relative"), "--out") == Path("relative")


def test_split_output_file_below_a_file_or_a_folder(fire_data, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["split", str(blocker / "split.csv"), "--data", str(fire_data)])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: OUT {blocker / 'split.csv'}: {blocker} is a file, not a folder\n"
    result = runner.invoke(app, ["split", str(tmp_path), "--data", str(fire_data)])
    assert result.exit_code == 2 and result.stderr == f"error: OUT {tmp_path} is a folder, not a file\n"
