"""Tests for firereg.transforms.fire_generator: exact ground truth, FIRE categories, layout, safety,
and the procedural-retina option."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import firereg.transforms.fire_generator as gen
from firereg.transforms.fire_generator import (
    FOV_RADIUS_FRACTION,
    GeneratorConfig,
    PairMotion,
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


def _views(meta: dict, name: str) -> tuple[ViewTransform, PairMotion]:
    """The fixed view and the motion of pair ``name``."""
    rec = meta["pairs"][name]
    return _view(rec["fixed_view"]), PairMotion(**rec["motion"])


# --- ground truth agrees with the generator's own transforms -------------------------


def test_control_points_agree_with_view_and_motion(fire_data):
    meta = read_generator_metadata(fire_data)
    manifest = read_fire(fire_data)
    assert sorted(meta["pairs"]) == sorted(manifest["name"])
    for row in manifest.itertuples(index=False):
        fixed_view, motion = _views(meta, row.name)
        # the motion maps the fixed points onto the moving ones (files hold 3 decimals)
        np.testing.assert_allclose(motion.fixed_to_moving(row.fixed_points), row.moving_points, atol=2e-3)
        np.testing.assert_allclose(motion.moving_to_fixed(row.moving_points), row.fixed_points, atol=2e-3)
        # both images' points land on the same retina point of the source (source px)
        q_fixed = fixed_view.to_source(row.fixed_points)
        q_moving = fixed_view.to_source(motion.moving_to_fixed(row.moving_points))
        assert np.linalg.norm(q_fixed - q_moving, axis=1).max() < 0.01, row.name
        np.testing.assert_allclose(fixed_view.from_source(q_fixed), row.fixed_points, atol=1e-6)
        # and the two images are really different (the test would pass trivially otherwise;
        # FIRE's S pairs move as little as ~10 px at 2912 px, about 1 px here)
        assert np.linalg.norm(row.fixed_points - row.moving_points, axis=1).mean() > 0.2


def test_inverses_on_a_grid(fire_data):
    meta = read_generator_metadata(fire_data)
    view, motion = _views(meta, "P01")
    xs = np.linspace(10, 245, 12)
    pts = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2)
    np.testing.assert_allclose(view.from_source(view.to_source(pts)), pts, atol=1e-6)
    np.testing.assert_allclose(motion.moving_to_fixed(motion.fixed_to_moving(pts)), pts, atol=1e-8)


def test_rendered_images_follow_the_view_and_motion(fire_data):
    """image 1 [y, x] ~ source[to_source(x, y)]; image 2 [y, x] ~ source[to_source(moving_to_fixed(x, y))]."""
    meta = read_generator_metadata(fire_data)
    source = load_source(None)
    inside = fov_disk(256)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float64)
    grid = np.stack([xx, yy], axis=-1)
    for name in ("S01", "P01"):
        view, motion = _views(meta, name)
        for index, fixed in (("1", grid), ("2", motion.moving_to_fixed(grid))):
            img = np.asarray(Image.open(fire_data / "Images" / f"{name}_{index}.jpg"))[..., 1].astype(float)
            q = view.to_source(fixed).astype(np.float32)
            ref = cv2.remap(source.rgb[..., 1], q[..., 0], q[..., 1], cv2.INTER_LINEAR)
            corr = np.corrcoef(img[inside], ref[inside])[0, 1]
            corr_swapped = np.corrcoef(img[inside], ref.T[inside])[0, 1]
            assert corr > 0.7, (name, index, corr)
            assert corr > corr_swapped + 0.3, (name, index, corr, corr_swapped)


def test_overlap_matches_category(fire_data):
    meta = read_generator_metadata(fire_data)
    for name, rec in meta["pairs"].items():
        assert rec["category"] == name[0]
        _, motion = _views(meta, name)
        recomputed = pair_overlap(motion)
        assert recomputed == pytest.approx(rec["overlap"], abs=1e-9)
        if name.startswith("P"):
            assert rec["overlap"] < 0.75, name
        else:
            assert rec["overlap"] > 0.75, name
    # anatomical change is recorded for A pairs only
    assert meta["pairs"]["A01"]["changes"]["lesions"]
    assert "lesions" not in meta["pairs"]["S01"]["changes"]


def test_sampled_motions_keep_a_margin_around_75_percent():
    """Many draws of the motion sampler: P overlap in [0.2, 0.72], S and A at least 0.78."""
    rng = np.random.default_rng(0)
    for category in "PSA":
        overlaps = np.array([gen._sample_motion(rng, 64, category)[1] for _ in range(40)])
        if category == "P":
            assert overlaps.min() >= 0.2 and overlaps.max() <= 0.72, overlaps
            assert overlaps.min() < 0.4  # FIRE's P pairs overlap down to about 20 %
        else:
            assert overlaps.min() >= 0.78, overlaps
        assert overlaps.std() > 0.01  # the draws really vary


@pytest.mark.parametrize("d", [0.5, 1.0])
def test_pair_overlap_numbers(d):
    """A shift by d field-of-view radii leaves the lens of two unit disks."""
    size = 256
    radius = FOV_RADIUS_FRACTION * size
    shift = PairMotion(size, radius, [[1, 0, d], [0, 1, 0], [0, 0, 1]], [[0, 0, 0], [0, 0, 0]], [])
    same = PairMotion(size, radius, np.eye(3).tolist(), [[0, 0, 0], [0, 0, 0]], [])
    assert pair_overlap(same) == 1.0
    lens = (2 * np.arccos(d / 2) - (d / 2) * np.sqrt(4 - d * d)) / np.pi  # 0.685, 0.391
    assert pair_overlap(shift) == pytest.approx(lens, abs=0.02)


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


def test_parse_pairs_names_a_duplicate():
    with pytest.raises(ValueError, match="category S given twice"):
        parse_pairs("S:1,S:2")
    with pytest.raises(ValueError, match="category P given twice"):
        parse_pairs("p:1, P:1")


def test_all_black_source_is_named(tmp_path):
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(black)
    with pytest.raises(ValueError, match=re.escape(str(black)) + ".*blank"):
        load_source(str(black))


def test_dataset_has_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        out = make_fire_dataset(tmp_path / "perm", GeneratorConfig(**TINY), progress=False)
    finally:
        os.umask(old)
    for folder in (out, out / "Images", out / "Ground Truth", out / "Masks"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder


@pytest.mark.parametrize("damage", ["missing_image", "truncated_image", "bad_points", "missing_mask"])
def test_damaged_dataset_with_same_settings(tmp_path, damage):
    config = GeneratorConfig(**TINY, seed=3)
    out = make_fire_dataset(tmp_path / "dmg", config, progress=False)
    good = _control_point_bytes(out)
    image = out / "Images" / "P01_2.jpg"
    bad = {"missing_image": image, "truncated_image": image, "missing_mask": out / "Masks" / "mask.png",
           "bad_points": out / "Ground Truth" / "control_points_S01_1_2.txt"}[damage]
    if damage.startswith("missing"):
        bad.unlink()
    elif damage == "truncated_image":
        bad.write_bytes(image.read_bytes()[:-200])
    else:
        bad.write_text("1 2 3\n")
    # without overwrite: an error naming the damaged file
    with pytest.raises(FileExistsError, match=re.escape(str(bad))):
        make_fire_dataset(out, config, progress=False)
    # with overwrite: generated again, identical to the original
    make_fire_dataset(out, config, overwrite=True, progress=False)
    assert _control_point_bytes(out) == good
    assert bad.is_file() and gen._damaged_file(out, config) is None


def test_retina_setting_is_checked(tmp_path):
    with pytest.raises(ValueError, match="retina must be one of photograph, procedural"):
        make_fire_dataset(tmp_path / "x", GeneratorConfig(**TINY, retina="cartoon"), progress=False)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(photo)
    with pytest.raises(ValueError, match="retina='photograph'"):
        make_fire_dataset(tmp_path / "x", GeneratorConfig(**TINY, source=str(photo), retina="procedural"), progress=False)
    assert not (tmp_path / "x").exists()


def test_procedural_dataset(tmp_path):
    """Every pair its own synthetic retina; ground truth exact on it; images follow view and motion."""
    out = make_fire_dataset(tmp_path / "proc", GeneratorConfig(size=128, pairs={"S": 2, "P": 1}, n_points=5,
                                                               retina="procedural"), progress=False)
    meta = read_generator_metadata(out)
    assert meta["config"]["retina"] == "procedural" and meta["source"].startswith("procedural")
    seeds = {rec["retina_seed"] for rec in meta["pairs"].values()}
    assert len(seeds) == 3  # a different eye per pair
    fixed = {n: np.asarray(Image.open(out / "Images" / f"{n}_1.jpg"), float) for n in ("S01", "S02")}
    assert np.abs(fixed["S01"] - fixed["S02"]).mean() > 10
    for row in read_fire(out).itertuples(index=False):
        view, motion = _views(meta, row.name)
        np.testing.assert_allclose(motion.fixed_to_moving(row.fixed_points), row.moving_points, atol=2e-3)
        source = gen.procedural_source(meta["pairs"][row.name]["retina_seed"],
                                       int(np.ceil(gen.PROCEDURAL_CANVAS * 128)), FOV_RADIUS_FRACTION * 128)
        q = np.rint(view.to_source(row.fixed_points)).astype(int)
        assert (source.vessels[q[:, 1], q[:, 0]] > 0.3).all(), row.name  # control points on vessels


@pytest.mark.slow
def test_generated_motions_have_fires_statistics(tmp_path):
    """48 pairs at 256 px, statistics scaled to 2912 px (FIRE: S median 29, P median 789 / max 1797,
    P homography residual 9.85)."""
    from firereg.transforms.motion_stats import motion_statistics

    config = GeneratorConfig(size=256, pairs={"S": 20, "P": 20, "A": 8}, seed=0)
    table = motion_statistics(read_fire(make_fire_dataset(tmp_path / "big", config, progress=False))).set_index("category")
    assert 15 < table.loc["S", "displacement_median"] < 60, table
    assert 500 < table.loc["P", "displacement_median"] < 1100, table
    assert table.loc["P", "displacement_max"] > 1400, table
    assert table.loc["P", "homography_residual"] > 5, table
    assert table.loc["P", "quadratic_residual"] < 0.4 * table.loc["P", "homography_residual"], table
    assert 20 < table.loc["A", "displacement_median"] < 90, table
