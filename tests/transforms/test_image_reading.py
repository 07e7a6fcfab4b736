"""The one image reader (``read_rgb``) on every bit depth, colour mode and file type; reduced
decoding for large images; the FIRE reader's and the mask reader's refusals of ambiguous or
empty inputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from firereg.transforms.coords import scale_points
from firereg.transforms.fire_reader import FireFormatError, read_fire
from firereg.transforms.fov import read_mask
from firereg.transforms.io import (
    PHOTO_EXTENSIONS,
    image_size,
    read_rgb,
    reduction_factor,
)


def _ramp16(h: int = 6, w: int = 8) -> np.ndarray:
    """A 16-bit grey ramp covering 0..65535."""
    return np.linspace(0, 65535, h * w).round().astype(np.uint16).reshape(h, w)


def test_16_bit_grey_png_is_divided_by_257_not_clipped(tmp_path):
    ramp = _ramp16()
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as im:
        assert im.mode.startswith("I;16")  # really a 16-bit file
    out = read_rgb(tmp_path / "grey16.png")
    expected = np.rint(ramp / 257).astype(np.uint8)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], expected)
    assert out.min() == 0 and out.max() == 255 and len(np.unique(out)) > 40  # not black/white


def test_16_bit_colour_png_and_tiff_keep_every_channel(tmp_path):
    ramp = _ramp16()
    rgb16 = np.dstack([ramp, ramp[::-1], np.full_like(ramp, 257 * 100)])
    for name in ("rgb16.png", "rgb16.tif"):
        cv2.imwrite(str(tmp_path / name), rgb16[..., ::-1])  # OpenCV writes BGR
        out = read_rgb(tmp_path / name)
        np.testing.assert_array_equal(out, np.rint(rgb16 / 257).astype(np.uint8), err_msg=name)


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.array([[0, 255 * 257, 100 * 257]], np.int32), [0, 255, 100]),  # 32-bit int holding 16-bit data
        (np.array([[0, 200, 17]], np.int32), [0, 200, 17]),  # 32-bit int holding 8-bit data
        (np.array([[0.0, 1.0, 0.5]], np.float32), [0, 255, 128]),  # float 0..1
        (np.array([[0.0, 255.0, 10.0]], np.float32), [0, 255, 10]),  # float 0..255
    ],
)
def test_32_bit_tiff_is_scaled_by_its_range(tmp_path, values, expected):
    Image.fromarray(values).save(tmp_path / "wide.tif")
    out = read_rgb(tmp_path / "wide.tif")
    np.testing.assert_array_equal(out[0, :, 1], expected)


def test_float_tiff_outside_every_range_is_refused_naming_the_file(tmp_path):
    Image.fromarray(np.array([[-3.0, 2.0]], np.float32)).save(tmp_path / "odd.tif")
    with pytest.raises(ValueError, match=r"odd\.tif.*-3\.\.2"):
        read_rgb(tmp_path / "odd.tif")


def test_modes_and_file_types(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[2, 5] = (200, 40, 90)
    rgb[4, 1] = (10, 250, 30)
    base = Image.fromarray(rgb)
    # palette (exact for a 3-colour image), RGBA, BMP, TIFF: same pixels
    for name, image in [
        ("palette.png", base.quantize(colors=3)),
        ("rgba.png", base.convert("RGBA")),
        ("photo.bmp", base),
        ("photo.tif", base),
        ("photo.tiff", base),
    ]:
        image.save(tmp_path / name)
        np.testing.assert_array_equal(read_rgb(tmp_path / name), rgb, err_msg=name)
    assert ".bmp" in PHOTO_EXTENSIONS
    # grey JPEG and CMYK JPEG: close (lossy), the right colours
    base.convert("L").save(tmp_path / "grey.jpg", quality=100)
    grey = read_rgb(tmp_path / "grey.jpg")
    assert grey.shape == (6, 8, 3) and (grey[..., 0] == grey[..., 2]).all()
    flat = np.full((16, 16, 3), (200, 40, 90), np.uint8)
    Image.fromarray(flat).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    with Image.open(tmp_path / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
    assert np.abs(read_rgb(tmp_path / "cmyk.jpg").astype(int) - flat).max() <= 8


def test_truncated_jpeg_names_the_file(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cannot read image .*cut\.jpg.*truncated"):
        read_rgb(tmp_path / "cut.jpg")


def test_reduction_factor_divides_exactly():
    assert reduction_factor((8000, 8000), 512) == 8
    assert reduction_factor((2912, 2912), 512) == 4  # 728 px: 1/8 would be 364 < 512
    assert reduction_factor((2912, 2912), None) == 1
    assert reduction_factor((1001, 800), 100) == 1  # 1001 is odd: no exact reduction
    assert reduction_factor((256, 256), 512) == 1
    with pytest.raises(ValueError, match="positive"):
        reduction_factor((256, 256), 0)


@pytest.mark.parametrize("name", ["big.jpg", "big.png"])
def test_reduced_decoding_keeps_geometry(tmp_path, name):
    """A bright dot at full-resolution (x, y) lands where scale_points puts it in the reduced image."""
    h, w = 480, 640
    image = np.zeros((h, w, 3), np.uint8)
    x, y = 203.5, 317.5  # centre of the 4x4 block at columns 202-205, rows 316-319
    image[316:320, 202:206] = 255
    Image.fromarray(image).save(tmp_path / name, **({"quality": 100} if name.endswith(".jpg") else {}))
    full = read_rgb(tmp_path / name)
    small = read_rgb(tmp_path / name, max_side=160)
    assert full.shape == (h, w, 3)
    assert small.shape == (h // 4, w // 4, 3)  # k = 4: longest side 160 >= 160
    assert image_size(tmp_path / name) == (w, h)
    grey = small[..., 1].astype(float)
    rows, cols = np.mgrid[: grey.shape[0], : grey.shape[1]]
    found = np.array([(grey * cols).sum(), (grey * rows).sum()]) / grey.sum()
    np.testing.assert_allclose(found, scale_points(np.array([[x, y]]), (w, h), (w // 4, h // 4))[0], atol=0.05)
    assert read_rgb(tmp_path / name, max_side=1000).shape == (h, w, 3)  # never enlarged


def test_fire_reader_refuses_two_candidates_for_one_image(fire_data, tmp_path):
    import shutil

    root = tmp_path / "fire"
    shutil.copytree(fire_data, root)
    Image.open(root / "Images" / "S01_1.jpg").save(root / "Images" / "S01_1.png")
    with pytest.raises(FireFormatError, match=r"S01_1\.jpg.*S01_1\.png|S01_1\.png.*S01_1\.jpg"):
        read_fire(root)


def test_fire_reader_reads_bmp_images(fire_data, tmp_path):
    import shutil

    root = tmp_path / "fire"
    shutil.copytree(fire_data, root)
    for index in (1, 2):
        jpg = root / "Images" / f"A01_{index}.jpg"
        Image.open(jpg).save(jpg.with_suffix(".bmp"))
        jpg.unlink()
    row = read_fire(root).set_index("name").loc["A01"]
    assert row["fixed"].endswith("A01_1.bmp") and row["moving"].endswith("A01_2.bmp")


def test_empty_mask_is_refused_naming_the_file(tmp_path):
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "mask.png")
    with pytest.raises(ValueError, match=r"mask\.png.*empty"):
        read_mask(tmp_path / "mask.png")


def test_mask_reader_reduces_and_refuses_damaged_files(tmp_path):
    mask = np.zeros((40, 64), np.uint8)
    mask[8:32, 16:48] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    small = read_mask(tmp_path / "mask.png", shape=(40, 64), max_side=16)
    assert small.shape == (10, 16)
    np.testing.assert_array_equal(small, mask[::4, ::4] > 0)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match=r"cannot read mask .*bad\.png"):
        read_mask(tmp_path / "bad.png")
    grey16 = np.zeros((4, 4), np.uint16)
    grey16[1, 2] = 300  # a 16-bit mask: any non-zero sample is inside
    Image.fromarray(grey16).save(tmp_path / "mask16.png")
    assert read_mask(tmp_path / "mask16.png").sum() == 1
