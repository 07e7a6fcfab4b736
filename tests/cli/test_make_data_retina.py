"""``firereg make-data --retina photograph|procedural`` (firereg.pipelines.cli.data.make_data) via typer's CliRunner."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from firereg.pipelines.cli.app import app
from firereg.transforms.fire_generator import read_generator_metadata

runner = CliRunner()
ARGS = ["--size", "128", "--pairs", "S:2,P:1,A:1", "--seed", "4"]


def _fixed_image(root, name: str) -> np.ndarray:
    return np.asarray(Image.open(root / "Images" / f"{name}_1.jpg"), dtype=np.float64)


def test_make_data_procedural_gives_one_eye_per_pair(tmp_path, firereg_home):
    procedural, photograph = tmp_path / "procedural", tmp_path / "photograph"
    result = runner.invoke(app, ["make-data", str(procedural), *ARGS, "--retina", "procedural"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["make-data", str(photograph), *ARGS])  # the default: the photograph
    assert result.exit_code == 0, result.output
    meta, photo_meta = read_generator_metadata(procedural), read_generator_metadata(photograph)
    assert meta["config"]["retina"] == "procedural" and photo_meta["config"]["retina"] == "photograph"
    assert meta["source"] == "procedural retinas (one per pair)"
    seeds = [meta["pairs"][name]["retina_seed"] for name in ("S01", "S02", "P01", "A01")]
    assert all(isinstance(s, int) for s in seeds) and len(set(seeds)) == 4  # a different eye per pair
    assert all(p["retina_seed"] is None for p in photo_meta["pairs"].values())
    # the same options but another retina: other images, the same FIRE layout
    difference = np.abs(_fixed_image(procedural, "S01") - _fixed_image(photograph, "S01")).mean()
    assert difference > 5.0
    assert (procedural / "Ground Truth" / "control_points_A01_1_2.txt").is_file()
    assert not firereg_home.exists()


def test_make_data_rerun_with_other_retina_is_refused(tmp_path, firereg_home):
    out = tmp_path / "made"
    assert runner.invoke(app, ["make-data", str(out), *ARGS, "--retina", "procedural"]).exit_code == 0
    before = json.loads((out / "generator.json").read_text())
    result = runner.invoke(app, ["make-data", str(out), *ARGS, "--retina", "photograph"])
    assert result.exit_code == 2 and "holds something else" in result.stderr, result.output
    assert json.loads((out / "generator.json").read_text()) == before  # left as it was


def test_make_data_bad_retina_is_one_clear_error(tmp_path, firereg_home):
    out = tmp_path / "made"
    result = runner.invoke(app, ["make-data", str(out), *ARGS, "--retina", "cartoon"])
    assert result.exit_code == 2, result.output
    assert "retina must be one of photograph, procedural" in result.stderr and "'cartoon'" in result.stderr
    assert "Traceback" not in result.output and not out.exists()
    source = tmp_path / "photo.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(source)
    result = runner.invoke(app, ["make-data", str(out), *ARGS, "--retina", "procedural", "--source", str(source)])
    assert result.exit_code == 2 and "needs retina='photograph'" in result.stderr, result.output
    assert not out.exists()
