"""Tests for firereg.transforms.fire_generator: exact ground truth, FIRE categories, layout, safety."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import firereg.transforms.fire_generator as gen
from firereg.transforms.fire_generator import (
    FOV_RADIUS_FRACTION,
    GeneratorConfig,
    ViewTransform,
    fov_disk,
    load_source,
    make_fire_dataset,
    pair_overlap,
    parse_pairs,
    read_generator_metadata,
)
from firereg.transforms.fire_reader import read_fire

TINY = dict(size=128, pairs={"S": 1, "P": 1}, n_points=5)


def _view(record: dict) -> ViewTransform:
    """The view a ``generator.json`` record describes (the record is ``asdict`` of the view)."""
    return ViewTransform(**record)


def _views(meta: dict, name: str):
    rec = meta["pairs"][name]
    return _view(rec["fixed_view"]), _view(rec["moving_view"])


# --- ground truth agrees with the generator's own transforms -------------------------


def test_control_points_agree_with_view_transforms(fire_data):
    meta = read_generator_metadata(fire_data)
    manifest = read_fire(fire_data)
    assert sorted(meta["pairs"]) == sorted(manifest["name"])
    for row in manifest.itertuples(index=False):
        fixed_view, moving_view = _views(meta, row.name)
        q_fixed = fixed_view.to_source(row.fixed_points)
        q_moving = moving_view.to_source(row.moving_points)
        # both images' points land on the same retina point of the source (source px)
        assert np.linalg.norm(q_fixed - q_moving, axis=1).max() < 0.5, row.name
        # from_source inverts to_source
        np.testing.assert_allclose(fixed_view.from_source(q_fixed), row.fixed_points, atol=1e-6)
        np.testing.assert_allclose(moving_view.from_source(q_moving), row.moving_points, atol=1e-6)
        # and the two views are really different (the test would pass trivially otherwise)
        assert np.linalg.norm(row.fixed_points - row.moving_points, axis=1).mean() > 2.0


def test_from_source_inverts_to_source_on_a_grid(fire_data):
    meta = read_generator_metadata(fire_data)
    view, _ = _views(meta, "P01")
    xs = np.linspace(10, 245, 12)
    pts = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2)
    np.testing.assert_allclose(view.from_source(view.to_source(pts)), pts, atol=1e-6)


def test_rendered_images_follow_the_view_transforms(fire_data):
    """Each image is the source sampled through its view: image[y, x] ~ source[to_source(x, y)]."""
    meta = read_generator_metadata(fire_data)
    source = load_source(None)
    inside = fov_disk(256)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float64)
    for name in ("S01", "P01"):
        for view, index in zip(_views(meta, name), ("1", "2")):
            img = np.asarray(Image.open(fire_data / "Images" / f"{name}_{index}.jpg"))[..., 1].astype(float)
            q = view.to_source(np.stack([xx, yy], axis=-1)).astype(np.float32)
            ref = cv2.remap(source.rgb[..., 1], q[..., 0], q[..., 1], cv2.INTER_LINEAR)
            corr = np.corrcoef(img[inside], ref[inside])[0, 1]
            corr_swapped = np.corrcoef(img[inside], ref.T[inside])[0, 1]
            assert corr > 0.7, (name, index, corr)
            assert corr > corr_swapped + 0.3, (name, index, corr, corr_swapped)


def test_overlap_matches_category(fire_data):
    meta = read_generator_metadata(fire_data)
    for name, rec in meta["pairs"].items():
        assert rec["category"] == name[0]
        fixed_view, moving_view = _views(meta, name)
        recomputed = pair_overlap(fixed_view, moving_view)
        assert recomputed == pytest.approx(rec["overlap"], abs=1e-9)
        if name.startswith("P"):
            assert rec["overlap"] < 0.75, name
        else:
            assert rec["overlap"] > 0.75, name
    # anatomical change is recorded for A pairs only
    assert meta["pairs"]["A01"]["changes"]["lesions"]
    assert "lesions" not in meta["pairs"]["S01"]["changes"]


def test_sampled_views_keep_a_margin_around_75_percent():
    """Many draws of the view sampler: P overlap in [0.45, 0.72], S and A at least 0.78."""
    source = load_source(None)
    rng = np.random.default_rng(0)
    for category in "PSA":
        overlaps = np.array([gen._sample_views(rng, source, 64, category)[2] for _ in range(40)])
        if category == "P":
            assert overlaps.min() >= 0.45 and overlaps.max() <= 0.72, overlaps
        else:
            assert overlaps.min() >= 0.78, overlaps
        assert overlaps.std() > 0.02  # the draws really vary


def test_pair_overlap_numbers(fire_data):
    """Shifting a view by d field-of-view radii leaves the lens of two unit disks (distortion is small)."""
    meta = read_generator_metadata(fire_data)
    for name in meta["pairs"]:
        view, _ = _views(meta, name)
        assert pair_overlap(view, view) == 1.0
        for d in (0.5, 1.0):
            shifted = _view({**meta["pairs"][name]["fixed_view"],
                                      "centre": [view.centre[0] + d * view.radius, view.centre[1]]})
            lens = (2 * np.arccos(d / 2) - (d / 2) * np.sqrt(4 - d * d)) / np.pi  # 0.685, 0.391
            assert pair_overlap(view, shifted) == pytest.approx(lens, abs=0.06), (name, d)


def test_control_points_sit_on_vessels(fire_data):
    meta = read_generator_metadata(fire_data)
    source = load_source(None)
    vessels = source.vessels
    inside = vessels > 0
    median = float(np.median(vessels[inside]))
    high = float(np.percentile(vessels[inside], 90))
    for row in read_fire(fire_data).itertuples(index=False):
        fixed_view, _ = _views(meta, row.name)
        q = np.rint(fixed_view.to_source(row.fixed_points)).astype(int)
        values = vessels[q[:, 1], q[:, 0]]  # row-major source array: [y, x]
        assert values.min() > 3 * median, (row.name, values, median)
        assert values.min() > high, (row.name, values, high)


def test_points_inside_both_fields_of_view(fire_data):
    for row in read_fire(fire_data).itertuples(index=False):
        for pts in (row.fixed_points, row.moving_points):
            r = np.linalg.norm(pts - 127.5, axis=1)
            assert r.max() <= FOV_RADIUS_FRACTION * 256


# --- layout ----------------------------------------------------------------------------


def test_layout_is_fires(fire_data):
    names = ["S01", "S02", "P01", "P02", "A01"]
    assert sorted(p.name for p in (fire_data / "Images").iterdir()) == sorted(
        f"{n}_{i}.jpg" for n in names for i in (1, 2)
    )
    assert sorted(p.name for p in (fire_data / "Ground Truth").iterdir()) == sorted(
        f"control_points_{n}_1_2.txt" for n in names
    )
    with Image.open(fire_data / "Images" / "S01_1.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (256, 256)
    with Image.open(fire_data / "Masks" / "mask.png") as im:
        assert im.size == (256, 256)
        mask = np.asarray(im) > 0
    np.testing.assert_array_equal(mask, fov_disk(256))
    lines = (fire_data / "Ground Truth" / "control_points_S01_1_2.txt").read_text().splitlines()
    assert len(lines) == 10 and all(len(line.split()) == 4 for line in lines)
    meta = json.loads((fire_data / "generator.json").read_text())
    assert meta["config"]["size"] == 256 and meta["config"]["seed"] == 1
    assert meta["source"] == "skimage.data.retina()"


# --- determinism, reuse, overwrite, atomicity -----------------------------------------------


def _control_point_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "Ground Truth").iterdir())}


def test_same_seed_same_files_other_seed_different(tmp_path):
    a = make_fire_dataset(tmp_path / "a", GeneratorConfig(**TINY, seed=4), progress=False)
    b = make_fire_dataset(tmp_path / "b", GeneratorConfig(**TINY, seed=4), progress=False)
    c = make_fire_dataset(tmp_path / "c", GeneratorConfig(**TINY, seed=5), progress=False)
    assert _control_point_bytes(a) == _control_point_bytes(b)
    assert (a / "Images" / "P01_2.jpg").read_bytes() == (b / "Images" / "P01_2.jpg").read_bytes()
    pa, pc = _control_point_bytes(a), _control_point_bytes(c)
    assert pa.keys() == pc.keys()
    assert all(pa[k] != pc[k] for k in pa)


def test_same_config_reuses(fire_data, monkeypatch):
    recorded = {k: v for k, v in read_generator_metadata(fire_data)["config"].items() if k != "version"}
    before = {p: p.stat().st_mtime_ns for p in fire_data.rglob("*")}

    def boom(*args, **kwargs):
        raise AssertionError("generate_pair must not run when the dataset is reused")

    monkeypatch.setattr(gen, "generate_pair", boom)
    assert make_fire_dataset(fire_data, GeneratorConfig(**recorded), progress=False) == fire_data
    assert {p: p.stat().st_mtime_ns for p in fire_data.rglob("*")} == before


def test_different_config_needs_overwrite(tmp_path):
    out = make_fire_dataset(tmp_path / "d", GeneratorConfig(**TINY, seed=1), progress=False)
    old = _control_point_bytes(out)
    with pytest.raises(FileExistsError, match=re.escape(str(out))):
        make_fire_dataset(out, GeneratorConfig(**TINY, seed=2), progress=False)
    assert _control_point_bytes(out) == old  # untouched
    make_fire_dataset(out, GeneratorConfig(**TINY, seed=2), overwrite=True, progress=False)
    assert _control_point_bytes(out) != old
    assert read_generator_metadata(out)["config"]["seed"] == 2
    assert not list(tmp_path.glob(".*partial*"))


def test_foreign_non_empty_folder_needs_overwrite(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        make_fire_dataset(out, GeneratorConfig(**TINY), progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    # an empty folder is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    make_fire_dataset(empty, GeneratorConfig(**TINY), progress=False)
    assert (empty / "Images" / "S01_1.jpg").is_file()


def _fail_on_second_pair(monkeypatch):
    real = gen.generate_pair
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise RuntimeError("simulated failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(gen, "generate_pair", flaky)
    return calls


def test_no_half_written_output(tmp_path, monkeypatch):
    calls = _fail_on_second_pair(monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated"):
        make_fire_dataset(out, GeneratorConfig(**TINY), progress=False)
    assert len(calls) == 2
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no .partial folder left


def test_failed_overwrite_keeps_old_dataset(tmp_path, monkeypatch):
    out = make_fire_dataset(tmp_path / "out", GeneratorConfig(**TINY, seed=1), progress=False)
    old = _control_point_bytes(out)
    _fail_on_second_pair(monkeypatch)
    with pytest.raises(RuntimeError, match="simulated"):
        make_fire_dataset(out, GeneratorConfig(**TINY, seed=2), overwrite=True, progress=False)
    assert _control_point_bytes(out) == old
    assert read_generator_metadata(out)["config"]["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# --- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("S:12,P:8,A:4", {"S": 12, "P": 8, "A": 4}),
        (" s:1 , p:0 ,", {"S": 1, "P": 0}),
        ("A:3", {"A": 3}),
    ],
)
def test_parse_pairs_good(text, expected):
    assert parse_pairs(text) == expected


@pytest.mark.parametrize("text, item", [("Q:1", "Q:1"), ("S:1,P8", "P8"), ("S:x", "S:x"), ("S:-1", "S:-1"), ("S:1.5", "S:1.5")])
def test_parse_pairs_bad_quotes_item(text, item):
    with pytest.raises(ValueError, match=re.escape(repr(item))):
        parse_pairs(text)


@pytest.mark.parametrize("text", ["", " , "])
def test_parse_pairs_empty(text):
    with pytest.raises(ValueError, match="no pairs"):
        parse_pairs(text)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=32), "size"),
        (dict(pairs={"X": 1}), "X"),
        (dict(pairs={"S": 0}), "pairs"),
        (dict(pairs={"S": 100}), "pairs"),
        (dict(n_points=2), "n_points"),
    ],
)
def test_config_validation(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        make_fire_dataset(tmp_path / "x", GeneratorConfig(**kwargs), progress=False)
    assert not (tmp_path / "x").exists()


def test_missing_source_is_named(tmp_path):
    missing = tmp_path / "no-such-photo.jpg"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        make_fire_dataset(tmp_path / "x", GeneratorConfig(source=str(missing)), progress=False)
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_source(str(missing))
    assert not (tmp_path / "x").exists()


def test_bad_source_is_named(tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=re.escape(str(junk))):
        load_source(str(junk))
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((100, 120, 3), np.uint8)).save(small)
    with pytest.raises(ValueError, match="too small"):
        load_source(str(small))
