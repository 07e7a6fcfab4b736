"""``firereg summary --check`` (firereg.transforms.data_check): every problem of a FIRE folder listed
at once, one line each naming the file, exit code 1; a sound folder passes with exit code 0.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from firereg.pipelines.cli.app import app
from firereg.pipelines.cli.errors import user_errors
from firereg.transforms.data_check import check_fire_folder

runner = CliRunner()


@pytest.fixture
def fire_copy(fire_data: Path, tmp_path: Path) -> Path:
    """A copy of the shared dataset (S01, S02, P01, P02, A01 at 256 px) that a test may break."""
    return Path(shutil.copytree(fire_data, tmp_path / "fire"))


def _problems(output: str) -> list[str]:
    return [line.removeprefix("problem: ") for line in output.splitlines() if line.startswith("problem: ")]


def test_sound_folder_passes(fire_copy):
    result = runner.invoke(app, ["summary", "--data", str(fire_copy), "--check"])
    assert result.exit_code == 0, result.output
    assert f"checked {fire_copy}: 10 images, 5 control-point files, mask: yes; no problems" in result.stdout
    assert "all" in result.stdout  # the summary table follows


def test_truncated_jpeg_and_malformed_points_are_both_listed(fire_copy):
    image = fire_copy / "Images" / "S01_2.jpg"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    points = fire_copy / "Ground Truth" / "control_points_P01_1_2.txt"
    points.write_text("10 20 11 21\n30 40 thirty-one 41\n")
    result = runner.invoke(app, ["summary", "--data", str(fire_copy), "--check"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    problems = _problems(result.stdout)
    assert len(problems) == 2, problems
    assert str(image) in problems[0] and "truncated" in problems[0]
    assert problems[1] == f"{points}, line 2: not a number in '30 40 thirty-one 41'"
    assert f"2 problem(s) in {fire_copy}" in result.stdout
    assert "displacement" not in result.stdout  # no summary of a broken folder


def test_every_kind_of_problem_is_named(fire_copy):
    images, truth = fire_copy / "Images", fire_copy / "Ground Truth"
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(fire_copy / "Masks" / "mask.png")  # empty mask
    with Image.open(images / "P02_1.jpg") as im:
        im.resize((200, 256)).save(images / "P02_2.jpg")  # moving image of another size than fixed
    (truth / "control_points_P02_1_2.txt").write_text("10 10 10 10\n230 10 230 10\n")  # 230 > 199.5: outside
    (truth / "control_points_A01_1_2.txt").unlink()  # images without ground truth
    (truth / "control_points_S09_1_2.txt").write_text("1 2 3 4\n")  # ground truth without images
    (images / "S02_1.png").write_bytes(b"")  # two files for one image
    (images / "A07_1.jpg").write_bytes((images / "A01_1.jpg").read_bytes())  # no partner
    check = check_fire_folder(fire_copy)
    lines = [str(p) for p in check.problems]
    assert not check.ok and len(lines) == 7, "\n".join(lines)
    expected = {
        images / "S02_1.png": "a second file for image S02_1",
        images / "A07_1.jpg": "no partner image A07_2",
        images / "P02_2.jpg": "moving image is 200x256 px but its fixed image P02_1.jpg is 256x256 px",
        fire_copy / "Masks" / "mask.png": "is empty",
        truth / "control_points_A01_1_2.txt": "no ground truth for pair A01",
        truth / "control_points_P02_1_2.txt": "line 2: moving point (230, 10) lies outside the moving image of size 200x256",
        truth / "control_points_S09_1_2.txt": "ground truth without images",
    }
    assert {p.file for p in check.problems} == set(expected)
    for problem in check.problems:
        assert expected[problem.file] in str(problem) and str(problem.file) in str(problem)
    # the command prints the same lines
    result = runner.invoke(app, ["summary", "--data", str(fire_copy), "--check"])
    assert result.exit_code == 1 and _problems(result.stdout) == lines


def test_missing_folders_are_problems_not_tracebacks(tmp_path):
    (tmp_path / "fire").mkdir()
    check = check_fire_folder(tmp_path / "fire")
    assert [p.file.name for p in check.problems] == ["Images", "Ground Truth"]
    assert [str(p) for p in check_fire_folder(tmp_path / "nowhere").problems] == [
        f"{tmp_path / 'nowhere'}: FIRE folder not found"
    ]


def test_user_errors_let_a_commands_exit_code_through():
    @user_errors
    def command() -> None:
        raise typer.Exit(code=1)  # a RuntimeError, which user_errors would turn into exit code 2

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 1
