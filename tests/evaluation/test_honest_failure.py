"""Failures that used to pass as success (evaluation/sanity.py, called by ``ResizedMethod``).

Blank, flat and all-masked images fail with a reason naming the image and the problem, for
every method (the check runs before the method, so even elastix costs nothing there);
identical images register to the identity with ~0 px error; non-finite, folded, degenerate
and never-moved results fail. The images are ``skimage.data.retina()`` at 128 px.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from firereg.evaluation.baselines import make_method
from firereg.evaluation.benchmark import score_pair
from firereg.evaluation.results import (
    DisplacementFieldResult,
    MatrixResult,
    ResizedMethod,
)
from firereg.evaluation.sanity import MAX_FOLDED_SHARE, RegistrationFailed
from firereg.transforms.fov import estimate_fov_mask

# itk's SWIG modules emit one DeprecationWarning per type while they lazy-load
pytestmark = [
    pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]

SIZE = 128
ELASTIX = ("elastix-affine", "elastix-bspline")
METHODS = ("identity", *ELASTIX, "sift", "cascade")


@pytest.fixture(scope="module")
def photo(retina_photo):
    image = retina_photo(SIZE)
    return image, estimate_fov_mask(image)


def _method(name: str):
    if name != "cascade":
        return make_method(name)
    import torch

    from firereg.pipelines.inference.deep_method import DeepMethod
    from firereg.pipelines.nn.networks import build_network

    torch.manual_seed(0)
    return DeepMethod.from_network(build_network("cascade").eval(), "cascade", 64)  # untrained


def _fov_points(mask: np.ndarray, step: int = 8, margin: int = 16) -> np.ndarray:
    ys, xs = np.mgrid[margin : SIZE - margin : step, margin : SIZE - margin : step]
    keep = mask[ys.ravel(), xs.ravel()]
    return np.stack([xs.ravel()[keep], ys.ravel()[keep]], axis=1).astype(np.float64)


def _case(photo, case: str):
    """``(fixed, moving, fixed_mask, moving_mask)`` of a bad pair."""
    image, mask = photo
    flat = np.where(mask[..., None], 120, 0).astype(np.uint8).repeat(3, axis=2)  # the FOV disc, one grey inside
    return {
        "blank": (image, np.zeros_like(image), mask, mask),
        "flat": (image, flat, mask, mask),
        "flat fixed": (flat, image, mask, mask),
        "all masked": (image, image[::-1].copy(), mask, np.zeros_like(mask)),
    }[case]


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize(
    "case, reason",
    [
        ("blank", "moving image is blank (every pixel is 0)"),
        ("flat", "moving image is flat inside the field of view"),
        ("flat fixed", "fixed image is flat inside the field of view"),
        ("all masked", "moving image is all masked"),
    ],
)
def test_no_content_fails_with_the_reason(photo, name, case, reason):
    with pytest.raises(RegistrationFailed) as info:
        ResizedMethod(_method(name), SIZE).register(*_case(photo, case))
    assert reason in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ELASTIX else n for n in METHODS])
def test_identical_images_register_to_the_identity(photo, name):
    image, mask = photo
    pts = _fov_points(mask)
    result = ResizedMethod(_method(name), SIZE).register(image, image.copy(), mask, mask)
    error = np.linalg.norm(result.fixed_to_moving(pts) - pts, axis=1)
    assert len(pts) > 50 and error.mean() < 0.05 and error.max() < 1.0, (error.mean(), error.max())


def test_deep_model_still_runs_its_network_on_images_that_differ(photo, shifted_photo):
    image, mask = photo
    moved = shifted_photo(image, (4.0, -3.0))
    result = ResizedMethod(_method("cascade"), SIZE).register(image, moved, mask, mask)
    pts = _fov_points(mask)
    assert np.abs(result.fixed_to_moving(pts) - pts).max() > 0.1  # the untrained network's answer, not a shortcut


def test_deep_affine_model_on_identical_images_is_the_identity_matrix(photo):
    from firereg.pipelines.inference.deep_method import DeepMethod
    from firereg.pipelines.nn.networks import build_network

    image, _ = photo
    method = DeepMethod.from_network(build_network("affine").eval(), "affine", 128)
    result = method.register(image, image.copy())
    assert isinstance(result.inner, MatrixResult) and np.array_equal(result.inner.matrix, np.eye(3))


class _Returns:
    """A method returning a fixed result on the grid it is given (a field is resized onto it)."""

    def __init__(self, make, name: str = "stub", identity_by_design: bool = False) -> None:
        self.make, self.name, self.identity_by_design = make, name, identity_by_design

    def register(self, fixed, moving, fixed_mask=None, moving_mask=None):
        return self.make(fixed.shape[:2])


def _folded_field(shape, patch: int) -> DisplacementFieldResult:
    """A field that folds a ``patch`` x ``patch`` square at the image centre (u_x = -2 (x - x0): det -1)."""
    h, w = shape
    field = np.zeros((2, h, w), np.float32)
    y0, x0 = h // 2 - patch // 2, w // 2 - patch // 2
    xs = np.arange(patch, dtype=np.float32)
    field[0, y0 : y0 + patch, x0 : x0 + patch] = -2.0 * (xs - xs.mean())
    return DisplacementFieldResult(field)


def _register(photo, make, **kwargs):
    image, mask = photo
    moving = np.roll(image, 3, axis=1)  # differs from the fixed image
    return ResizedMethod(_Returns(make, **kwargs), SIZE).register(image, moving, mask, mask)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda s: _folded_field(s, 48), "folded transform: "),
        (lambda s: DisplacementFieldResult(np.full((2, *s), np.nan, np.float32)), "non-finite transform"),
        (lambda s: MatrixResult(np.array([[1, 0, np.nan], [0, 1, 0], [0, 0, 1.0]]), s, s), "non-finite transform"),
        (lambda s: MatrixResult(np.diag([0.01, 0.01, 1.0]), s, s), "degenerate transform: it changes area by 0.0001x"),
        (lambda s: MatrixResult(np.array([[1, 0, 1000.0], [0, 1, 0], [0, 0, 1]]), s, s), "maps inside the moving"),
        (lambda s: MatrixResult(np.eye(3), s, s), "returned the identity"),
    ],
    ids=["folded", "nan-field", "nan-matrix", "collapsed", "outside", "never-moved"],
)
@pytest.mark.filterwarnings("ignore:invalid value encountered in det:RuntimeWarning")
def test_unusable_results_fail_with_the_reason(photo, make, reason):
    with pytest.raises(RegistrationFailed, match=reason.replace("(", r"\(").replace(".", r"\.")):
        _register(photo, make)


def test_small_folds_and_the_identity_baseline_pass(photo):
    image, mask = photo
    _register(photo, lambda s: _folded_field(s, 4))  # 16 px: ~0.1 % of the FOV, under MAX_FOLDED_SHARE
    assert 16 / mask.sum() < MAX_FOLDED_SHARE
    result = _register(photo, lambda s: MatrixResult(np.eye(3), s, s), identity_by_design=True)
    assert np.array_equal(result.fixed_to_moving(np.array([[5.0, 7.0]])), [[5.0, 7.0]])


def test_non_finite_image_fails(photo):
    image, mask = photo
    bad = image.astype(np.float32) / 255.0
    bad[10, 10, 1] = np.nan
    with pytest.raises(RegistrationFailed, match="moving image has non-finite pixel values"):
        ResizedMethod(_method("identity"), SIZE).register(image, bad, mask, mask)


def test_benchmark_records_the_reason(photo, tmp_path):
    image, mask = photo
    paths = {}
    for key, array in {"fixed": image, "moving": _case(photo, "flat")[1], "mask": mask.astype(np.uint8) * 255}.items():
        paths[key] = str(tmp_path / f"{key}.png")
        Image.fromarray(array).save(paths[key])
    pts = _fov_points(mask)[:5]
    row = {"name": "X01", "category": "S", **paths, "fixed_points": pts, "moving_points": pts}
    record = score_pair(ResizedMethod(_method("sift"), SIZE), "sift", row)
    assert record["status"] == "failed" and np.isinf(record["mean_error"])
    assert record["reason"].startswith("RegistrationFailed: moving image is flat inside the field of view")
