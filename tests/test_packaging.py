"""firereg installs as one import package: ``firereg.transforms``, ``firereg.pipelines``,
``firereg.evaluation``; no module, config or script uses the bare folder names."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import firereg
import pytest

ROOT = Path(firereg.__file__).resolve().parent
ROOMS = ("transforms", "pipelines", "evaluation")
#: an import of a bare room name, as a Python statement or as a bundle-config reference
BARE_CONFIG_RE = re.compile(r"(?:\$import |\$|_target_:\s*)(?:transforms|pipelines|evaluation)\.")


def _python_files() -> list[Path]:
    folders = [ROOT / room for room in ROOMS] + [ROOT / "tests", ROOT / "benchmarks"]
    return [p for folder in folders if folder.is_dir() for p in folder.rglob("*.py")]


def _bare_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}" for name in names if name.split(".")[0] in ROOMS]
    return found


def test_no_module_imports_a_bare_room_name():
    files = _python_files()
    assert len(files) > 50  # the scan sees the whole tree
    offenders = [hit for path in files for hit in _bare_imports(path)]
    assert offenders == []


def test_no_bundle_config_names_a_bare_room():
    configs = list((ROOT / "bundles").rglob("*.yaml")) + list((ROOT / "bundles").rglob("*.json"))
    assert len(configs) >= 10
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in configs
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if BARE_CONFIG_RE.search(line)
    ]
    assert offenders == []


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {"firereg"} | {
        "firereg." + ".".join(init.parent.relative_to(ROOT).parts)
        for room in ROOMS
        for init in (ROOT / room).rglob("__init__.py")
    }
    assert on_disk == listed


def test_only_firereg_is_importable_from_another_folder(tmp_path):
    code = (
        "import importlib.util as u, firereg.pipelines.nn, firereg.transforms.coords, firereg.evaluation.results\n"
        "print([name for name in ('transforms', 'pipelines', 'evaluation') if u.find_spec(name)])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("room", ROOMS)
def test_a_user_module_of_a_room_name_does_not_shadow_ours(tmp_path, room):
    (tmp_path / f"{room}.py").write_text("raise SystemExit('the user module was imported')\n")
    code = f"import firereg.{room}, firereg.pipelines.cli.app; print(firereg.{room}.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent.name == room
