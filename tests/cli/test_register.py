"""``firereg register`` (firereg.pipelines.cli.register) on photographs and on NIfTI volumes, run in-process
with typer's CliRunner. The inputs are the ``photo_pair`` and ``pair3d`` fixtures (tests/conftest.py)."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from firereg.pipelines.cli.app import app

runner = CliRunner()


def test_cli_register(photo_pair, tmp_path):
    pair = photo_pair
    root = pair["root"]
    out = tmp_path / "cli-out"
    result = runner.invoke(app, ["register", str(root / "fixed.png"), str(root / "moving.png"), "--model", str(pair["ckpt"]),
                                 "--out", str(out), "--points", str(root / "control_points.txt")])
    assert result.exit_code == 0, result.output
    for name in ("warped.png", "field.nii.gz", "field.npy", "checkerboard.png", "overlay.png", "points_mapped.csv"):
        assert (out / name).is_file()
        assert str(out / name) in result.stdout
    assert "landmark error (moving image, px): mean 0.000" in result.stdout

    small = tmp_path / "small.png"
    Image.fromarray(pair["fixed"][:, :150]).save(small)  # the fixed photograph, 150 of its 200 columns
    result = runner.invoke(app, ["register", str(root / "fixed.png"), str(small), "--model", str(pair["ckpt"]), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "200x200" in result.stderr and "150x200" in result.stderr
    result = runner.invoke(app, ["register", str(root / "fixed.png"), str(root / "moving.png"), "--model", str(pair["ckpt"]),
                                 "--out", str(out), "--model-type", "cascade"])
    assert result.exit_code == 2 and str(pair["ckpt"]) in result.stderr


def test_cli_register_nifti(pair3d, tmp_path, write_nifti):
    out = tmp_path / "cli"
    result = runner.invoke(app, ["register", str(pair3d["fixed"]), str(pair3d["moving"]), "--model", str(pair3d["ckpt"]),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out / "warped.nii.gz") in result.stdout and str(out / "field.nii.gz") in result.stdout
    four = write_nifti(tmp_path / "four.nii.gz", np.zeros((*pair3d["shape"], 2)), pair3d["affine"])
    result = runner.invoke(app, ["register", str(pair3d["fixed"]), str(four), "--model", str(pair3d["ckpt"]),
                                 "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and str(four) in result.stderr and "(20, 18, 16, 2)" in result.stderr
