"""Tests for firereg.transforms.splits: stratified seeded splits, CSV round trip, selection."""

from __future__ import annotations

import os
import re

import pandas as pd
import pytest

from firereg.transforms.splits import (
    DEFAULT_VAL_FRACTION,
    make_split,
    read_split,
    select_split,
    split_or_reuse,
    stored_split,
    write_split,
)


def fake_manifest(counts=(("S", 71), ("P", 49), ("A", 14))) -> pd.DataFrame:
    """A manifest of FIRE's size (134 pairs: S 71, P 49, A 14), only the columns splits need."""
    names = [f"{c}{i:02d}" for c, n in counts for i in range(1, n + 1)]
    return pd.DataFrame({"name": names, "category": [n[0] for n in names], "extra": range(len(names))})


def _val(split: pd.DataFrame) -> set[str]:
    return set(split.loc[split["split"] == "validation", "name"])


def test_fire_sized_split_is_89_45_and_stratified():
    m = fake_manifest()
    assert len(m) == 134
    split = make_split(m)
    assert list(split.columns) == ["name", "category", "split"]
    assert split["name"].tolist() == m["name"].tolist()  # manifest order kept
    assert set(split["split"]) == {"train", "validation"}
    assert (split["split"] == "train").sum() == 89
    assert (split["split"] == "validation").sum() == 45
    per_cat = split[split["split"] == "validation"].groupby("category").size().to_dict()
    assert per_cat == {"S": 24, "P": 16, "A": 5}
    # every name appears once, category carried over
    assert split["name"].is_unique
    assert (split["category"] == split["name"].str[0]).all()


def test_default_fraction():
    assert DEFAULT_VAL_FRACTION == pytest.approx(45 / 134)


def test_same_seed_same_split_other_seed_different():
    m = fake_manifest()
    a = make_split(m, seed=7)
    b = make_split(m, seed=7)
    pd.testing.assert_frame_equal(a, b)
    c = make_split(m, seed=8)
    assert _val(a) != _val(c)
    # ...with the same stratified counts
    assert c[c["split"] == "validation"].groupby("category").size().to_dict() == {"S": 24, "P": 16, "A": 5}


def test_split_does_not_depend_on_row_order():
    m = fake_manifest()
    shuffled = m.sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert _val(make_split(m, seed=2)) == _val(make_split(shuffled, seed=2))


def test_other_fraction_and_small_manifest():
    m = fake_manifest((("S", 3), ("P", 2), ("A", 1)))
    split = make_split(m, val_fraction=0.5, seed=0)
    assert (split["split"] == "validation").sum() == 3
    per_cat = split[split["split"] == "validation"].groupby("category").size().to_dict()
    # quotas S 1.5, P 1.0, A 0.5: floors 1, 1, 0 and one left over for the largest remainder;
    # A and S tie at 0.5 and A comes first in sorted order
    assert per_cat == {"A": 1, "P": 1, "S": 1}


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        make_split(fake_manifest(), val_fraction=fraction)


def test_empty_manifest():
    with pytest.raises(ValueError, match="empty"):
        make_split(fake_manifest(()))


def test_write_read_round_trip(tmp_path):
    split = make_split(fake_manifest(), seed=5)
    path = write_split(split, tmp_path / "sub" / "split.csv")
    assert path == tmp_path / "sub" / "split.csv"
    assert path.read_text().splitlines()[0] == "name,category,split"
    assert os.listdir(tmp_path / "sub") == ["split.csv"]  # no temporary file left
    back = read_split(path)
    pd.testing.assert_frame_equal(back, split)


def test_read_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        read_split(path)


def test_read_bad_split_value_names_path(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("name,category,split\nS01,S,train\nS02,S,test\n")
    with pytest.raises(ValueError) as err:
        read_split(path)
    assert str(path) in str(err.value) and "'test'" in str(err.value)


def test_read_duplicate_name_names_path(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("name,category,split\nS01,S,train\nS02,S,validation\nS01,S,validation\n")
    with pytest.raises(ValueError) as err:
        read_split(path)
    assert str(path) in str(err.value) and "S01" in str(err.value)


def test_read_missing_column_names_path(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("name,split\nS01,train\n")
    with pytest.raises(ValueError) as err:
        read_split(path)
    assert str(path) in str(err.value) and "category" in str(err.value)


def test_select_split():
    m = fake_manifest()
    split = make_split(m, seed=1)
    val = select_split(m, split, "validation")
    train = select_split(m, split, "train")
    assert len(val) == 45 and len(train) == 89
    assert set(val["name"]) == _val(split)
    assert set(val["name"]).isdisjoint(train["name"])
    assert list(val.columns) == list(m.columns)  # whole manifest rows
    assert val.index.tolist() == list(range(45))
    # order of the manifest is kept
    assert val["extra"].is_monotonic_increasing


def test_select_split_errors():
    m = fake_manifest()
    split = make_split(m)
    with pytest.raises(ValueError, match="'test'"):
        select_split(m, split, "test")
    with pytest.raises(ValueError, match="A14"):
        select_split(m[m["name"] != "A14"], split, "train")


def test_read_empty_split_value_names_path(tmp_path):
    # an empty cell next to another bad value: must still be a ValueError naming the file
    path = tmp_path / "split.csv"
    path.write_text("name,category,split\nS01,S,\nS02,S,test\nS03,S,train\n")
    with pytest.raises(ValueError) as err:
        read_split(path)
    assert str(path) in str(err.value) and "'test'" in str(err.value) and "''" in str(err.value)


# --- split_or_reuse ---------------------------------------------------------------------


def test_split_or_reuse_makes_and_writes(tmp_path):
    m = fake_manifest()
    path = tmp_path / "run" / "split.csv"
    split = split_or_reuse(m, path, seed=3)
    pd.testing.assert_frame_equal(split, make_split(m, seed=3))
    pd.testing.assert_frame_equal(read_split(path), split)
    assert os.listdir(path.parent) == ["split.csv"]


def test_split_or_reuse_reuses_the_stored_split(tmp_path):
    m = fake_manifest()
    path = tmp_path / "split.csv"
    stored = make_split(m, seed=1)
    write_split(stored, path)
    before = path.stat().st_mtime_ns
    # another seed and fraction: the stored split still wins, and the file is not rewritten
    split = split_or_reuse(m, path, val_fraction=0.5, seed=9)
    pd.testing.assert_frame_equal(split, stored)
    assert _val(split) != _val(make_split(m, val_fraction=0.5, seed=9))
    assert path.stat().st_mtime_ns == before


def test_split_or_reuse_refuses_a_split_of_other_data(tmp_path):
    path = tmp_path / "split.csv"
    write_split(make_split(fake_manifest()), path)
    other = fake_manifest((("S", 71), ("P", 49), ("A", 15)))  # one pair more (A15), none less
    with pytest.raises(ValueError) as err:
        split_or_reuse(other, path)
    message = str(err.value)
    assert str(path) in message and "A15" in message
    fewer = fake_manifest((("S", 70), ("P", 49), ("A", 14)))  # S71 gone
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*S71"):
        split_or_reuse(fewer, path)
    assert read_split(path)["name"].tolist() == fake_manifest()["name"].tolist()  # left as it was


def test_stored_split_only_for_the_same_pairs(tmp_path):
    path = tmp_path / "split.csv"
    assert stored_split(fake_manifest(), path) is None  # no file
    stored = make_split(fake_manifest(), seed=2)
    write_split(stored, path)
    pd.testing.assert_frame_equal(stored_split(fake_manifest(), path), stored)
    assert stored_split(fake_manifest((("S", 70), ("P", 49), ("A", 14))), path) is None  # other data
    path.write_text("name,split\nS01,train\n")
    with pytest.raises(ValueError, match=re.escape(str(path))):  # malformed: named, not ignored
        stored_split(fake_manifest(), path)
