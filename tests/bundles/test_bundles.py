"""Tests of the MONAI bundles in ``bundles/`` (fire_voxelmorph, fire_affine, fire_cascade).

The end-to-end tests (marked slow) run each bundle as a user does, through MONAI's bundle
runner in a subprocess (``python -m monai.bundle run ...``), on the shared 5-pair generated
dataset (3 training / 2 validation pairs) at a tiny working size and one epoch: train →
evaluate → inference → ``ckpt_export`` to TorchScript, whose output must equal the eager
network's. One more runs ``multi_gpu_train.yaml`` with two gloo processes under
``torchrun --standalone``. Every subprocess uses one torch thread (the machine is shared).
Outputs go to a temporary ``--bundle_root``; nothing is written into ``bundles/``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, verify_metadata
from PIL import Image

from firereg.pipelines.bundles import (
    AffinePairNet,
    CascadePairNet,
    VoxelMorphPairNet,
    bundles_dir,
    find_pairs,
    load_weights,
    save_weights,
    select_pairs,
)
from firereg.pipelines.checkpoints import load_checkpoint
from firereg.pipelines.nn.networks import build_network
from firereg.pipelines.training import (
    EpochOrder,
    TrainConfig,
    resolve_device,
    train,
)

BUNDLES = bundles_dir()
SCHEMA = BUNDLES / "schema" / "meta_schema_20240725.json"
#: bundle -> tiny working size (the affine network halves the image six times: >= 65 px)
SIZES = {"fire_voxelmorph": 64, "fire_affine": 96, "fire_cascade": 96}
#: bundle -> steps of one epoch: 3 training pairs x the bundle's ``repeats`` (train.yaml)
EPOCH_STEPS = {"fire_voxelmorph": 3, "fire_affine": 24, "fire_cascade": 24}
CONFIGS = ("metadata.json", "train.yaml", "evaluate.yaml", "inference.yaml", "multi_gpu_train.yaml", "logging.conf")
PAIR_NETS = {"voxelmorph": VoxelMorphPairNet, "affine": AffinePairNet, "cascade": CascadePairNet}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", FIREREG_HOME=str(tmp_path / "firereg-home"))
    return env


def _run(args: list[str], tmp_path: Path, timeout: int = 300) -> str:
    """Run a command in ``tmp_path``; its stdout + stderr, or a failure quoting their end."""
    done = subprocess.run(args, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{output[-6000:]}"
    return output


def _bundle(name: str, config: str | list[str], *overrides: str, tmp_path: Path, root: Path) -> str:
    configs = [config] if isinstance(config, str) else config
    paths = [str(BUNDLES / name / "configs" / c) for c in configs]
    config_arg = paths[0] if len(paths) == 1 else "[" + ",".join(f"'{p}'" for p in paths) + "]"
    return _run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", config_arg,
         "--meta_file", str(BUNDLES / name / "configs" / "metadata.json"),
         "--bundle_root", str(root), "--progress", "False", *overrides],
        tmp_path,
    )


# ----------------------------------------------------------------------------- layout, metadata


@pytest.mark.parametrize("name", sorted(SIZES))
def test_bundle_layout_and_metadata_verify_offline(name):
    folder = BUNDLES / name
    for config in CONFIGS:
        assert (folder / "configs" / config).is_file(), config
    for path in ("docs/README.md", "LICENSE"):
        assert (folder / path).is_file(), path
    assert (folder / "models").is_dir()
    # the schema is read from the repository: nothing is downloaded
    verify_metadata(meta_file=str(folder / "configs" / "metadata.json"), filepath=str(SCHEMA))
    meta = json.loads((folder / "configs" / "metadata.json").read_text())
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 2 and image["channel_def"] == {"0": "moving image", "1": "fixed image"}
    assert set(meta["network_data_format"]["outputs"]) == {"warped", "ddf"}
    for key in ("val_mAUC", "val_auc_S", "val_auc_P", "val_auc_A"):
        assert 0.0 <= meta["eval_metrics"][key] <= 1.0
    readme = (folder / "docs" / "README.md").read_text()
    for command in ("configs/train.yaml", "configs/evaluate.yaml", "configs/inference.yaml",
                    "configs/multi_gpu_train.yaml", "ckpt_export", "verify_metadata"):
        assert command in readme, command


@pytest.mark.parametrize("name", sorted(SIZES))
def test_network_def_is_the_firereg_network(name):
    """network_def of every config builds the network firereg trains, with its state-dict keys."""
    model = name.removeprefix("fire_")
    reference = build_network(model)
    for config in ("train.yaml", "evaluate.yaml", "inference.yaml"):
        parser = ConfigParser()
        parser.read_config(str(BUNDLES / name / "configs" / config))
        assert parser["model_type"] == model
        net = parser.get_parsed_content("network_def")
        assert isinstance(net, type(reference)) and isinstance(net, PAIR_NETS[model])
        assert list(net.state_dict()) == list(reference.state_dict())
        assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == {
            k: tuple(v.shape) for k, v in reference.state_dict().items()
        }


#: every bundle, and the offline metadata check each README shows, exactly as it runs from the bundle folder
ALL_BUNDLES = (*sorted(SIZES), "mnist_voxelmorph")
VERIFY_COMMAND = ("python -m monai.bundle verify_metadata --meta_file configs/metadata.json "
                  "--filepath ../schema/meta_schema_20240725.json")
TRAIN_COMMAND = "python -m monai.bundle run --config_file configs/train.yaml"


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 4)
    return text[start:end if end >= 0 else None]


@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_readme_says_train_first_and_which_weights_ship(name):
    readme = (BUNDLES / name / "docs" / "README.md").read_text()
    notice = readme[readme.index("> **Train first.**"):readme.index("\n## ")]
    assert f"> {TRAIN_COMMAND}\n" in notice and "models/model.pt" in notice
    shipped = _section(readme, "Shipped weights")
    if (BUNDLES / name / "models" / "model.pt").is_file():  # shipped weights: their metrics and command
        assert "None yet" not in shipped and "python -m monai.bundle" in shipped
    else:
        assert f"None yet — train with `{TRAIN_COMMAND}`" in shipped
        assert "No weights are shipped yet" in notice
    assert f"```bash\n{VERIFY_COMMAND}\n```" in readme and "KeyError: 'filepath'" in readme


@pytest.mark.parametrize("name", sorted(SIZES))
def test_train_yaml_passes_the_step_budget(name):
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / name / "configs" / "train.yaml"))
    assert parser["budget_steps"] is None
    parser["budget_steps"] = 7
    assert parser.get_parsed_content("train_config").budget_steps == 7


@pytest.mark.slow
def test_readme_verify_metadata_command_runs_offline_as_written(tmp_path):
    """The READMEs' command (the same in every bundle, test_readme_says_train_first_and_which_weights_ship;
    the other bundles' metadata are verified in-process with the same schema) run in a bundle folder:
    the schema comes from bundles/schema/, nothing is downloaded. Without ``--filepath`` MONAI stops
    with ``KeyError: 'filepath'``, as the READMEs say."""
    env = _env(tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    runs = {name: subprocess.Popen(VERIFY_COMMAND, shell=True, cwd=BUNDLES / name, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for name in ("fire_cascade",)}
    bare = subprocess.Popen(VERIFY_COMMAND.split(" --filepath")[0], shell=True, cwd=BUNDLES / "fire_cascade", env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for name, process in runs.items():
        output = process.communicate(timeout=300)[0]
        assert process.returncode == 0 and "metadata is verified with no error" in output, (name, output[-3000:])
    output = bare.communicate(timeout=300)[0]
    assert bare.returncode != 0 and "KeyError: 'filepath'" in output, output[-3000:]


# ----------------------------------------------------------------------------- pieces


@pytest.mark.parametrize("model", sorted(PAIR_NETS))
def test_stacked_pair_input_matches_two_inputs(model):
    torch.manual_seed(0)
    net = PAIR_NETS[model](size=96)
    net.load_state_dict(build_network(model).state_dict())  # the same keys as the plain network
    net.eval()
    moving, fixed = torch.rand(1, 1, 96, 96), torch.rand(1, 1, 96, 96)
    with torch.no_grad():
        a = net(moving, fixed)
        b = net(torch.cat([moving, fixed], dim=1))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    with pytest.raises(ValueError, match=r"\(B, 2, W, H\).*\(1, 3, 96, 96\)"):
        net(torch.rand(1, 3, 96, 96))


def test_epoch_order_shards_like_distributed_sampler():
    full = EpochOrder(7, seed=3, epoch=2).order()
    shards = [EpochOrder(7, seed=3, epoch=2, rank=r, world_size=3).shard() for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]  # padded to 9 with the order's own first items
    assert sorted(sum(shards, [])) == sorted(full + full[:2])
    assert shards[0] == [full[0], full[3], full[6]] and shards[1] == [full[1], full[4], full[0]]
    skipped = EpochOrder(7, seed=3, epoch=2, skip=2, rank=1, world_size=3)
    assert list(skipped) == shards[1][2:] and len(skipped) == 1
    # one process: the order itself (what resume relies on)
    assert list(EpochOrder(7, seed=3, epoch=2)) == full
    with pytest.raises(ValueError, match="rank"):
        EpochOrder(7, seed=3, epoch=2, rank=3, world_size=3)


def test_resolve_device_defaults_to_cpu_outside_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_find_pairs_in_a_plain_folder(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    for name in ("a_1.png", "a_2.png", "b_1.jpg", "b_2.jpg", "c_1.png", "notes.txt"):
        if name.endswith(".txt"):
            (tmp_path / name).write_text("x")
        else:
            Image.fromarray(image).save(tmp_path / name)
    pairs = find_pairs(tmp_path)
    assert [p["name"] for p in pairs] == ["a", "b"]  # c has no partner
    assert pairs[0]["fixed"].endswith("a_1.png") and pairs[0]["moving"].endswith("a_2.png")
    assert pairs[0]["points"] is None
    with pytest.raises(FileNotFoundError, match="not found"):
        find_pairs(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image pairs"):
        find_pairs(tmp_path / "empty")


def test_weights_round_trip_and_refuse_another_size(fire_data, tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(model="voxelmorph", size=64, kernel_size=5, epochs=1), fire_data, run,
          progress=False, num_threads=1)
    path = save_weights(VoxelMorphPairNet(size=64), run, tmp_path / "models" / "model.pt", model_type="voxelmorph")
    record = json.loads((tmp_path / "models" / "model_config.json").read_text())
    assert record["size"] == 64 and record["model_type"] == "voxelmorph" and record["source"].endswith("best.pt")
    net = load_weights(VoxelMorphPairNet(size=64), path, size=64, channel="green", model_type="voxelmorph")
    best = load_checkpoint(run / "best.pt", "voxelmorph")["state_dict"]
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, best[key])
    with pytest.raises(ValueError, match=r"size = 64.*--size 64"):
        load_weights(VoxelMorphPairNet(size=128), path, size=128)
    # evaluation pairs: the run's own validation split
    pairs = select_pairs(fire_data, "validation", split_file=run / "split.csv")
    with open(run / "split.csv", newline="") as handle:
        expected = sorted(r["name"] for r in csv.DictReader(handle) if r["split"] == "validation")
    assert sorted(pairs["name"]) == expected and pairs.attrs["split_source"] == str(run / "split.csv")
    assert len(select_pairs(fire_data, "all")) == 5


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SIZES))
def test_bundle_train_evaluate_infer_export(name, fire_data, tmp_path):
    size = str(SIZES[name])
    root = tmp_path / "bundle"
    common = ["--dataset_dir", str(fire_data), "--size", size]

    out = _bundle(name, "train.yaml", *common, "--epochs", "1", "--kernel_size", "5", "--num_threads", "1",
                  tmp_path=tmp_path, root=root)
    assert f"training finished on rank 0 of 1: 1 epochs, {EPOCH_STEPS[name]} steps (done)" in out
    run = root / "runs" / "train"
    for path in ("best.pt", "last.pt", "log.csv", "split.csv"):
        assert (run / path).is_file(), path
    assert (root / "models" / "model.pt").is_file() and (root / "models" / "model_config.json").is_file()

    _bundle(name, "evaluate.yaml", *common, tmp_path=tmp_path, root=root)
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert isinstance(metrics["mAUC"], float) and 0.0 <= metrics["mAUC"] <= 1.0
    assert metrics["subset"] == "validation" and metrics["pairs"] == 2
    for key in ("auc_S", "auc_P", "auc_A", "mean_error"):
        assert key in metrics
    # the same code path as training's validation: the same score
    with open(run / "log.csv", newline="") as handle:
        logged = float(list(csv.DictReader(handle))[-1]["val_mAUC"])
    assert metrics["mAUC"] == pytest.approx(logged, abs=1e-9)
    for path in ("pairs.csv", "summary.csv", "summary.md", "success_rate.png"):
        assert (root / "eval" / path).is_file(), path

    _bundle(name, "inference.yaml", *common, tmp_path=tmp_path, root=root)
    for pair in ("A01", "P01", "P02", "S01", "S02"):
        for path in ("warped.png", "field.nii.gz", "field.npy", "points_mapped.csv"):
            assert (root / "inference" / pair / path).is_file(), (pair, path)
    fixed = np.asarray(Image.open(fire_data / "Images" / "S01_1.jpg"))
    assert np.load(root / "inference" / "S01" / "field.npy").shape == (2, *fixed.shape[:2])

    # TorchScript export, the model-zoo command (torch.jit.script: the network traces itself)
    models = root / "models"
    _run([sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def",
          "--filepath", str(models / "model.ts"), "--ckpt_file", str(models / "model.pt"),
          "--meta_file", str(BUNDLES / name / "configs" / "metadata.json"),
          "--config_file", str(BUNDLES / name / "configs" / "inference.yaml"), "--size", size], tmp_path)
    extra = {"metadata.json": "", "inference.json": ""}
    scripted = torch.jit.load(str(models / "model.ts"), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["network_data_format"]["inputs"]["image"]["num_channels"] == 2
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / name / "configs" / "inference.yaml"))
    parser["size"] = int(size)
    eager = load_weights(parser.get_parsed_content("network_def"), models / "model.pt")
    torch.manual_seed(1)
    pair = torch.rand(1, 2, int(size), int(size))
    with torch.no_grad():
        want, got = eager(pair), scripted(pair)
    assert len(got) == 2
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_multi_gpu_train_runs_two_gloo_processes(fire_data, tmp_path):
    name = "fire_voxelmorph"
    root = tmp_path / "bundle"
    configs = [str(BUNDLES / name / "configs" / c) for c in ("train.yaml", "multi_gpu_train.yaml")]
    out = _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "monai.bundle", "run", "--config_file", "[" + ",".join(f"'{c}'" for c in configs) + "]",
         "--meta_file", str(BUNDLES / name / "configs" / "metadata.json"),
         "--bundle_root", str(root), "--dataset_dir", str(fire_data), "--epochs", "1", "--size", "64",
         "--kernel_size", "5", "--num_threads", "1", "--progress", "False"],
        tmp_path,
    )
    # 3 training pairs on 2 ranks: 2 items per rank (one repeated), 2 steps
    for rank in (0, 1):
        assert re.search(rf"rank {rank} of 2 joined the gloo process group", out), out[-3000:]
        assert f"training finished on rank {rank} of 2: 1 epochs, 2 steps (done)" in out, out[-3000:]
    run = root / "runs" / "train"
    for path in ("best.pt", "last.pt", "log.csv", "train_steps.csv"):
        assert (run / path).is_file(), path
    last = load_checkpoint(run / "last.pt")
    assert (last["epoch"], last["global_step"], last["world_size"]) == (1, 2, 2)
    with open(run / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and 0.0 <= float(rows[0]["val_mAUC"]) <= 1.0  # rank 0 alone logs and validates
    assert (root / "models" / "model.pt").is_file()
