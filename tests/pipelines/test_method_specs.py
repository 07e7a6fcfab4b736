"""Tests of method specs (firereg.pipelines.method_specs): parsing, and the methods they build.

The trained model is the ``cascade_run`` fixture (tests/conftest.py): a tiny cascade (64 px
network size, one epoch of 3 steps) on the shared 5-pair generated dataset. Trained models in
``firereg benchmark``: tests/cli/test_benchmark.py.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from firereg.evaluation.baselines import IdentityMethod
from firereg.pipelines.checkpoints import CheckpointError
from firereg.pipelines.inference.deep_method import DeepMethod
from firereg.pipelines.method_specs import (
    DEFAULT_TTO_STEPS,
    MethodSpec,
    make_any_method,
    parse_method_list,
    parse_method_spec,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("sift", MethodSpec("sift", "sift")),
        (" elastix-bspline ", MethodSpec("elastix-bspline", "elastix-bspline")),
        ("cascade:runs/a", MethodSpec("cascade:runs/a", "cascade", "cascade", Path("runs/a"), 0)),
        ("cascade+tto:runs/a", MethodSpec("cascade+tto:runs/a", "cascade+tto", "cascade", Path("runs/a"), DEFAULT_TTO_STEPS)),
        ("voxelmorph+tto7:r.pt", MethodSpec("voxelmorph+tto7:r.pt", "voxelmorph+tto7", "voxelmorph", Path("r.pt"), 7)),
        ("long=affine:C:/runs/b", MethodSpec("long=affine:C:/runs/b", "long", "affine", Path("C:/runs/b"), 0)),
    ],
)
def test_parse_method_spec(spec, expected):
    assert parse_method_spec(spec) == expected
    assert parse_method_spec(spec).deep == (expected.model_type is not None)


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("warp-drive", "unknown method 'warp-drive'"),
        ("cascade", "unknown method 'cascade'"),  # a model needs a path
        ("unet:runs/a", "unknown model type 'unet'"),
        ("cascade+ttx:runs/a", "unknown model type 'cascade+ttx'"),
        ("cascade:", "names no run folder"),
        ("cascade+tto0:runs/a", "at least 1"),
        ("bad label=cascade:runs/a", "bad label"),
        ("", "empty method spec"),
    ],
)
def test_bad_specs_list_the_valid_forms(spec, needle):
    with pytest.raises(ValueError) as info:
        parse_method_spec(spec)
    message = str(info.value)
    assert needle in message
    if "at least" not in needle:
        assert "TYPE:PATH" in message and "TYPE+tto:PATH" in message and "elastix-bspline" in message


def test_method_list_needs_distinct_labels():
    assert parse_method_list("identity, cascade:a ,cascade+tto:a,") == ["identity", "cascade:a", "cascade+tto:a"]
    assert parse_method_list(["short=cascade:a", "cascade:b"]) == ["short=cascade:a", "cascade:b"]
    with pytest.raises(ValueError, match="both be labelled 'cascade'.*LABEL="):
        parse_method_list("cascade:a,cascade:b")
    with pytest.raises(ValueError, match="no methods"):
        parse_method_list(" , ")


def test_factory_is_picklable_and_builds_baselines():
    factory = pickle.loads(pickle.dumps(make_any_method))  # the benchmark's worker processes need this
    method = factory("identity")
    assert isinstance(method, IdentityMethod) and method.name == "identity"
    with pytest.raises(ValueError, match="valid forms"):
        factory("nope")


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing.pt")):
        make_any_method(f"cascade:{tmp_path / 'missing.pt'}")
    with pytest.raises(FileNotFoundError, match="has no best.pt or last.pt"):
        make_any_method(f"cascade:{tmp_path}")


# ----------------------------------------------------------------------------- trained models


def test_deep_specs_build_labelled_models(cascade_run):
    plain = make_any_method(f"cascade:{cascade_run}")
    refined = make_any_method(f"cascade+tto:{cascade_run}")
    few = make_any_method(f"cascade+tto3:{cascade_run / 'last.pt'}")
    named = make_any_method(f"mine=cascade:{cascade_run}")
    assert all(isinstance(m, DeepMethod) for m in (plain, refined, few, named))
    assert (plain.name, refined.name, few.name, named.name) == ("cascade", "cascade+tto", "cascade+tto3", "mine")
    assert (plain.refine.steps, refined.refine.steps, few.refine.steps) == (0, DEFAULT_TTO_STEPS, 3)
    assert plain.ckpt["path"].endswith("best.pt") and few.ckpt["path"].endswith("last.pt")


def test_wrong_model_type_is_refused(cascade_run):
    with pytest.raises(CheckpointError, match="holds a 'cascade' model, expected 'voxelmorph'"):
        make_any_method(f"voxelmorph:{cascade_run}")
