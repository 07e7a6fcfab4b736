"""Training on pairs generated on the fly (``TrainConfig.train_pairs="generated"``, firereg.pipelines.training.loop):
it trains, validates on the data folder, stores its settings, and a run killed and resumed ends identical
to an uninterrupted one. Tiny settings: the cascade at 64 px, 3 generated pairs per epoch, 4 steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from firereg.pipelines.checkpoints import load_checkpoint
from firereg.pipelines.training import TrainConfig, run_config, train
from firereg.pipelines.training.loop import _training_data
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.generated_pairs import GeneratedPairs
from firereg.transforms.splits import read_split

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: 3 generated pairs per epoch → 3 steps per epoch; 4 steps cross one epoch end; half of them affine only
TINY = dict(model="cascade", size=64, kernel_size=5, epochs=100, affine_warmup=0.5, checkpoint_every=1,
            benchmark_size=128, train_pairs="generated", pairs_per_epoch=3, budget_steps=4)


def _same_tensors(a, b) -> bool:
    """Whether two (nested) state dicts hold the same keys and bit-identical tensors."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


class _Killed(Exception):
    pass


def _run(data: Path, out: Path, resume: bool = False, kill_at: int | None = None, losses: list | None = None) -> dict:
    def on_step(info: dict) -> None:
        if losses is not None:
            losses.append(info["loss"])
        if info["global_step"] == kill_at:  # after the step's checkpoint, as a kill -9 would find it
            raise _Killed

    return train(TrainConfig(**TINY), data, out, resume=resume, progress=False, num_threads=1, on_step=on_step)


def test_generated_training_resumes_exactly(fire_data, tmp_path):
    a, c = tmp_path / "a", tmp_path / "c"
    losses: list[float] = []
    first = _run(fire_data, a, losses=losses)
    assert (first["stopped"], first["steps"], first["epochs"]) == ("budget", 4, 1)
    assert len(set(losses)) == 4  # a new pair every step
    stored = run_config(a)
    assert (stored.train_pairs, stored.pairs_per_epoch, stored.generated_retinas) == ("generated", 3, "procedural")
    assert math.isfinite(load_checkpoint(a / "best.pt")["validation"]["mean_error"])  # validated on the data folder
    validation = read_split(a / "split.csv").query("split == 'validation'")["name"]
    assert 0 < len(validation) and set(validation) <= set(read_fire(fire_data)["name"])
    with pytest.raises(_Killed):
        _run(fire_data, c, kill_at=2)
    assert load_checkpoint(c / "last.pt")["global_step"] == 2
    resumed = _run(fire_data, c, resume=True)
    assert (resumed["stopped"], resumed["steps"]) == ("budget", 4)
    for name in ("last.pt", "best.pt"):
        ref, ckpt = load_checkpoint(a / name), load_checkpoint(c / name)
        assert _same_tensors(ref["state_dict"], ckpt["state_dict"]), name
        assert _same_tensors(ref["optimizer"], ckpt["optimizer"]), name
        assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (1, 1, 4)


def test_training_data_is_generated_only_in_generated_mode(tmp_path):
    import pandas as pd

    config = TrainConfig(size=64, train_pairs="generated", pairs_per_epoch=5, generated_retinas="mixed",
                         photograph_share=0.25)
    data = _training_data(config, pd.DataFrame(), tmp_path, progress=False)  # no training pairs needed
    assert isinstance(data, GeneratedPairs) and len(data) == 5
    assert (data.transform.retinas, data.transform.photograph_share, data.transform.render_size) == ("mixed", 0.25, 128)
    with pytest.raises(ValueError, match="no training pairs"):
        _training_data(TrainConfig(size=64), pd.DataFrame(), tmp_path, progress=False)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(train_pairs="disk"), r"TrainConfig\.train_pairs = 'disk' is invalid: choose one of \['folder', 'generated'\]"),
        (dict(train_pairs="generated", model="affine", patches="p"), r"train_pairs .* two training sources; choose one"),
        (dict(generated_retinas="eyes"), r"TrainConfig\.generated_retinas = 'eyes' is invalid: choose one of"),
        (dict(generated_retinas="mixed"), r"photograph_share = 0\.0 is invalid: .*'mixed' needs a share in \(0, 1\)"),
        (dict(generated_retinas="mixed", photograph_share=1.0), r"photograph_share = 1\.0 is invalid"),
        (dict(photograph_share=0.5), r"photograph_share = 0\.5 is invalid: only generated_retinas 'mixed' uses it"),
        (dict(photograph_share=-0.1), r"photograph_share = -0\.1 is invalid: need a share in \[0, 1\]"),
        (dict(pairs_per_epoch=0), r"TrainConfig\.pairs_per_epoch = 0 is invalid: need an integer >= 1"),
        (dict(pairs_per_epoch=2.5), r"TrainConfig\.pairs_per_epoch = 2\.5 is invalid"),
    ],
)
def test_generated_settings_are_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields).validate()


def test_good_generated_settings_pass():
    TrainConfig(train_pairs="generated", generated_retinas="mixed", photograph_share=0.3).validate()
    TrainConfig(train_pairs="generated", generated_retinas="photograph", pairs_per_epoch=1).validate()
    TrainConfig().validate()  # the default: the folder's pairs
    assert TrainConfig().train_pairs == "folder"


def test_generated_shares_choose_the_categories_and_are_checked(tmp_path):
    import pandas as pd

    config = TrainConfig(size=64, train_pairs="generated", pairs_per_epoch=3, generated_shares={"S": 1.0})
    data = _training_data(config, pd.DataFrame(), tmp_path, progress=False)
    assert data.transform.probs.tolist() == [1.0, 0.0, 0.0]  # S, P, A
    assert {data.transform.draw(i).category for i in range(20)} == {"S"}
    for bad in ({"X": 1.0}, {"S": 0.0}, {"S": -1.0}, {}, [("S", 1.0)]):
        with pytest.raises(ValueError, match=r"TrainConfig\.generated_shares = .* is invalid"):
            TrainConfig(generated_shares=bad).validate()
