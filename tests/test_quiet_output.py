"""Quiet output: training, registering and benchmarking a small pair emit no warnings of firereg's own.

Every warning is recorded (``recwarn`` records each one, not only the first per place). None may
come from firereg's files, none may be PyTorch's "non-tuple sequence for multidimensional
indexing" deprecation (MONAI's smoothness losses index that way; firereg's own do not), and
MONAI's "Warp: Using PyTorch native grid_sample" notice, which MONAI raises for every ``Warp``
built, is not raised at all: :func:`firereg.pipelines.nn.fields.make_warp` logs it once per process
at INFO level instead.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

import firereg
from firereg.evaluation.benchmark import BenchmarkConfig, run_benchmark
from firereg.pipelines.method_specs import make_any_method
from firereg.pipelines.nn import fields
from firereg.pipelines.training import TrainConfig, train
from firereg.transforms.fire_reader import read_fire

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(firereg.__file__).resolve().parent
WARP_NOTICE = "Warp: Using PyTorch native grid_sample"


def _ours(record: warnings.WarningMessage) -> bool:
    path = Path(record.filename).resolve()
    return ROOT in path.parents and ".venv" not in path.parts


def test_make_warp_logs_the_notice_once_and_raises_no_warning(recwarn, caplog, monkeypatch):
    monkeypatch.setattr(fields, "_warp_notice_logged", False)
    with caplog.at_level(logging.INFO, logger="firereg.pipelines.nn.fields"):
        for _ in range(3):
            fields.make_warp()
    assert not [w for w in recwarn if WARP_NOTICE in str(w.message)]
    notices = [r for r in caplog.records if WARP_NOTICE in r.getMessage()]
    from monai.networks.blocks.warp import USE_COMPILED

    assert len(notices) == (0 if USE_COMPILED else 1)
    # any other warning raised while building a Warp still reaches the caller
    import monai.networks.blocks.warp as warp_module

    real = warp_module.Warp.__init__

    def noisy(self, *args, **kwargs):
        warnings.warn("something else", UserWarning)
        real(self, *args, **kwargs)

    monkeypatch.setattr(warp_module.Warp, "__init__", noisy)
    with pytest.warns(UserWarning, match="something else"):
        fields.make_warp()


@pytest.mark.parametrize("shape", [(2, 2, 7, 9), (1, 3, 5, 6, 7), (2, 1, 8)])
def test_smoothness_equals_monai_without_its_indexing_deprecation(shape, recwarn):
    import torch
    from monai.losses import BendingEnergyLoss, DiffusionLoss

    from firereg.pipelines.nn.losses import Smoothness, bending_energy, diffusion

    torch.manual_seed(0)
    ddf = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ours = (diffusion(ddf), bending_energy(ddf), Smoothness("diffusion")(ddf), Smoothness("bending")(ddf))
    assert not list(recwarn)  # firereg's own: no warning at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI 1.6 indexes with lists of slices
        theirs = (DiffusionLoss()(ddf), BendingEnergyLoss()(ddf))
    for a, b in zip(ours, theirs * 2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    ours[0].backward()  # differentiable
    assert ddf.grad is not None and torch.isfinite(ddf.grad).all()
    with pytest.raises(ValueError, match=r"\(1, 2, 2, 9\)"):
        diffusion(torch.zeros(1, 2, 2, 9))  # an axis of 2 pixels has no inner grid
    with pytest.raises(ValueError, match="unknown smoothness"):
        Smoothness("tv")


@pytest.mark.slow
def test_training_registering_and_benchmarking_are_quiet(fire_data, tmp_path, recwarn):
    run = tmp_path / "run"
    train(TrainConfig(model="cascade", size=64, kernel_size=5, budget_steps=2, benchmark_size=128),
          fire_data, run, progress=False, num_threads=1)
    manifest = read_fire(fire_data)
    one = manifest.iloc[:1].copy()
    one.attrs = dict(manifest.attrs)
    methods = ["identity", f"cascade:{run}", f"cascade+tto:{run}"]
    pairs = run_benchmark(one, BenchmarkConfig(methods=methods, benchmark_size=128, workers=1), tmp_path / "bench",
                          factory=make_any_method, progress=False)
    assert len(pairs) == 3
    shown = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in recwarn]
    assert not [w for w in recwarn if _ours(w)], shown
    assert not [w for w in recwarn if "non-tuple sequence" in str(w.message)], shown
    assert not [w for w in recwarn if WARP_NOTICE in str(w.message)], shown
