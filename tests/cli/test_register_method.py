"""``firereg register --method SPEC`` and ``--pairs FIRE_DIR`` (firereg.pipelines.cli.register,
firereg.pipelines.register): every method writes every output, the matrix in transform.json is the
mapping the method applied, failures write nothing. Pairs come from the shared ``fire_data`` (256 px)
and ``photo_pair`` fixtures (tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from firereg.evaluation.results import (
    DisplacementFieldResult,
    MatrixResult,
    ScaledResult,
)
from firereg.pipelines.cli.app import app
from firereg.pipelines.fields_io import load_field
from firereg.pipelines.register import full_resolution_matrix
from firereg.transforms.fire_reader import read_control_points

runner = CliRunner()

OUTPUTS = ("warped.png", "field.nii.gz", "field.npy", "checkerboard.png", "overlay.png", "points_mapped.csv",
           "transform.json")


def _pair(fire_data: Path, name: str = "S01") -> tuple[Path, Path, Path]:
    return (fire_data / "Images" / f"{name}_1.jpg", fire_data / "Images" / f"{name}_2.jpg",
            fire_data / "Ground Truth" / f"control_points_{name}_1_2.txt")


def _register(fire_data: Path, out: Path, *args: str):
    fixed, moving, points = _pair(fire_data)
    return runner.invoke(app, ["register", str(fixed), str(moving), "--out", str(out), "--points", str(points), *args])


def _check_outputs(out: Path, stdout: str | None = None) -> tuple[dict, pd.DataFrame]:
    """Every output is there (and listed); the field maps the points as points_mapped.csv says."""
    assert {p.name for p in out.iterdir()} == set(OUTPUTS)  # and no temporaries
    for name in ("warped.png", "checkerboard.png", "overlay.png"):
        with Image.open(out / name) as im:
            im.verify()
    if stdout is not None:
        assert all(str(out / name) in stdout for name in OUTPUTS)
    with Image.open(out / "warped.png") as im:
        assert im.size == (256, 256) and im.mode == "RGB"  # full resolution
    field = load_field(out / "field.nii.gz")
    np.testing.assert_array_equal(field, np.load(out / "field.npy"))
    table = pd.read_csv(out / "points_mapped.csv")
    transform = json.loads((out / "transform.json").read_text())
    assert transform["status"] == "ok" and transform["fixed_size"] == [256, 256] and transform["seconds"] > 0
    return transform, table


def test_register_sift_writes_every_output_and_is_accurate(fire_data, tmp_path):
    out = tmp_path / "sift"
    result = _register(fire_data, out, "--method", "sift")
    assert result.exit_code == 0, result.output
    transform, table = _check_outputs(out, result.stdout)
    assert transform["method"] == "sift" and transform["kind"] == "homography" and transform["working_size"] == 512
    assert table["error_moving"].mean() < 5.0 and table["error_fixed"].mean() < 5.0  # identity: ~25 px
    # the full-resolution matrix is the mapping the points went through, and the field's
    matrix = np.asarray(transform["matrix"])
    fixed_pts = table[["x_fixed", "y_fixed"]].to_numpy()
    hom = np.c_[fixed_pts, np.ones(len(fixed_pts))] @ matrix.T
    np.testing.assert_allclose(hom[:, :2] / hom[:, 2:], table[["x_moving_mapped", "y_moving_mapped"]], atol=1e-6)
    field = np.load(out / "field.npy")
    ys, xs = np.mgrid[0:256:51, 0:256:51]
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float)
    hom = np.c_[grid, np.ones(len(grid))] @ matrix.T
    np.testing.assert_allclose(field[:, ys.ravel(), xs.ravel()].T, hom[:, :2] / hom[:, 2:] - grid, atol=1e-3)
    product = np.asarray(transform["inverse"]) @ matrix  # the inverse homography (up to scale)
    np.testing.assert_allclose(product / product[2, 2], np.eye(3), atol=1e-9)


def test_register_sift_quadratic_writes_its_full_resolution_quadratic(fire_data, tmp_path):
    out = tmp_path / "sift-quadratic"
    result = _register(fire_data, out, "--method", "sift-quadratic")
    assert result.exit_code == 0, result.output
    transform, table = _check_outputs(out, result.stdout)
    assert transform["kind"] == "quadratic" and "matrix" not in transform
    coefficients = np.asarray(transform["quadratic"])
    assert coefficients.shape == (2, 6)
    x, y = table["x_fixed"].to_numpy(), table["y_fixed"].to_numpy()
    monomials = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    np.testing.assert_allclose(monomials @ coefficients.T, table[["x_moving_mapped", "y_moving_mapped"]], atol=1e-4)
    assert table["error_moving"].mean() < 5.0


def test_register_identity_gives_the_zero_field(fire_data, tmp_path):
    out = tmp_path / "identity"
    result = _register(fire_data, out, "--method", "identity", "--size", "128")
    assert result.exit_code == 0, result.output
    transform, table = _check_outputs(out)
    assert transform["kind"] == "affine" and transform["working_size"] == 128
    np.testing.assert_allclose(transform["matrix"], np.eye(3), atol=1e-12)
    assert np.abs(np.load(out / "field.npy")).max() < 1e-4
    fixed_pts, moving_pts = read_control_points(_pair(fire_data)[2])
    np.testing.assert_allclose(table["error_moving"], np.linalg.norm(moving_pts - fixed_pts, axis=1), atol=1e-6)
    with Image.open(out / "warped.png") as im, Image.open(_pair(fire_data)[1]) as moving:
        assert np.abs(np.asarray(im).astype(int) - np.asarray(moving.convert("RGB")).astype(int)).max() <= 1


@pytest.mark.slow
def test_register_elastix_affine(fire_data, tmp_path):
    out = tmp_path / "elastix"
    result = _register(fire_data, out, "--method", "elastix-affine", "--size", "128")
    assert result.exit_code == 0, result.output
    transform, table = _check_outputs(out, result.stdout)
    assert transform["kind"] == "affine" and np.allclose(np.asarray(transform["matrix"])[2], [0, 0, 1])
    assert table["error_moving"].mean() < 5.0
    assert transform["fingerprint"]["settings"]["mask_erode_px"] == 6  # the benchmark's settings


def test_model_is_short_for_a_deep_spec(photo_pair, tmp_path):
    root, shift = photo_pair["root"], photo_pair["shift"]
    out = tmp_path / "model"
    result = runner.invoke(app, ["register", str(root / "fixed.png"), str(root / "moving.png"), "--model",
                                 str(photo_pair["ckpt"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    transform = json.loads((out / "transform.json").read_text())
    assert transform["method"] == f"affine:{photo_pair['ckpt']}" and transform["label"] == "affine"
    # through two working sizes (benchmark 512, network 128) the matrix is still the shift, full-resolution px
    np.testing.assert_allclose(transform["matrix"], [[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]], atol=1e-3)


def test_full_resolution_matrix_undoes_the_working_sizes():
    rng = np.random.default_rng(0)
    h = np.eye(3) + rng.normal(scale=[[0.02, 0.02, 3], [0.02, 0.02, 3], [1e-5, 1e-5, 0]])
    inner = ScaledResult(MatrixResult(h, (100, 150), (90, 120)), (200, 300), (180, 240))
    result = ScaledResult(inner, (400, 600), (360, 480))
    matrix = full_resolution_matrix(result)
    pts = rng.uniform(0, 350, size=(50, 2))
    hom = np.c_[pts, np.ones(len(pts))] @ matrix.T
    np.testing.assert_allclose(hom[:, :2] / hom[:, 2:], result.fixed_to_moving(pts), atol=1e-9)
    dense = ScaledResult(DisplacementFieldResult(np.zeros((2, 10, 10))), (20, 20), (20, 20))
    assert full_resolution_matrix(dense) is None  # a dense field has no matrix


def test_a_failed_registration_writes_nothing(fire_data, tmp_path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(blank)
    out = tmp_path / "failed"
    result = runner.invoke(app, ["register", str(_pair(fire_data)[0]), str(blank), "--method", "sift", "--out", str(out)])
    assert result.exit_code == 1
    assert result.stderr.startswith("failed: ") and len(result.stderr.strip().splitlines()) == 1
    assert "blank" in result.stderr
    assert not out.exists()


def test_register_without_a_method_uses_the_shipped_default(fire_data, tmp_path):
    out = tmp_path / "default"
    result = _register(fire_data, out)  # neither --method nor --model
    assert result.exit_code == 0, result.output
    transform, table = _check_outputs(out, result.stdout)
    assert transform["method"] == "default" and transform["label"] == "default"
    assert transform["fingerprint"]["settings"]["candidate_px"] == 6.0  # sift-quadratic's settings
    assert table["error_moving"].mean() < 3.0  # identity: ~25 px


def test_register_refuses_bad_command_lines(fire_data, tmp_path, photo_pair):
    fixed, moving, _ = _pair(fire_data)
    cases = [
        ([str(fixed), str(moving), "--out", str(tmp_path / "o"), "--refine-steps", "3"], ["--model"]),
        ([str(fixed), str(moving), "--out", str(tmp_path / "o"), "--method", "sift", "--model", str(photo_pair["ckpt"])],
         ["not both"]),
        ([str(fixed), str(moving), "--out", str(tmp_path / "o"), "--method", "sieve"], ["'sieve'", "valid forms"]),
        ([str(fixed), "--out", str(tmp_path / "o"), "--method", "sift"], ["FIXED and MOVING"]),
        ([str(fixed), str(moving), "--pairs", str(fire_data), "--out", str(tmp_path / "o"), "--method", "sift"], ["--pairs"]),
        ([str(fixed), str(moving), "--out", str(fixed), "--method", "sift"], [f"--out {fixed}", "is a file"]),
        ([str(fixed), str(moving), "--out", str(tmp_path / "o"), "--method", "sift", "--refine-steps", "3"], ["--model"]),
    ]
    for args, words in cases:
        result = runner.invoke(app, ["register", *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert all(w in result.stderr for w in words), (words, result.stderr)
    assert not (tmp_path / "o").exists()


def test_register_pairs_writes_one_folder_per_pair(fire_data, tmp_path):
    out = tmp_path / "folder"
    result = runner.invoke(app, ["register", "--pairs", str(fire_data), "--method", "identity", "--size", "64",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "pairs.csv")
    names = ["S01", "S02", "P01", "P02", "A01"]
    assert sorted(table["pair"]) == sorted(names) and set(table["status"]) == {"ok"}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(names)
    for name in names:
        assert {p.name for p in (out / name).iterdir()} == set(OUTPUTS)
        fixed_pts, moving_pts = read_control_points(_pair(fire_data, name)[2])
        error = table.loc[table["pair"] == name, "mean_error"].item()  # identity: the ground-truth displacement
        assert error == pytest.approx(np.linalg.norm(moving_pts - fixed_pts, axis=1).mean(), abs=1e-6)
    assert "registered 5 of 5 pairs" in result.stdout


def test_register_pairs_reports_a_failed_pair_and_writes_the_others(fire_data, tmp_path):
    import shutil

    data = shutil.copytree(fire_data, tmp_path / "fire")
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(data / "Images" / "A01_2.jpg")
    out = tmp_path / "folder"
    (out / "A01").mkdir(parents=True)
    (out / "A01" / "transform.json").write_text("{}")  # of an earlier run: removed, the pair failed now
    result = runner.invoke(app, ["register", "--pairs", str(data), "--method", "identity", "--size", "64",
                                 "--out", str(out)])
    assert result.exit_code == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]  # (and the progress bar)
    assert len(failed) == 1 and failed[0].startswith("failed: A01: ") and "blank" in failed[0]
    table = pd.read_csv(out / "pairs.csv").set_index("pair")
    assert table.loc["A01", "status"] == "failed" and (table.drop(index="A01")["status"] == "ok").all()
    assert list((out / "A01").iterdir()) == [] and (out / "S01" / "transform.json").is_file()


def test_register_no_field_skips_the_field_files_and_removes_old_ones(fire_data, tmp_path):
    out = tmp_path / "sift"
    assert _register(fire_data, out, "--method", "sift").exit_code == 0
    assert (out / "field.npy").is_file() and (out / "field.nii.gz").is_file()
    result = _register(fire_data, out, "--method", "sift", "--no-field")
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == set(OUTPUTS) - {"field.nii.gz", "field.npy"}
    assert "field.npy" not in result.stdout
    table = pd.read_csv(out / "points_mapped.csv")
    assert table["error_moving"].mean() < 5.0
