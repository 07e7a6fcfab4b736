"""The input representations of SIFT's keypoints (``SiftMethod.representation``).

Each representation is a uint8 image of the green channel's shape; the vessel filters make a
dark vessel bright; an unknown name is one clear ``ValueError``; the representation is part of
the benchmark fingerprint; and ``sift-quadratic`` registers a small generated pair with each.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from firereg.evaluation.baselines import SiftMethod, SiftQuadraticMethod, make_method
from firereg.evaluation.baselines.sift import REPRESENTATIONS, keypoint_image
from firereg.evaluation.fingerprints import method_parts
from firereg.evaluation.landmarks import measure_pair
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.fov import read_mask
from firereg.transforms.io import read_rgb


@pytest.fixture(scope="module")
def vessel_image() -> tuple[np.ndarray, np.ndarray]:
    """A 96 x 128 px bright disc (value 160, noise-free) crossed by a dark 5 px vertical vessel at x = 60."""
    green = np.zeros((96, 128), np.uint8)
    cv2.circle(green, (64, 48), 44, 160, -1)
    green[:, 58:63] = np.where(green[:, 58:63] > 0, 90, 0)
    mask = np.zeros(green.shape, bool)
    cv2.circle(mask.view(np.uint8), (64, 48), 40, 1, -1)
    return green, mask


@pytest.mark.parametrize("representation", list(REPRESENTATIONS))
def test_each_representation_is_uint8_of_the_input_shape(vessel_image, representation):
    green, mask = vessel_image
    image = keypoint_image(green, mask, representation)
    assert image.dtype == np.uint8 and image.shape == green.shape
    assert image[mask].max() > image[mask].min()  # not blank inside the field of view


@pytest.mark.parametrize("representation", ["vesselness", "black-tophat", "clahe+vesselness"])
def test_vessel_filters_make_the_dark_vessel_bright(vessel_image, representation):
    green, mask = vessel_image
    image = keypoint_image(green, mask, representation).astype(float)
    vessel, background = image[30:66, 59:62].mean(), image[30:66, 80:90].mean()
    assert vessel > background + 60, (vessel, background)
    if representation != "clahe+vesselness":
        assert image[~mask].max() == 0  # the field-of-view rim is no vessel
        assert image[mask].max() == 255  # stretched to the full range


def test_green_is_the_channel_itself_and_clahe_green_equalises(vessel_image):
    green, mask = vessel_image
    np.testing.assert_array_equal(keypoint_image(green, mask, "green"), green)
    clahe = keypoint_image(green, mask, "clahe-green")
    assert not np.array_equal(clahe, green) and clahe[~mask].max() == 0


def test_unknown_representation_is_named(vessel_image):
    green, mask = vessel_image
    with pytest.raises(ValueError, match=r"'frangi'.*valid ones: green, clahe-green, vesselness"):
        keypoint_image(green, mask, "frangi")
    with pytest.raises(ValueError, match=r"unknown SIFT input representation 'CLAHE'"):
        SiftQuadraticMethod(representation="CLAHE")
    with pytest.raises(ValueError, match="'nope'"):
        dataclasses.replace(make_method("sift"), representation="nope")


def test_default_representation_and_fingerprint():
    """The default stays CLAHE green; another representation changes the record fingerprint."""
    assert SiftMethod().representation == "clahe-green" == make_method("sift-quadratic").representation
    default = method_parts("sift-quadratic", make_method("sift-quadratic"))
    other = method_parts("sift-quadratic", SiftQuadraticMethod(representation="vesselness"))
    assert default["settings"]["representation"] == "clahe-green"
    assert other["settings"]["representation"] == "vesselness" and other != default


@pytest.mark.parametrize("representation", ["green", "clahe-green", "vesselness", "black-tophat"])
def test_sift_quadratic_registers_a_generated_pair(fire_data, representation):
    """The generated 256 px S01 pair (lengths of the settings scale to 256 px): error below 1 px."""
    row = read_fire(fire_data).set_index("name").loc["S01"]
    fixed, moving, mask = read_rgb(row["fixed"]), read_rgb(row["moving"]), read_mask(row["mask"])
    result = SiftQuadraticMethod(representation=representation).register(fixed, moving, mask, mask)
    error, _ = measure_pair(result, np.asarray(row["fixed_points"]), np.asarray(row["moving_points"]))
    assert error.mean < 1.0, f"{representation}: {error.mean:.2f} px"  # 0.2-0.4 px; identity: 2.7 px
