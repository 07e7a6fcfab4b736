"""The ``fire_hybrid`` bundle: firereg's shipped default method (sift-quadratic + the shipped VoxelMorph).

Its ``models/model.pt`` ships and must hold the very tensors of
``firereg/pipelines/weights/default_voxelmorph.pt``; its metadata verifies offline; its
``inference.yaml`` runs through MONAI's bundle runner (a subprocess, one torch thread) on the
shared generated dataset and must register it as ``firereg register --method default`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from monai.bundle import ConfigParser, verify_metadata

from firereg.pipelines.bundles import (
    VoxelMorphPairNet,
    bundles_dir,
    load_weights,
    write_hybrid_bundle_weights,
)
from firereg.pipelines.checkpoints import load_checkpoint
from firereg.pipelines.method_specs import DEFAULT_WEIGHTS

BUNDLE = bundles_dir() / "fire_hybrid"
SCHEMA = bundles_dir() / "schema" / "meta_schema_20240725.json"
#: mean landmark error bound on the shared 256 px dataset's S pairs (px); identity: 3.7-5.6 px
MAX_S_ERROR_PX = 1.0

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_layout_metadata_and_network_def():
    for path in ("configs/inference.yaml", "configs/metadata.json", "configs/logging.conf", "docs/README.md",
                 "LICENSE", "models/model.pt", "models/README.md"):
        assert (BUNDLE / path).is_file(), path
    verify_metadata(meta_file=str(BUNDLE / "configs" / "metadata.json"), filepath=str(SCHEMA))  # offline
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [512, 512]
    for key in ("cross_domain_mAUC", "cross_domain_auc_S", "cross_domain_auc_P", "cross_domain_auc_A"):
        assert 0.0 <= meta["eval_metrics"][key] <= 1.0
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.yaml"))
    ckpt = load_checkpoint(DEFAULT_WEIGHTS)
    assert (parser["size"], parser["channel"], parser["model_type"]) == (ckpt["size"], ckpt["channel"], "voxelmorph")
    assert parser["features"] == ckpt["net_kwargs"]["features"]
    assert isinstance(parser.get_parsed_content("network_def"), VoxelMorphPairNet)


def test_model_pt_holds_the_shipped_weights(tmp_path):
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.yaml"))
    shipped = load_weights(parser.get_parsed_content("network_def"), BUNDLE / "models" / "model.pt").state_dict()
    reference = load_checkpoint(DEFAULT_WEIGHTS)["state_dict"]
    assert list(shipped) == list(reference)
    for key, value in reference.items():
        assert torch.equal(shipped[key], value), key
    # the documented command writes the same tensors (here into tmp_path, not into the bundle)
    written = torch.load(write_hybrid_bundle_weights(tmp_path / "model.pt"), weights_only=True)
    assert all(torch.equal(written[k], v) for k, v in reference.items())
    assert not (tmp_path / "model_config.json").exists()


@pytest.mark.slow
def test_inference_registers_a_folder_as_the_default_method(fire_data, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", FIREREG_HOME=str(tmp_path / "home"))
    root = tmp_path / "bundle"
    configs = BUNDLE / "configs"
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(configs / "inference.yaml"),
         "--meta_file", str(configs / "metadata.json"), "--bundle_root", str(root),
         "--ckpt_path", str(BUNDLE / "models" / "model.pt"), "--dataset_dir", str(fire_data),
         "--benchmark_size", "256", "--progress", "False"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    table = pd.read_csv(root / "inference" / "pairs.csv")
    assert sorted(table["pair"]) == ["A01", "P01", "P02", "S01", "S02"]
    for pair in table["pair"]:
        for name in ("warped.png", "field.npy", "transform.json", "points_mapped.csv"):
            assert (root / "inference" / pair / name).is_file(), (pair, name)
    record = json.loads((root / "inference" / "S01" / "transform.json").read_text())
    assert record["method"].startswith("hybrid:") and Path(record["method"].partition(":")[2]).name == "model_firereg.pt"
    s_errors = table[table["pair"].str.startswith("S")]["mean_error_moving"]
    assert np.all(s_errors < MAX_S_ERROR_PX), s_errors.tolist()
