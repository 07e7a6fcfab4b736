"""Training's validation survives a damaged pair: that pair is a failed record with the reason,
the other pairs are scored, and the metrics come back (the epoch is not lost)."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from firereg.pipelines.nn.networks import build_network
from firereg.pipelines.training import validate_network
from firereg.transforms.fire_reader import read_fire

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_validation_with_a_truncated_image_fails_that_pair_only(fire_data, tmp_path):
    root = tmp_path / "fire"
    shutil.copytree(fire_data, root)
    damaged = root / "Images" / "P02_1.jpg"
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])  # header intact, image data cut
    manifest = read_fire(root)  # reads only the header: the damage shows when decoding
    torch.manual_seed(0)
    net = build_network("affine")
    metrics, pairs = validate_network(net, "affine", 64, "green", manifest, benchmark_size=64)
    pairs = pairs.set_index("pair")
    assert pairs.loc["P02", "status"] == "failed"
    assert "cannot read the pair" in pairs.loc["P02", "reason"] and "P02_1.jpg" in pairs.loc["P02", "reason"]
    assert math.isinf(pairs.loc["P02", "mean_error"])
    others = pairs.drop(index="P02")
    assert len(others) == 4 and not others["reason"].str.contains("cannot read").any()
    assert set(metrics) >= {"mAUC", "auc_S", "auc_P", "auc_A", "mean_error", "median_error"}
    assert net.training  # the network's mode is restored
