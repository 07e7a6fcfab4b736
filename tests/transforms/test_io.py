"""Tests for firereg.transforms.io: atomic writes and the one RGB photo reader."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from firereg.transforms.io import (
    PHOTO_EXTENSIONS,
    atomic_output,
    atomic_to_csv,
    atomic_write_text,
    is_atomic_temporary,
    read_rgb,
)

# --- atomic_output ----------------------------------------------------------------------


def test_atomic_output_renames_on_success(tmp_path):
    target = tmp_path / "new" / "folder" / "result.txt"  # parents are created
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        assert is_atomic_temporary(tmp)
        tmp.write_text("done")
        assert not target.exists()  # nothing at the target until the block ends
    assert target.read_text() == "done"
    assert os.listdir(target.parent) == ["result.txt"]  # no temporary file left


def test_atomic_output_replaces_an_existing_file(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old")
    with atomic_output(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["result.txt"]


def test_atomic_output_failure_leaves_nothing(tmp_path):
    target = tmp_path / "result.csv"
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert os.listdir(tmp_path) == []  # neither the target nor a temporary file


def test_atomic_output_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "result.csv"
    target.write_text("old")
    with pytest.raises(KeyError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise KeyError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.csv"]


@pytest.mark.parametrize(
    "name, suffix",
    [("field.nii.gz", ".nii.gz"), ("model.pt", ".pt"), ("warped.png", ".png"), ("x.tar.gz", ".tar.gz"),
     ("IMG.NII.GZ", ".NII.GZ"), ("README", "")],
)
def test_atomic_output_keeps_the_suffix(tmp_path, name, suffix):
    with atomic_output(tmp_path / name) as tmp:
        assert tmp.name.endswith(suffix) and tmp.name.startswith(".")
        if suffix:
            assert not tmp.name.endswith(".gz.gz") and tmp.name.count(suffix) == 1
        else:
            assert "." not in tmp.name.split(".tmp-")[1]  # nothing after the pid
        tmp.write_bytes(b"x")
    assert (tmp_path / name).read_bytes() == b"x"


def test_atomic_output_works_with_writers_that_pick_by_suffix(tmp_path):
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    with atomic_output(tmp_path / "img.png") as tmp:
        Image.fromarray(img).save(tmp)  # PIL chooses PNG from the temporary file's suffix
    with Image.open(tmp_path / "img.png") as im:
        assert im.format == "PNG"
        np.testing.assert_array_equal(np.asarray(im), img)


def test_is_atomic_temporary():
    assert is_atomic_temporary(f".split.tmp-{os.getpid()}.csv")
    assert is_atomic_temporary("/some/folder/.field.tmp-12.nii.gz")
    assert not is_atomic_temporary("split.csv")
    assert not is_atomic_temporary("split.tmp-1.csv")  # not hidden: not ours
    assert not is_atomic_temporary(".hidden.csv")


def test_atomic_write_text_and_csv(tmp_path):
    assert atomic_write_text(tmp_path / "a.txt", "hello\n") == tmp_path / "a.txt"
    assert (tmp_path / "a.txt").read_text() == "hello\n"
    frame = pd.DataFrame({"name": ["S01", "P02"], "error": [1.5, float("inf")]})
    path = atomic_to_csv(frame, tmp_path / "t.csv")
    assert path.read_text().splitlines() == ["name,error", "S01,1.5", "P02,inf"]  # no index column
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "t.csv"]


# --- read_rgb ---------------------------------------------------------------------------


def test_read_rgb_colour_and_grey(tmp_path):
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[1, 4] = (10, 200, 30)  # row 1, column 4
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    out = read_rgb(tmp_path / "rgb.png")
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)
    grey = np.arange(35, dtype=np.uint8).reshape(5, 7)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    out = read_rgb(str(tmp_path / "grey.png"))
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)
    rgba = np.dstack([rgb, np.full((5, 7), 128, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "rgba.png"), rgb)  # alpha dropped


def test_read_rgb_missing_file_is_named(tmp_path):
    missing = tmp_path / "no-such.jpg"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        read_rgb(missing)


@pytest.mark.parametrize("name", ["scan.gif", "volume.nii.gz", "noext"])
def test_read_rgb_unsupported_type_lists_supported(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"whatever")
    with pytest.raises(ValueError) as err:
        read_rgb(path)
    message = str(err.value)
    assert str(path) in message
    assert all(ext in message for ext in PHOTO_EXTENSIONS)


def test_read_rgb_nifti_hint(tmp_path):
    with pytest.raises(ValueError, match="read_nifti"):
        read_rgb(tmp_path / "volume.nii.gz")


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_read_rgb_unreadable_file_is_a_value_error_naming_it(tmp_path, kind):
    path = tmp_path / "photo.jpg"
    if kind == "garbage":
        path.write_bytes(b"not an image at all")
    else:
        noise = np.random.default_rng(0).integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(path, quality=95)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_rgb(path)
