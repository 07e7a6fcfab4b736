"""Tests for firereg.transforms.fire_reader: the manifest of a FIRE folder and its error messages."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from firereg.transforms.fire_reader import (
    CATEGORIES,
    KNOWN_BAD_PAIRS,
    FireFormatError,
    read_control_points,
    read_fire,
)

COLUMNS = ["name", "category", "fixed", "moving", "fixed_points", "moving_points", "mask", "width", "height"]


def _copy(fire_data: Path, tmp_path: Path) -> Path:
    root = tmp_path / "fire"
    shutil.copytree(fire_data, root)
    return root


def _add_p37(root: Path) -> None:
    """A P37 pair made by copying P01's files."""
    for i in ("1", "2"):
        shutil.copy(root / "Images" / f"P01_{i}.jpg", root / "Images" / f"P37_{i}.jpg")
    shutil.copy(root / "Ground Truth" / "control_points_P01_1_2.txt", root / "Ground Truth" / "control_points_P37_1_2.txt")


def _tiny_fire(tmp_path: Path, lines: str, size=(40, 30), name="S01") -> Path:
    """A one-pair FIRE folder with W x H images and the given control-point text."""
    root = tmp_path / "tiny"
    (root / "Images").mkdir(parents=True)
    (root / "Ground Truth").mkdir()
    for i in ("1", "2"):
        Image.fromarray(np.full((size[1], size[0], 3), 100, np.uint8)).save(root / "Images" / f"{name}_{i}.jpg")
    (root / "Ground Truth" / f"control_points_{name}_1_2.txt").write_text(lines)
    return root


# --- the manifest -------------------------------------------------------------------


def test_manifest_columns_and_values(fire_data):
    m = read_fire(fire_data)
    assert list(m.columns) == COLUMNS
    assert m["name"].tolist() == ["A01", "P01", "P02", "S01", "S02"]  # sorted by name
    assert m["category"].tolist() == [n[0] for n in m["name"]]
    assert set(m["category"]) <= set(CATEGORIES)
    for row in m.itertuples(index=False):
        assert Path(row.fixed).name == f"{row.name}_1.jpg"
        assert Path(row.moving).name == f"{row.name}_2.jpg"
        assert Path(row.fixed).is_file() and Path(row.moving).is_file()
        assert row.mask == str(fire_data / "Masks" / "mask.png")
        assert (row.width, row.height) == (256, 256)
        assert row.fixed_points.shape == (10, 2) and row.moving_points.shape == (10, 2)
        assert row.fixed_points.dtype == np.float64
        numbers = np.loadtxt(fire_data / "Ground Truth" / f"control_points_{row.name}_1_2.txt")
        np.testing.assert_array_equal(row.fixed_points, numbers[:, :2])
        np.testing.assert_array_equal(row.moving_points, numbers[:, 2:])
    assert m.attrs["root"] == str(fire_data)
    assert m.attrs["excluded"] == []


def test_manifest_without_masks_folder(fire_data, tmp_path):
    root = _copy(fire_data, tmp_path)
    shutil.rmtree(root / "Masks")
    m = read_fire(root)
    assert m["mask"].isna().all()


def test_p37_excluded_by_default_and_included_on_request(fire_data, tmp_path):
    assert KNOWN_BAD_PAIRS == ("P37",)
    root = _copy(fire_data, tmp_path)
    _add_p37(root)
    default = read_fire(root)
    assert "P37" not in default["name"].tolist()
    assert default.attrs["excluded"] == ["P37"]
    assert len(default) == 5
    full = read_fire(root, exclude_known_bad=False)
    assert "P37" in full["name"].tolist()
    assert full.attrs["excluded"] == []
    assert len(full) == 6
    row = full.set_index("name").loc["P37"]
    assert row["category"] == "P"
    np.testing.assert_array_equal(row["fixed_points"], full.set_index("name").loc["P01", "fixed_points"])


@pytest.mark.parametrize(
    "categories, names",
    [("S", ["S01", "S02"]), (("P",), ["P01", "P02"]), ("sa", ["A01", "S01", "S02"]), (("A", "P"), ["A01", "P01", "P02"])],
)
def test_category_filter(fire_data, categories, names):
    assert read_fire(fire_data, categories=categories)["name"].tolist() == names


def test_unknown_category(fire_data):
    with pytest.raises(ValueError, match="X"):
        read_fire(fire_data, categories="SX")


def test_read_control_points_skips_blank_lines(tmp_path):
    path = tmp_path / "cp.txt"
    path.write_text("1 2 3 4\n\n  5.5\t6 7 8e0  \n")
    fixed, moving = read_control_points(path)
    np.testing.assert_array_equal(fixed, [[1, 2], [5.5, 6]])
    np.testing.assert_array_equal(moving, [[3, 4], [7, 8]])


def test_read_control_points_bounds_are_pixel_edges(tmp_path):
    path = tmp_path / "cp.txt"
    path.write_text("-0.5 -0.5 39.4 29.4\n")
    read_control_points(path, ((40, 30), (40, 30)))
    path.write_text("-0.5 -0.5 39.5 29.4\n")
    with pytest.raises(FireFormatError, match="moving point"):
        read_control_points(path, ((40, 30), (40, 30)))


def test_read_control_points_reads_fixed_point_files_when_allowed(tmp_path):
    """The one point-file parser: FIRE's 4 columns, or 2 columns of fixed points (firereg register --points)."""
    path = tmp_path / "points.txt"
    path.write_text("1 2\n\n 3.5\t4\n")
    fixed, moving = read_control_points(path, ((40, 30), (40, 30)), allow_fixed_only=True)
    np.testing.assert_array_equal(fixed, [[1, 2], [3.5, 4]])
    assert moving is None
    four = tmp_path / "four.txt"
    four.write_text("1 2 3 4\n")
    fixed, moving = read_control_points(four, allow_fixed_only=True)
    np.testing.assert_array_equal(moving, [[3, 4]])
    with pytest.raises(FireFormatError, match=r"points.txt, line 1: expected 4 columns .* got 2"):
        read_control_points(path)  # a FIRE file must have 4
    path.write_text("1 2\n1 2 3 4\n")
    with pytest.raises(FireFormatError, match=r"points.txt, line 2: expected 2 columns \(x y\), got 4"):
        read_control_points(path, allow_fixed_only=True)
    path.write_text("\n1 2 3\n")
    with pytest.raises(FireFormatError, match=r"points.txt, line 2: expected 4 columns .* or 2 columns .*got 3"):
        read_control_points(path, allow_fixed_only=True)
    path.write_text("1 2\n39.6 2\n")
    with pytest.raises(FireFormatError, match=r"points.txt, line 2: fixed point \(39.6, 2\) lies outside.*40x30"):
        read_control_points(path, ((40, 30), (40, 30)), allow_fixed_only=True)


# --- errors name the file (and line) ---------------------------------------------------


def test_no_such_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        read_fire(missing)


@pytest.mark.parametrize("folder", ["Images", "Ground Truth"])
def test_missing_subfolder(fire_data, tmp_path, folder):
    root = _copy(fire_data, tmp_path)
    shutil.rmtree(root / folder)
    with pytest.raises(FileNotFoundError) as err:
        read_fire(root)
    assert str(root / folder) in str(err.value)


def test_empty_images_folder(tmp_path):
    (tmp_path / "Images").mkdir()
    (tmp_path / "Ground Truth").mkdir()
    with pytest.raises(FireFormatError, match=re.escape(str(tmp_path / "Images"))):
        read_fire(tmp_path)


@pytest.mark.parametrize("removed", ["S02_2.jpg", "S02_1.jpg"])
def test_image_without_partner(fire_data, tmp_path, removed):
    root = _copy(fire_data, tmp_path)
    (root / "Images" / removed).unlink()
    remaining = "S02_1.jpg" if removed == "S02_2.jpg" else "S02_2.jpg"
    with pytest.raises(FireFormatError) as err:
        read_fire(root)
    assert str(root / "Images" / remaining) in str(err.value)
    assert "partner" in str(err.value)


def test_three_columns_names_file_and_line(tmp_path):
    root = _tiny_fire(tmp_path, "1 2 3 4\n5 6 7 8\n1 2 3\n")
    with pytest.raises(FireFormatError) as err:
        read_fire(root)
    msg = str(err.value)
    assert str(root / "Ground Truth" / "control_points_S01_1_2.txt") in msg
    assert "line 3" in msg
    assert "got 3" in msg


def test_not_a_number_names_file_and_line(tmp_path):
    root = _tiny_fire(tmp_path, "1 2 3 4\n1 2 three 4\n")
    with pytest.raises(FireFormatError) as err:
        read_fire(root)
    msg = str(err.value)
    assert "control_points_S01_1_2.txt" in msg and str(root) in msg
    assert "line 2" in msg and "three" in msg


def test_non_finite_names_file_and_line(tmp_path):
    root = _tiny_fire(tmp_path, "1 2 3 nan\n")
    with pytest.raises(FireFormatError, match=r"control_points_S01_1_2.txt, line 1"):
        read_fire(root)


@pytest.mark.parametrize(
    "line, role",
    [("40 5 3 4", "fixed"), ("5 -1 3 4", "fixed"), ("1 2 3 30", "moving"), ("1 2 -0.6 4", "moving")],
)
def test_point_outside_image_names_file_and_line(tmp_path, line, role):
    root = _tiny_fire(tmp_path, f"1 2 3 4\n\n{line}\n", size=(40, 30))
    with pytest.raises(FireFormatError) as err:
        read_fire(root)
    msg = str(err.value)
    assert str(root / "Ground Truth" / "control_points_S01_1_2.txt") in msg
    assert "line 3" in msg  # blank lines are counted
    assert f"{role} point" in msg and "40x30" in msg


def test_missing_control_point_file(fire_data, tmp_path):
    root = _copy(fire_data, tmp_path)
    missing = root / "Ground Truth" / "control_points_P02_1_2.txt"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        read_fire(root)
    # not reading P02 is the way round it
    assert read_fire(root, categories="SA")["name"].tolist() == ["A01", "S01", "S02"]


def test_empty_control_point_file(tmp_path):
    root = _tiny_fire(tmp_path, "\n  \n")
    with pytest.raises(FireFormatError) as err:
        read_fire(root)
    assert str(root / "Ground Truth" / "control_points_S01_1_2.txt") in str(err.value)
    assert "no control points" in str(err.value)


def test_pair_name_not_s_p_a(tmp_path):
    root = _tiny_fire(tmp_path, "1 2 3 4\n", name="Q01")
    with pytest.raises(FireFormatError) as err:
        read_fire(root)
    assert str(root / "Images" / "Q01_1.jpg") in str(err.value)
    assert "'Q01'" in str(err.value)


def test_unreadable_image_names_it(tmp_path):
    root = _tiny_fire(tmp_path, "1 2 3 4\n")
    (root / "Images" / "S01_2.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FireFormatError, match=re.escape(str(root / "Images" / "S01_2.jpg"))):
        read_fire(root)


def test_non_square_images_bounds_use_width_and_height(tmp_path):
    # x up to W, y up to H: a swapped check would reject x=35 in a 40 x 30 image
    root = _tiny_fire(tmp_path, "35 25 38.9 1\n", size=(40, 30))
    m = read_fire(root)
    assert (m.loc[0, "width"], m.loc[0, "height"]) == (40, 30)
    np.testing.assert_array_equal(m.loc[0, "fixed_points"], [[35, 25]])
