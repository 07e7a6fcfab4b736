"""The ``firereg`` app itself (firereg.pipelines.cli.app): its commands, their defaults and help, and that
``firereg --help`` loads no heavy library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from firereg.pipelines.cli import data as data_commands
from firereg.pipelines.cli.app import app
from firereg.transforms.fire_generator import DEFAULT_PAIRS
from firereg.transforms.splits import DEFAULT_VAL_FRACTION

COMMANDS = ["make-data", "summary", "split", "benchmark", "demo", "register", "score", "make-patches", "train", "mnist", "brain"]
HEAVY = ("numpy", "pandas", "torch", "monai", "cv2", "scipy", "skimage", "itk", "matplotlib")


def _params(command: str) -> dict:
    """The click parameters of a command, by name."""
    return {p.name: p for p in typer.main.get_command(app).commands[command].params}


def test_commands_in_order():
    assert list(typer.main.get_command(app).commands) == COMMANDS


def test_written_out_defaults_are_the_library_defaults():
    """make-data and split write their defaults out (so --help imports no numpy); they must stay the library's."""
    assert data_commands.DEFAULT_PAIRS_TEXT == ",".join(f"{k}:{v}" for k, v in DEFAULT_PAIRS.items())
    assert data_commands.DEFAULT_VAL_FRACTION == DEFAULT_VAL_FRACTION
    assert _params("make-data")["pairs"].default == data_commands.DEFAULT_PAIRS_TEXT
    assert _params("split")["val_fraction"].default == DEFAULT_VAL_FRACTION


@pytest.mark.parametrize(
    "command, start, unlike",
    [("make-data", "Dataset size", None), ("benchmark", "Benchmark size", "network size"),
     ("demo", "Benchmark size", "network size"), ("train", "Network size", None),
     ("make-patches", "Working size", "benchmark size")],
)
def test_help_names_the_sizes_apart(command, start, unlike):
    size = _params(command)["size"]
    assert size.opts == ["--size"]  # the flag keeps its name
    assert size.help.startswith(start), size.help
    if unlike:
        assert unlike in size.help  # says which other size it is not


def test_help_loads_no_heavy_module():
    code = (
        "import sys\n"
        "from firereg.pipelines.cli.app import app\n"
        "for args in (['--help'], ['benchmark', '--help'], ['train', '--help'], ['make-data', '--help']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as err:\n"
        "        assert err.code == 0, (args, err.code)\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]"
    for command in COMMANDS:
        assert command in done.stdout


def test_console_script_runs():
    script = Path(sys.executable).parent / "firereg"
    if not script.is_file():
        pytest.skip(f"no console script next to {sys.executable}")
    done = subprocess.run([str(script), "benchmark", "--help"], capture_output=True, text=True, timeout=120,
                          env={"COLUMNS": "200", "PATH": str(script.parent)}, check=False)
    assert done.returncode == 0, done.stderr
    assert "--methods" in done.stdout and "Benchmark size" in done.stdout
    done = subprocess.run([str(script), "summary", "--data", "/nonexistent/fire"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: FIRE folder not found: /nonexistent/fire"
