"""firereg installs as one import package: ``firereg.transforms``, ``firereg.pipelines``,
``firereg.evaluation``; no module, config or script uses the bare folder names.

The slow tests build a wheel from a copy of this source tree (what a fresh clone plus the
working changes holds), install it without ``-e`` into a temporary target folder, and use it
from another folder: only ``firereg`` is importable, the bundles ship inside it, the console
script works, and a bundle runs through ``python -m monai.bundle run`` from its installed folder.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import pytest
from monai.bundle import ConfigParser

import firereg

ROOT = Path(firereg.__file__).resolve().parent
ROOMS = ("transforms", "pipelines", "evaluation")
#: an import of a bare room name, as a Python statement or as a bundle-config reference
BARE_CONFIG_RE = re.compile(r"(?:\$import |\$from |\$|_target_:\s*)(?:transforms|pipelines|evaluation)\b")
#: what every bundle ships (pyproject.toml's package-data), relative to ``bundles/``
BUNDLE_FILES = ("*/LICENSE", "*/configs/*", "*/docs/*", "*/models/*", "schema/*")


def _python_files() -> list[Path]:
    folders = [ROOT / room for room in ROOMS] + [ROOT / "tests", ROOT / "benchmarks"]
    return [p for folder in folders if folder.is_dir() for p in folder.rglob("*.py")]


def _bare_imports(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.relative_to(root)}:{node.lineno}: {name}" for name in names if name.split(".")[0] in ROOMS]
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
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("room", ROOMS)
def test_a_user_module_of_a_room_name_does_not_shadow_ours(tmp_path, room):
    (tmp_path / f"{room}.py").write_text("raise SystemExit('the user module was imported')\n")
    code = f"import firereg.{room}, firereg.pipelines.cli.app; print(firereg.{room}.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent.name == room


# ----------------------------------------------------------------------------- the checks above can fail


@pytest.mark.parametrize(
    "line, bare",
    [("  - $import pipelines", True), ("  - $import transforms.io", True), ("  - $from evaluation import results", True),
     ("net: $pipelines.bundles.bundle_root('x')", True), ("  _target_: evaluation.benchmark.BenchmarkConfig", True),
     ("  - $import firereg", False), ("  - $import firereg.pipelines.bundles", False),
     ("  _target_: firereg.transforms.pair_transforms.PairTransformConfig", False),
     ("  - $monai.transforms.Resize(spatial_size=[8, 8])", False), ("transforms: '@preprocessing'", False)],
)
def test_bare_config_pattern(line, bare):
    assert bool(BARE_CONFIG_RE.search(line)) == bare


def test_bare_import_scan_sees_every_form(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(
        "import transforms\nimport os, evaluation.benchmark as b\nfrom pipelines.nn import x\n"
        "from firereg.transforms import io\nfrom . import sibling\nimport transformers\n"
        "def f():\n    from pipelines import cli\n"
    )
    hits = sorted(_bare_imports(module, root=tmp_path), key=lambda hit: int(hit.split(":")[1]))
    assert [hit.split(": ", 1)[1] for hit in hits] == ["transforms", "evaluation.benchmark", "pipelines.nn", "pipelines"]


def test_every_bundle_config_finds_its_bundle(tmp_path, monkeypatch):
    """Each config's ``imports`` bind ``firereg`` so that its expressions resolve (``$import firereg.a.b``
    alone binds only the name ``"firereg.a.b"``), and ``bundle_root`` falls back to the installed bundle."""
    monkeypatch.chdir(tmp_path)  # not a bundle folder, no bundles/ below it
    resolved = {}
    for path in sorted((ROOT / "bundles").glob("*/configs/*.yaml")):
        parser = ConfigParser()
        parser.read_config(str(path))
        if "bundle_root" not in parser.config:  # multi_gpu_train.yaml overlays train.yaml
            continue
        parser.parse()
        parser.get_parsed_content("imports")
        resolved[f"{path.parent.parent.name}/{path.name}"] = Path(parser.get_parsed_content("bundle_root"))
    assert len(resolved) >= 10
    assert resolved == {name: ROOT / "bundles" / name.split("/")[0] for name in resolved}


# ----------------------------------------------------------------------------- a regular (non-editable) install


def _source_copy(dest: Path) -> Path:
    """Copy the source tree as a fresh clone with the working changes holds it (git's tracked and
    untracked, not ignored, files; without git: everything but caches, builds and environments)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                                check=True, timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "runs", "*.pt"))
        return dest
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # a tracked file may be deleted in the working tree
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _isolation_args() -> list[str]:
    """Build offline with this environment's setuptools when it meets pyproject.toml's build requirement
    (a fresh venv's bundled setuptools may be older); else let pip fetch it, as ``pip install .`` does."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    need = next(int(r.split(">=")[1].split(".")[0]) for r in requires if r.startswith("setuptools>="))
    try:
        have = int(version("setuptools").split(".")[0])
    except PackageNotFoundError:
        return []
    return ["--no-build-isolation", "--no-index"] if have >= need else []


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the source tree (the build writes build/ and *.egg-info into it, not into the repository)."""
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip(f"firereg is not imported from a source tree ({ROOT})")
    return _source_copy(tmp_path_factory.mktemp("source") / "firereg-src")


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of :func:`source`, built by pip (setuptools)."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *_isolation_args(), "-w", str(out),
                           str(source)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (built,) = out.glob("firereg-*.whl")
    return built


@pytest.fixture(scope="module")
def target(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed (not editable, no dependencies: this environment has them) into a fresh folder."""
    folder = tmp_path_factory.mktemp("target") / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(folder),
                           str(wheel)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder


def _run_installed(args: list[str], target: Path, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run ``args`` with the installed package first on the path (before this environment's editable firereg)."""
    env = dict(os.environ, PYTHONPATH=str(target), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               FIREREG_HOME=str(cwd / "firereg-home"))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_wheel_holds_only_firereg_and_every_module_and_bundle_file(wheel, source):
    meta = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = f"firereg-{meta['version']}.dist-info"
    assert {name.split("/")[0] for name in names} == {"firereg", dist_info}
    assert zipfile.ZipFile(wheel).read(f"{dist_info}/top_level.txt").decode().split() == ["firereg"]
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert f"firereg = {meta['scripts']['firereg']}" in entry_points
    shipped = {name.removeprefix("firereg/") for name in names if name.startswith("firereg/")}
    modules = {"__init__.py"} | {str(p.relative_to(source)) for room in ROOMS for p in (source / room).rglob("*.py")}
    assert len(modules) > 40
    assert modules - shipped == set()
    bundle_files = {str(p.relative_to(source)) for pattern in BUNDLE_FILES for p in (source / "bundles").glob(pattern)
                    if p.is_file()}
    every = {str(p.relative_to(source)) for p in (source / "bundles").rglob("*") if p.is_file()}
    # all of bundles/ but its index and .gitignore belongs to some bundle and ships
    assert every - bundle_files == {"bundles/README.md", "bundles/.gitignore"}
    assert len(bundle_files) >= 30 and bundle_files - shipped == set()
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in shipped)
    # the shipped weights (firereg.pipelines.method_specs.DEFAULT_WEIGHTS) and their training log
    assert {"pipelines/weights/default_voxelmorph.pt", "pipelines/weights/TRAINING_LOG.md"} <= shipped


@pytest.mark.slow
def test_installed_package_is_the_only_top_level_name(target, tmp_path):
    code = (
        "import importlib.util as u, firereg, firereg.pipelines.nn, firereg.evaluation.results, firereg.pipelines.cli.app\n"
        "from firereg.pipelines.bundles import bundles_dir\n"
        "print(firereg.__file__)\n"
        "print(bundles_dir())\n"
        "print([name for name in ('transforms', 'pipelines', 'evaluation') if u.find_spec(name)])\n"
        "try:\n"
        "    import transforms\n"
        "except ModuleNotFoundError as err:\n"
        "    print(err.name)\n"
    )
    done = _run_installed([sys.executable, "-c", code], target, tmp_path)
    assert done.returncode == 0, done.stderr
    package, bundles, bare, missing = done.stdout.strip().splitlines()
    assert Path(package) == target / "firereg" / "__init__.py"
    assert Path(bundles) == target / "firereg" / "bundles"
    assert bare == "[]" and missing == "transforms"
    for name in ("fire_voxelmorph", "fire_affine", "fire_cascade", "mnist_voxelmorph"):
        assert (target / "firereg" / "bundles" / name / "configs" / "metadata.json").is_file(), name
        assert (target / "firereg" / "bundles" / name / "LICENSE").is_file(), name
    assert (target / "firereg" / "bundles" / "schema" / "meta_schema_20240725.json").is_file()
    assert (target / "firereg" / "pipelines" / "weights" / "default_voxelmorph.pt").is_file()


@pytest.mark.slow
def test_installed_console_script(target, tmp_path):
    done = _run_installed([str(target / "bin" / "firereg"), "--help"], target, tmp_path)
    assert done.returncode == 0, done.stderr
    for command in ("make-data", "benchmark", "train", "register", "demo"):
        assert command in done.stdout


@pytest.mark.slow
def test_installed_register_without_a_method_uses_the_shipped_default(target, tmp_path):
    """``firereg register FIXED MOVING --out DIR`` from the installed package, no --method/--model."""
    from firereg.transforms.fire_generator import GeneratorConfig, make_fire_dataset

    data = make_fire_dataset(tmp_path / "fire", GeneratorConfig(size=256, pairs={"S": 1}, seed=0))
    points = data / "Ground Truth" / "control_points_S01_1_2.txt"
    done = _run_installed([str(target / "bin" / "firereg"), "register", str(data / "Images" / "S01_1.jpg"),
                           str(data / "Images" / "S01_2.jpg"), "--points", str(points), "--out", str(tmp_path / "out")],
                          target, tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "with default" in done.stdout
    transform = json.loads((tmp_path / "out" / "transform.json").read_text())
    assert transform["method"] == "default"
    mapped = pd.read_csv(tmp_path / "out" / "points_mapped.csv")
    assert mapped["error_moving"].mean() < 3.0, mapped


@pytest.mark.slow
def test_bundle_runs_from_its_installed_folder(target, tmp_path):
    """The MNIST atlas bundle (the cheapest real run: 15 steps) from ``firereg/bundles/mnist_voxelmorph`` of the
    install: its default ``bundle_root`` is that folder, so its outputs land there (inside the temporary target)."""
    bundle = target / "firereg" / "bundles" / "mnist_voxelmorph"
    in_repo = sorted((ROOT / "bundles" / "mnist_voxelmorph").rglob("*"))
    done = _run_installed([sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/train.yaml",
                           "--meta_file", "configs/metadata.json", "--steps", "15", "--digit", "2",
                           "--similarity", "mse", "--lam", "0.1", "--progress", "False"], target, bundle, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    for name in ("summary.json", "model.pt", "atlas.png", "atlas_grid.png"):
        assert (bundle / "runs" / "train" / name).is_file(), name
    assert (bundle / "models" / "model.pt").is_file() and (bundle / "models" / "model_config.json").is_file()
    summary = json.loads((bundle / "runs" / "train" / "summary.json").read_text())
    assert summary["steps"] == 15 and summary["digit"] == 2
    assert sorted((ROOT / "bundles" / "mnist_voxelmorph").rglob("*")) == in_repo  # the source tree is untouched
