"""Tests for firereg.transforms.generated_pairs: a generated item is the dictionary a folder holding its pair
gives (same keys, layouts, points), seeded items repeat exactly, categories and retinas follow their shares."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImaged
from PIL import Image

from firereg.pipelines.training.sampling import SeededItems
from firereg.transforms.datasets import fire_dataset
from firereg.transforms.fire_generator import (
    GeneratorConfig,
    generate_pair,
    make_fire_dataset,
)
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.generated_pairs import (
    FIRE_SHARES,
    DrawPair,
    GeneratedPairs,
    loaded_image,
    pair_item,
    render_size_for,
)
from firereg.transforms.pair_transforms import PairTransformConfig, pair_transforms

#: the pairs are rendered at 128 px (the render size of working size 64) and written at that size
RENDER, SIZE, SEED = 128, 64, 3


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A procedural FIRE folder of S01, P01, A01 at the render size (what generate_pair makes at that size)."""
    config = GeneratorConfig(size=RENDER, pairs={"S": 1, "P": 1, "A": 1}, seed=SEED, retina="procedural")
    return make_fire_dataset(tmp_path_factory.mktemp("gen") / "fire", config, progress=False)


def test_loaded_image_is_what_loadimaged_gives_for_the_file(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)  # H != W: a swap cannot pass
    Image.fromarray(rgb).save(tmp_path / "x.png")  # lossless
    read = LoadImaged(keys="x", reader="PILReader", ensure_channel_first=True, image_only=True)(
        {"x": str(tmp_path / "x.png")})["x"]
    made = loaded_image(rgb, "x")
    assert isinstance(made, MetaTensor) and made.shape == read.shape == (3, 50, 30) and made.dtype == read.dtype
    assert torch.equal(made.as_tensor(), read.as_tensor())
    assert torch.equal(made.affine, read.affine)
    assert made[1, 7, 3] == rgb[3, 7, 1]  # (C, W, H): x = 7, y = 3


@pytest.mark.parametrize("augment", [False, True])
def test_a_generated_item_is_the_folder_item_of_its_pair(folder, augment):
    config = PairTransformConfig(size=SIZE, augment=augment, intensity=augment, self_pair_prob=0.5 * augment)
    manifest = read_fire(folder)
    dataset = fire_dataset(manifest, config, cache="none")
    pipeline = pair_transforms(config, load=False)
    assert render_size_for(SIZE) == RENDER
    for i, name in enumerate(manifest["name"]):
        dataset.transform.set_random_state(seed=11 + i)  # the same augmentation draws for both
        pipeline.set_random_state(seed=11 + i)
        read = dataset[i]
        made = pair_item(generate_pair(name, None, RENDER, SEED), pipeline)
        assert list(made) == list(read), name
        assert made["mask"] is None and made["name"] == name and made["category"] == name[0]
        for key, value in read.items():
            if isinstance(value, torch.Tensor):
                other = made[key]
                assert type(other) is type(value) and other.shape == value.shape and other.dtype == value.dtype, key
                assert torch.equal(other.affine, value.affine), key
        # the control-point file keeps 3 decimals of 128-px points; here they are at 64 px
        for key in ("fixed_points", "moving_points"):
            assert read[key].shape[1] == 10
            np.testing.assert_allclose(made[key].numpy(), read[key].numpy(), atol=1e-3, err_msg=f"{name} {key}")
        for key in ("fixed_mask", "moving_mask"):
            assert torch.equal(made[key].as_tensor(), read[key].as_tensor()), key
        for key in ("fixed", "moving"):  # the same content but for the JPEG of the folder (and the noise draws)
            diff = (made[key] - read[key]).abs()
            assert float(diff.mean()) < (0.03 if augment else 0.015), (name, key, float(diff.mean()))
        if augment:
            assert made["synthetic"] == read["synthetic"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(v.as_tensor() if isinstance(v, MetaTensor) else v, b[k].as_tensor() if isinstance(b[k], MetaTensor) else b[k])
        if isinstance(v, torch.Tensor) else v == b[k] for k, v in a.items())


def test_the_same_seed_gives_the_same_item_and_another_seed_another():
    pairs = GeneratedPairs(PairTransformConfig(size=SIZE, augment=True, intensity=True), length=4, seed=0)
    first = pairs.set_random_state(5)[2]
    again = pairs.set_random_state(5)[2]
    other = pairs.set_random_state(6)[2]
    assert _same(first, again)
    assert not torch.equal(first["fixed"], other["fixed"])
    assert not torch.equal(first["fixed_points"], other["fixed_points"])
    # through SeededItems: item i of an epoch repeats exactly, the next epoch holds another pair
    items = SeededItems(pairs, seed=7)
    a = items[1]
    items.epoch = 1
    b = items[1]
    items.epoch = 0
    assert _same(items[1], a) and not torch.equal(a["moving"], b["moving"])
    with pytest.raises(IndexError, match="out of range for 4 generated pairs"):
        pairs[4]


def test_categories_and_retinas_follow_their_shares():
    draw = DrawPair(PairTransformConfig(size=SIZE), retinas="mixed", photograph_share=0.3)
    draw.set_random_state(seed=1)
    specs = [draw.draw(i) for i in range(4000)]
    counts = Counter(s.category for s in specs)
    total = sum(FIRE_SHARES.values())
    for category, share in FIRE_SHARES.items():
        assert abs(counts[category] / len(specs) - share / total) < 0.025, counts
    assert abs(np.mean([s.photograph for s in specs]) - 0.3) < 0.025
    assert all(s.name[0] == s.category for s in specs) and len({s.pair_seed for s in specs}) > 3990
    only_a = DrawPair(PairTransformConfig(size=SIZE), retinas="photograph", shares={"A": 1})
    assert {(s.category, s.photograph) for s in (only_a.draw(i) for i in range(50))} == {("A", True)}


def test_a_photograph_item_has_its_points_inside_the_image():
    pairs = GeneratedPairs(PairTransformConfig(size=SIZE), length=2, seed=2, retinas="photograph", shares={"P": 1})
    item = pairs[0]
    assert item["category"] == "P" and item["fixed"].shape == (1, SIZE, SIZE)
    for key in ("fixed_points", "moving_points"):
        pts = item[key].numpy()[0]
        assert np.all((pts > 0) & (pts < SIZE - 1)), key
        mask = item[key.replace("points", "mask")].numpy()[0]  # (W, H): [x, y]
        assert mask[tuple(np.round(pts).astype(int).T)].all(), key  # control points lie in the field of view


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(retinas="fundus"), "retinas must be one of procedural, photograph, mixed, got 'fundus'"),
        (dict(photograph_share=1.5), r"photograph_share must be in \[0, 1\], got 1.5"),
        (dict(shares={"X": 1}), r"unknown categories \['X'\]"),
        (dict(shares={"S": 0}), "must be >= 0 and not all 0"),
        (dict(render_size=32), "render size must be at least 64 px, got 32"),
        (dict(length=0), "pairs per epoch must be at least 1, got 0"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GeneratedPairs(PairTransformConfig(size=SIZE), **kwargs)
