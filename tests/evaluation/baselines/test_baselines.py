"""Classical baselines recover a known transform of a real fundus photograph.

The pair is made here from ``skimage.data.retina()`` (no download): the fixed image is
the photo at 384 px; the moving image is ``cv2.warpAffine(fixed, M)``, so a fixed point
``p`` shows up at ``M p`` in the moving image: ``M`` *is* the true fixed → moving map.
Comparing ``fixed_to_moving`` and ``moving_to_fixed`` with ``M`` on many points pins every
axis and direction convention of each method.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from firereg.evaluation.baselines import (
    METHODS,
    ElastixMethod,
    IdentityMethod,
    SiftMethod,
    make_method,
)
from firereg.evaluation.baselines.elastix import matrix_from_parameter_map
from firereg.evaluation.results import (
    DisplacementFieldResult,
    MatrixResult,
    ResizedMethod,
)
from firereg.transforms.fov import estimate_fov_mask

# itk's SWIG modules emit one DeprecationWarning per type while they lazy-load
pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning")

SIZE = 384


def _known_matrix(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c = ((SIZE - 1) / 2.0, (SIZE - 1) / 2.0)
    m = np.eye(3)
    m[:2] = cv2.getRotationMatrix2D(c, angle_deg, scale)
    m[:2, 2] += shift
    return m


@pytest.fixture(scope="module")
def fundus() -> tuple[np.ndarray, np.ndarray]:
    skdata = pytest.importorskip("skimage.data")
    img = cv2.resize(skdata.retina(), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return img, estimate_fov_mask(img)


def _make_pair(fundus, matrix: np.ndarray):
    fixed, fmask = fundus
    moving = cv2.warpAffine(fixed, matrix[:2], (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderValue=0)
    mmask = cv2.warpAffine(fmask.astype(np.uint8), matrix[:2], (SIZE, SIZE), flags=cv2.INTER_NEAREST) > 0
    # fixed pixels whose true moving position lies inside the moving FOV, away from the rim
    back = cv2.warpAffine(mmask.astype(np.uint8), matrix[:2], (SIZE, SIZE), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    overlap = ndimage.binary_erosion(fmask & (back > 0), iterations=12)
    ys, xs = np.mgrid[8:SIZE:16, 8:SIZE:16]
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    pts = pts[overlap[ys.ravel(), xs.ravel()]]
    return {"fixed": fixed, "moving": moving, "fmask": fmask, "mmask": mmask, "M": matrix, "points": pts, "overlap": overlap}


@pytest.fixture(scope="module")
def rigid_pair(fundus):
    return _make_pair(fundus, _known_matrix(6.0, 1.0, (12.0, -8.0)))


@pytest.fixture(scope="module")
def similarity_pair(fundus):
    return _make_pair(fundus, _known_matrix(6.0, 1.05, (12.0, -8.0)))


def _apply(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ matrix[:2, :2].T + matrix[:2, 2]


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    x = a[..., 1][mask].astype(np.float64)
    y = b[..., 1][mask].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def _check_recovers(result, pair, tol_f2m: float, tol_m2f: float | None) -> None:
    pts, m = pair["points"], pair["M"]
    assert len(pts) > 200
    truth = _apply(m, pts)
    err = np.linalg.norm(result.fixed_to_moving(pts) - truth, axis=1)
    assert err.max() < tol_f2m, f"fixed_to_moving max error {err.max():.3f} px (mean {err.mean():.3f})"
    if tol_m2f is not None:
        err_back = np.linalg.norm(result.moving_to_fixed(truth) - pts, axis=1)
        assert err_back.max() < tol_m2f, f"moving_to_fixed max error {err_back.max():.3f} px"
    # the warped moving image matches the fixed image better than the unwarped one
    warped = result.warp_moving(pair["moving"])
    inside = pair["overlap"]
    assert _ncc(pair["fixed"], warped, inside) > max(0.95, _ncc(pair["fixed"], pair["moving"], inside) + 0.2)


# --- registry / cheap checks -----------------------------------------------------------


def test_registry_names_and_bad_name():
    assert set(METHODS) == {"identity", "elastix-rigid", "elastix-affine", "elastix-bspline", "sift", "sift-quadratic"}
    for name in METHODS:
        method = make_method(name)
        assert method.name == name
        assert callable(method.register)
    with pytest.raises(ValueError, match="valid names: .*elastix-affine.*identity.*sift"):
        make_method("elastix-nonsense")


def test_identity_is_exact(similarity_pair):
    res = IdentityMethod().register(similarity_pair["fixed"], similarity_pair["moving"])
    assert isinstance(res, MatrixResult)
    pts = similarity_pair["points"]
    np.testing.assert_array_equal(res.fixed_to_moving(pts), pts)
    np.testing.assert_array_equal(res.moving_to_fixed(pts), pts)
    np.testing.assert_array_equal(res.warp_moving(similarity_pair["moving"]), similarity_pair["moving"])


def test_matrix_from_parameter_map_conventions():
    # Euler: T(p) = R(p - c) + c + t; ITK points are (x, y)
    angle, c, t = 0.1, np.array([100.0, 50.0]), np.array([3.0, -2.0])
    pm = {
        "Transform": ["EulerTransform"],
        "TransformParameters": [str(angle), str(t[0]), str(t[1])],
        "CenterOfRotationPoint": [str(c[0]), str(c[1])],
    }
    p = np.array([[10.0, 20.0], [100.0, 50.0], [300.0, 7.0]])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    expected = (p - c) @ rot.T + c + t
    np.testing.assert_allclose(_apply(matrix_from_parameter_map(pm), p), expected, atol=1e-9)
    # Affine: [a11 a12 a21 a22 tx ty], row-major A
    a = np.array([[1.1, 0.2], [-0.1, 0.9]])
    pm = {
        "Transform": ["AffineTransform"],
        "TransformParameters": [str(v) for v in [*a.ravel(), *t]],
        "CenterOfRotationPoint": [str(c[0]), str(c[1])],
    }
    np.testing.assert_allclose(_apply(matrix_from_parameter_map(pm), p), (p - c) @ a.T + c + t, atol=1e-9)


def test_elastix_parameter_maps():
    maps = ElastixMethod(transform="bspline").parameter_maps(scale=1.5)
    assert [m["Transform"][0] for m in maps] == ["AffineTransform", "BSplineTransform"]
    for m in maps:
        assert m["CheckNumberOfSamples"] == ["false"]
        assert m["NewSamplesEveryIteration"] == ["true"]
    assert float(maps[1]["FinalGridSpacingInPhysicalUnits"][0]) == pytest.approx(64.0 * 1.5)
    with pytest.raises(ValueError, match="transform must be"):
        ElastixMethod(transform="spline")


# --- SIFT ------------------------------------------------------------------------------


def test_sift_recovers_similarity(similarity_pair):
    p = similarity_pair
    res = SiftMethod().register(p["fixed"], p["moving"], p["fmask"], p["mmask"])
    assert isinstance(res, MatrixResult)
    _check_recovers(res, p, tol_f2m=1.0, tol_m2f=1.0)


def test_sift_without_masks_and_resized(similarity_pair):
    """Masks estimated inside; run at a working size of 256 px and answered at 384 px."""
    p = similarity_pair
    res = ResizedMethod(SiftMethod(), 256).register(p["fixed"], p["moving"])
    truth = _apply(p["M"], p["points"])
    err = np.linalg.norm(res.fixed_to_moving(p["points"]) - truth, axis=1)
    assert err.max() < 1.5, f"max error {err.max():.3f} px"


def test_sift_blank_image_raises():
    blank = np.zeros((SIZE, SIZE, 3), np.uint8)
    with pytest.raises(RuntimeError, match="sift: .*field-of-view"):
        SiftMethod().register(blank, blank)
    full = np.ones((SIZE, SIZE), bool)
    with pytest.raises(RuntimeError, match="too few keypoints"):
        SiftMethod().register(blank, blank, full, full)


def test_sift_float_image_is_scaled_like_uint8(similarity_pair):
    """A float image in [0, 1] gives the uint8 image's green channel, so the same homography."""
    p = similarity_pair
    as_uint8 = SiftMethod().register(p["fixed"], p["moving"], p["fmask"], p["mmask"])
    as_float = SiftMethod().register(p["fixed"] / 255.0, p["moving"] / 255.0, p["fmask"], p["mmask"])
    np.testing.assert_array_equal(as_float.matrix, as_uint8.matrix)
    assert as_float.n_inliers == as_uint8.n_inliers


def test_sift_mask_eroded_away_is_named(similarity_pair):
    p = similarity_pair
    speck = np.zeros((SIZE, SIZE), bool)
    speck[190:195, 190:195] = True  # 5 px: gone after the 8 px erosion at 384 px
    with pytest.raises(RuntimeError, match=r"sift: the field-of-view mask is empty \(after erosion by 8 px\)"):
        SiftMethod().register(p["fixed"], p["moving"], speck, p["mmask"])


# --- elastix ---------------------------------------------------------------------------


@pytest.mark.parametrize("transform", ["rigid", "bspline"])
def test_elastix_field_of_view_failures_are_named(similarity_pair, transform):
    """Checked before elastix runs; a failed method records the reason."""
    p = similarity_pair
    method = make_method(f"elastix-{transform}")
    speck = np.zeros((SIZE, SIZE), bool)
    speck[190:193, 190:193] = True  # 3 px: gone after the 4 px erosion at 384 px
    with pytest.raises(RuntimeError, match=rf"elastix-{transform}: the field-of-view mask is empty \(after erosion by 4 px\)"):
        method.register(p["fixed"], p["moving"], p["fmask"], speck)
    blank = np.zeros((SIZE, SIZE, 3), np.uint8)
    with pytest.raises(RuntimeError, match=rf"elastix-{transform}: no pixel above the field-of-view threshold"):
        method.register(blank, p["moving"])
    with pytest.raises(RuntimeError, match=rf"elastix-{transform}: mask has shape \(10, 10\), its image has shape \(384, 384\)"):
        method.register(p["fixed"], p["moving"], np.ones((10, 10), bool), p["mmask"])



def test_elastix_rigid_recovers_rotation_translation(rigid_pair):
    p = rigid_pair
    res = make_method("elastix-rigid").register(p["fixed"], p["moving"], p["fmask"], p["mmask"])
    assert isinstance(res, MatrixResult)
    _check_recovers(res, p, tol_f2m=1.0, tol_m2f=1.0)


def test_elastix_affine_recovers_similarity(similarity_pair):
    p = similarity_pair
    res = make_method("elastix-affine").register(p["fixed"], p["moving"], p["fmask"], p["mmask"])
    assert isinstance(res, MatrixResult)
    _check_recovers(res, p, tol_f2m=1.0, tol_m2f=1.0)


def test_elastix_bspline_recovers_similarity(similarity_pair):
    p = similarity_pair
    res = make_method("elastix-bspline").register(p["fixed"], p["moving"], p["fmask"], p["mmask"])
    assert isinstance(res, DisplacementFieldResult)
    assert res.field.shape == (2, SIZE, SIZE)
    _check_recovers(res, p, tol_f2m=1.5, tol_m2f=None)


def test_elastix_failure_is_runtime_error(similarity_pair):
    p = similarity_pair
    method = ElastixMethod(transform="affine", metric="NoSuchMetric")
    with pytest.raises(RuntimeError, match="elastix-affine: elastix failed: .*NoSuchMetric"):
        method.register(p["fixed"], p["moving"], p["fmask"], p["mmask"])
