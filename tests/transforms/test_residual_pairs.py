"""Residual pairs: generated pairs pre-aligned by a noisy quadratic, as the hybrid's keypoint stage leaves them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from firereg.pipelines.training.config import TrainConfig
from firereg.transforms.fire_generator import (
    GeneratorConfig,
    generate_pair,
    make_fire_dataset,
)
from firereg.transforms.fire_reader import read_control_points, truth_path
from firereg.transforms.generated_pairs import GeneratedPairs
from firereg.transforms.pair_transforms import (
    FIXED_POINTS,
    MOVING_POINTS,
    PairTransformConfig,
)
from firereg.transforms.residual_pairs import PrealignConfig, prealign_pair


def _mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1).mean())


@pytest.mark.parametrize("name", ["S01", "P01", "A01"])
def test_prealigned_pair_leaves_only_the_residual(name: str) -> None:
    pair = generate_pair(name, None, 256, seed=3, n_points=20)
    aligned = prealign_pair(pair, np.random.default_rng(0), PrealignConfig(noise_px=1.0))
    raw = _mean_distance(pair.fixed_points, pair.moving_points)
    residual = _mean_distance(aligned.fixed_points, aligned.moving_points)
    # FIRE's residual after a quadratic is 0.7-3.4 px at 2912 px: well below 1.5 px at 256 px
    assert residual < 1.5, (name, raw, residual)
    if name != "A01":  # A pairs may barely move; S and P pairs move by several px
        assert raw > 3 * residual
    assert aligned.moving.shape == pair.moving.shape and aligned.moving.dtype == np.uint8
    assert aligned.changes["prealign"]["kind"] in ("quadratic", "homography")
    # the aligned image shows the fixed view: its green channel correlates with the fixed one inside both views
    g1, g2 = pair.fixed[..., 1].astype(float), aligned.moving[..., 1].astype(float)
    both = (g1 > 10) & (g2 > 10)
    assert np.corrcoef(g1[both], g2[both])[0, 1] > 0.4
    assert np.array_equal(aligned.fixed, pair.fixed)


def test_more_noise_leaves_more_residual() -> None:
    pair = generate_pair("S01", None, 256, seed=3, n_points=20)
    errors = [_mean_distance(*(lambda p: (p.fixed_points, p.moving_points))(
        prealign_pair(pair, np.random.default_rng(1), PrealignConfig(noise_px=noise)))) for noise in (0.0, 20.0)]
    assert errors[1] > errors[0] + 0.5


@pytest.mark.parametrize(
    "config, word",
    [(PrealignConfig(noise_px=-1.0), "noise_px"), (PrealignConfig(matches=5), "matches"),
     (PrealignConfig(overlap_margin=0.0), "overlap_margin")],
)
def test_bad_prealign_settings_are_named(config: PrealignConfig, word: str) -> None:
    pair = generate_pair("S01", None, 128, seed=3)
    with pytest.raises(ValueError, match=word):
        prealign_pair(pair, np.random.default_rng(0), config)


def test_a_tiny_overlap_is_a_runtime_error() -> None:
    pair = generate_pair("S01", None, 128, seed=3)
    with pytest.raises(RuntimeError, match="overlap points"):
        prealign_pair(pair, np.random.default_rng(0), PrealignConfig(matches=100000))


def test_prealigned_dataset_records_it_and_raw_datasets_keep_their_key(tmp_path) -> None:
    raw = make_fire_dataset(tmp_path / "raw", GeneratorConfig(size=128, pairs={"S": 1}, seed=2), progress=False)
    pre = make_fire_dataset(tmp_path / "pre", GeneratorConfig(size=128, pairs={"S": 1}, seed=2, prealign_px=0.5),
                            progress=False)
    raw_meta = json.loads((raw / "generator.json").read_text())
    pre_meta = json.loads((pre / "generator.json").read_text())
    assert "prealign_px" not in raw_meta["config"] and pre_meta["config"]["prealign_px"] == 0.5
    assert "prealign" in pre_meta["pairs"]["S01"]["changes"]
    raw_points, pre_points = read_control_points(truth_path(raw, "S01")), read_control_points(truth_path(pre, "S01"))
    assert np.allclose(raw_points[0], pre_points[0])  # the fixed points are the raw pair's
    assert _mean_distance(*pre_points) < _mean_distance(*raw_points)
    with pytest.raises(ValueError, match="noise_px"):
        GeneratorConfig(size=128, prealign_px=-2.0).validate()


def test_generated_training_items_can_be_prealigned() -> None:
    config = PairTransformConfig(size=128, augment=False)
    raw = GeneratedPairs(config, length=2, seed=4, shares={"P": 1}, n_points=16)[0]
    pre = GeneratedPairs(config, length=2, seed=4, shares={"P": 1}, n_points=16, prealign=PrealignConfig())[0]
    assert tuple(raw[FIXED_POINTS].shape) == tuple(pre[FIXED_POINTS].shape) == (1, 16, 2)
    assert _mean_distance(pre[FIXED_POINTS], pre[MOVING_POINTS]) < 1.0 < _mean_distance(raw[FIXED_POINTS], raw[MOVING_POINTS])


@pytest.mark.parametrize(
    "settings, field",
    [({"generated_prealign_px": -1.0}, "generated_prealign_px"), ({"generated_points": 2}, "generated_points"),
     ({"features": (8, 16)}, "features"), ({"model": "cascade", "features": (8,) * 6}, "features"),
     ({"point_weight": -1.0}, "point_weight"), ({"model": "affine", "point_weight": 1.0}, "point_weight")],
)
def test_bad_training_settings_are_named(settings: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{"model": "voxelmorph", **settings}).validate()


def test_training_settings_reach_the_network_and_the_pairs() -> None:
    config = TrainConfig(model="voxelmorph", features=[8, 16, 16, 16, 16, 8], generated_prealign_px=0.5)
    config.validate()
    assert config.net_kwargs() == {"features": [8, 16, 16, 16, 16, 8]}
    assert config.prealign_config() == PrealignConfig(noise_px=0.5)
    assert TrainConfig().prealign_config() is None
