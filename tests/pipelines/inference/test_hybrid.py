"""The hybrid method: keypoints + quadratic, then a deformable stage, composed exactly.

The composition is pinned with a known global map and a known local field; the end-to-end
registration uses a pair of the shared generated dataset and the ``cascade_run`` fixture
(tests/conftest.py); the spec form ``hybrid:RUN`` is parsed, built and fingerprinted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from firereg.evaluation.baselines.quadratic import QuadraticResult
from firereg.evaluation.fingerprints import file_sha256
from firereg.evaluation.landmarks import measure_pair
from firereg.evaluation.results import (
    DisplacementFieldResult,
    MatrixResult,
    NotInvertibleError,
    ScaledResult,
)
from firereg.pipelines.checkpoints import CheckpointError
from firereg.pipelines.inference.hybrid import HybridMethod, HybridResult
from firereg.pipelines.method_specs import (
    make_any_method,
    method_fingerprint,
    parse_method_spec,
)
from firereg.pipelines.nn.networks import VoxelMorphNet
from firereg.transforms.global_models import GlobalModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (64, 80)  # (H, W) of the fixed grid in the composition tests


def _global() -> QuadraticResult:
    a = [[2.0, 1.01, 0.02, 1e-4, 0.0, -1e-4], [-1.0, 0.0, 0.99, 0.0, 2e-4, 0.0]]
    start = GlobalModel("affine", [[1.01, 0.02, 2.0], [0.0, 0.99, -1.0]])
    return QuadraticResult(GlobalModel("quadratic", a), SHAPE, (70, 90), start)


def _local(field: np.ndarray) -> ScaledResult:
    return ScaledResult(DisplacementFieldResult(field), SHAPE, SHAPE)


def test_composition_is_exact_p_moving_is_q_of_p_plus_u():
    field = np.zeros((2, *SHAPE), dtype=np.float32)
    ys, xs = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    field[0] = 1.5 + 0.02 * ys  # u varies smoothly: dx depends on y, dy on x
    field[1] = -0.5 + 0.01 * xs
    q = _global()
    result = HybridResult(q, _local(field), local_jac_min=1.0)
    pts = np.array([[10.0, 20.0], [40.0, 5.0], [70.0, 60.0]])
    u = np.stack([1.5 + 0.02 * pts[:, 1], -0.5 + 0.01 * pts[:, 0]], axis=1)
    np.testing.assert_allclose(result.fixed_to_moving(pts), q.model.apply(pts + u), atol=1e-4)
    assert result.fixed_shape == SHAPE and result.moving_shape == (70, 90)
    # the inverse: exact quadratic inverse, then the local field by fixed-point iteration
    assert result.invertible
    np.testing.assert_allclose(result.moving_to_fixed(result.fixed_to_moving(pts)), pts, atol=1e-2)


def test_a_folding_local_field_is_not_invertible():
    result = HybridResult(_global(), _local(np.zeros((2, *SHAPE), np.float32)), local_jac_min=-0.2)
    assert not result.invertible
    with pytest.raises(NotInvertibleError, match="not invertible"):
        result.moving_to_fixed(np.array([[10.0, 10.0]]))
    with pytest.raises(ValueError, match="fixed grid"):
        HybridResult(_global(), ScaledResult(DisplacementFieldResult(np.zeros((2, 8, 8))), (8, 8), (8, 8)), 1.0)


def _quadratic_pair(fire_data):
    """A generated fixed image and a moving image that shows its point ``p`` at ``Q(p)``, known ``Q``."""
    import cv2

    from firereg.transforms.global_models import invert_quadratic

    fixed = cv2.cvtColor(cv2.imread(str(fire_data / "Images" / "S01_1.jpg")), cv2.COLOR_BGR2RGB)
    size = fixed.shape[0]
    c, k = (size - 1) / 2.0, 4.0 / ((size - 1) / 2.0) ** 2  # lines bend by 4 px at the rim
    true = GlobalModel("quadratic", [[8 + k * c * c, 1.0, -2 * k * c, 0.0, 0.0, k],
                                     [-6 + k * c * c, -2 * k * c, 1.0, k, 0.0, 0.0]])
    ys, xs = np.mgrid[0:size, 0:size]
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    back = invert_quadratic(true, grid).reshape(size, size, 2).astype(np.float32)
    moving = cv2.remap(fixed, back[..., 0], back[..., 1], cv2.INTER_LINEAR, borderValue=0)
    r = np.linspace(-0.5, 0.5, 5) * size + c
    pts = np.stack(np.meshgrid(r, r), axis=-1).reshape(-1, 2)
    return fixed, moving, pts, true.apply(pts)


def test_hybrid_registers_a_generated_pair(fire_data, cascade_run):
    fixed, moving, fixed_pts, moving_pts = _quadratic_pair(fire_data)
    identity = np.linalg.norm(fixed_pts - moving_pts, axis=1).mean()
    method = HybridMethod(cascade_run)
    assert method.size == 64 and isinstance(method.net, VoxelMorphNet)
    result = method.register(fixed, moving)
    assert isinstance(result, HybridResult) and result.global_note
    error, _ = measure_pair(result, fixed_pts, moving_pts)
    assert identity > 8.0  # the pair needs registering
    assert error.mean < 0.5, (error, result.global_note)  # about 0.08 px
    # with test-time refinement of the deformable stage (on the aligned pair, at the images' size)
    from firereg.pipelines.inference.refine import fundus_refinement

    refined = HybridMethod(cascade_run, refine=fundus_refinement(3)).register(fixed, moving)
    assert refined.local.inner.fixed_shape == fixed.shape[:2]  # refined at 256 px, not the network's 64
    assert measure_pair(refined, fixed_pts, moving_pts)[0].mean < 0.5
    # an untrained VoxelMorph (its flow starts near zero) leaves the global stage's answer
    zero = HybridMethod.from_network(VoxelMorphNet(), size=64).register(fixed, moving)
    np.testing.assert_allclose(
        zero.fixed_to_moving(fixed_pts), zero.global_result.fixed_to_moving(fixed_pts), atol=0.05
    )


def test_hybrid_refuses_an_affine_checkpoint(tmp_path):
    from firereg.pipelines.checkpoints import checkpoint_state, save_checkpoint
    from firereg.pipelines.nn.networks import build_network

    net = build_network("affine")
    path = save_checkpoint(checkpoint_state(net, "affine", {}, 64, "green"), tmp_path / "affine.pt")
    with pytest.raises(CheckpointError, match="hybrid needs one of voxelmorph, cascade"):
        HybridMethod(path)


def test_hybrid_spec_parses_builds_and_fingerprints_the_checkpoint(cascade_run):
    spec = parse_method_spec(f"hybrid:{cascade_run}")
    assert (spec.label, spec.model_type, spec.deep, spec.tto_steps) == ("hybrid", "hybrid", True, 0)
    assert parse_method_spec(f"mine=hybrid:{cascade_run}").label == "mine"
    assert parse_method_spec(f"hybrid+tto3:{cascade_run}").tto_steps == 3
    for bad in ("hybrid", "x=hybrid"):
        with pytest.raises(ValueError, match="names no run"):
            parse_method_spec(bad)
    method = make_any_method(f"hybrid:{cascade_run}")
    assert isinstance(method, HybridMethod) and method.name == "hybrid"
    fp = method_fingerprint(f"hybrid:{cascade_run}")
    assert fp["model_type"] == "hybrid"
    assert fp["checkpoint_sha256"] == file_sha256(cascade_run / "best.pt")
    assert fp["settings"]["name"] == "sift-quadratic" and "ridge" in fp["settings"]
    assert method.fingerprint == fp
    assert fp != method_fingerprint(f"cascade:{cascade_run}")
    refined = make_any_method(f"hybrid+tto2:{cascade_run}")
    assert refined.name == "hybrid+tto2" and refined.deformable.refine.steps == 2
    assert refined.fingerprint["refine"]["steps"] == 2 and fp["refine"] is None


def test_matrix_fallback_composes_too():
    h = MatrixResult(np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]]), SHAPE, SHAPE)
    field = np.full((2, *SHAPE), 0.5, dtype=np.float32)
    result = HybridResult(h, _local(field), 1.0)
    out = result.fixed_to_moving(np.array([[5.0, 5.0]]))
    np.testing.assert_allclose(out, [[8.5, 3.5]], atol=1e-5)
    assert pd.notna(out).all()
