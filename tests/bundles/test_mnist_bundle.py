"""Tests of the MONAI bundle ``bundles/mnist_voxelmorph`` (digit atlas registration).

Run as a user does, through MONAI's bundle runner in a subprocess (one torch thread), on the
default data (scikit-learn's bundled digits) with a few training steps; outputs go to a
temporary ``--bundle_root`` / ``--output_dir``, nothing is written into ``bundles/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from firereg.pipelines.bundles import VoxelMorphPairNet, bundles_dir

BUNDLE = bundles_dir() / "mnist_voxelmorph"
SCHEMA = bundles_dir() / "schema" / "meta_schema_20240725.json"


def _run(args: list[str], cwd: Path, timeout: int = 120) -> str:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", FIREREG_HOME=str(cwd / "firereg-home"))
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{output[-6000:]}"
    return output


def test_layout():
    for name in ("configs/metadata.json", "configs/train.yaml", "configs/logging.conf",
                 "docs/README.md", "models/README.md", "LICENSE"):
        assert (BUNDLE / name).is_file(), name
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.yaml"))
    for key in ("digit", "steps", "output_dir", "mnist_dir", "similarity", "lam"):
        assert key in parser.config, key
    assert parser.config["mnist_dir"] is None


@pytest.mark.slow
def test_verify_metadata_offline(tmp_path):
    out = _run([sys.executable, "-m", "monai.bundle", "verify_metadata",
                "--meta_file", str(BUNDLE / "configs" / "metadata.json"), "--filepath", str(SCHEMA)], tmp_path)
    assert "metadata is verified with no error" in out


@pytest.mark.slow
def test_train_bundle(tmp_path):
    out_dir = tmp_path / "atlas"
    root = tmp_path / "root"
    _run([sys.executable, "-m", "monai.bundle", "run",
          "--config_file", str(BUNDLE / "configs" / "train.yaml"),
          "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
          "--bundle_root", str(root), "--steps", "15", "--digit", "2", "--similarity", "mse", "--lam", "0.1",
          "--output_dir", str(out_dir), "--progress", "False"], tmp_path)
    for name in ("summary.json", "model.pt", "atlas.png", "atlas_grid.png"):
        assert (out_dir / name).is_file(), name
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["digit"] == 2 and summary["steps"] == 15
    assert summary["similarity"] == "mse" and summary["lambda"] == pytest.approx(0.1)
    assert "NOT MNIST" in summary["data_source"]
    m = summary["metrics"]
    assert m["n_images"] > 0
    for key in ("ncc_before", "ncc_after", "dice_before", "dice_after"):
        assert -1.0 <= m[key] <= 1.0, key
    # the bundle's weights: a state dict that loads strictly into network_def
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    VoxelMorphPairNet(spatial_dims=2, in_channels=1, size=32).load_state_dict(state)
    assert json.loads((root / "models" / "model_config.json").read_text())["size"] == 32
