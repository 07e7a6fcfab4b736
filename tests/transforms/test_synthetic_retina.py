"""Tests for firereg.transforms.synthetic_retina: distinct, deterministic, fundus-like procedural retinas."""

from __future__ import annotations

import numpy as np
import pytest

from firereg.transforms.synthetic_retina import (
    add_pathology,
    camera_fov_mask,
    draw_anatomy,
    render_synthetic_retina,
)


def test_one_seed_same_retina_two_seeds_different():
    a, mask_a = render_synthetic_retina(3, 256)
    b, mask_b = render_synthetic_retina(3, 256)
    c, _ = render_synthetic_retina(4, 256)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mask_a, mask_b)
    assert np.abs(a.astype(float) - c.astype(float)).mean() > 5


def test_photograph_layout_and_field_of_view():
    img, mask = render_synthetic_retina(0, 200)
    assert img.shape == (200, 200, 3) and img.dtype == np.uint8
    assert mask.shape == (200, 200) and mask.dtype == bool
    assert 0.55 < mask.mean() < 0.9  # a circle of radius ~0.47 size fills ~69 %, a cropped one more
    outside = img[~mask].max(axis=1)
    assert outside.mean() < 3 and np.percentile(outside, 99) < 30  # black, but for JPEG ringing at the rim
    assert img[mask].mean() > 40
    red, green, blue = (img[mask][:, i].mean() for i in range(3))
    assert red > green > blue  # fundus colour: red-orange


def test_anatomy_has_vessels_disc_and_macula():
    rng = np.random.default_rng(0)
    unit = 240.0
    anatomy = draw_anatomy(rng, (512, 512), unit)
    green = anatomy.rgb[..., 1]
    on_vessel = anatomy.vessels > 0.5
    assert 0.02 < on_vessel.mean() < 0.25  # a vascular tree, not a blot or nothing
    assert green[on_vessel].mean() < 0.8 * green[anatomy.vessels < 0.05].mean()  # vessels are dark
    assert len(anatomy.junctions) > 20 and len(anatomy.vessel_points) > 200
    # junctions and centre-line points lie on vessels
    for pts in (anatomy.junctions, anatomy.vessel_points):
        inside = np.all((pts >= 0) & (pts < 511), axis=1)
        q = np.rint(pts[inside]).astype(int)
        assert np.median(anatomy.vessels[q[:, 1], q[:, 0]]) > 0.5
    yy, xx = np.mgrid[0:512, 0:512]
    clear = anatomy.vessels < 0.1
    near_disc = (np.hypot(xx - anatomy.disc[0], yy - anatomy.disc[1]) < 0.08 * unit) & clear
    near_fovea = np.hypot(xx - anatomy.fovea[0], yy - anatomy.fovea[1]) < 0.04 * unit
    background = np.median(green[clear])
    assert green[near_disc].mean() > 1.3 * background  # bright disc
    assert green[near_fovea].mean() < background  # dark fovea
    distance = np.hypot(*np.subtract(anatomy.disc, anatomy.fovea))
    assert 0.6 * unit < distance < 0.9 * unit  # disc-fovea distance ~2.5 disc diameters


def test_fov_kinds():
    kinds = {camera_fov_mask(np.random.default_rng(seed), 128)[1] for seed in range(30)}
    assert kinds == {"circle", "notched", "cropped"}
    for seed in range(30):
        mask, kind = camera_fov_mask(np.random.default_rng(seed), 128)
        if kind == "cropped":
            assert mask[64].all() and not mask[0].any()  # wider than the frame, cut at top and bottom


def test_pathology_changes_the_retina_near_the_region():
    rng = np.random.default_rng(1)
    anatomy = draw_anatomy(rng, (256, 256), 120.0)
    region = np.array([[128.0, 128.0]])
    changed, record = add_pathology(rng, anatomy.rgb, anatomy.vessels, region, 120.0)
    assert changed.shape == anatomy.rgb.shape and changed.dtype == np.float32
    assert record["lesions"] and {"haze", "vessel_contrast_change"} <= set(record)
    assert np.abs(changed - anatomy.rgb).mean() > 0.005
    np.testing.assert_array_equal(anatomy.rgb, draw_anatomy(np.random.default_rng(1), (256, 256), 120.0).rgb)


def test_too_small_is_refused():
    with pytest.raises(ValueError, match="64"):
        render_synthetic_retina(0, 32)
