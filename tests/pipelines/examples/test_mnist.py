"""Tests for firereg.transforms.mnist_data (IDX files, embedded digits) and firereg.pipelines.examples.mnist_atlas.

IDX files are written with the ``idx_bytes``, ``digit_images`` and ``mnist_dir`` fixtures (tests/conftest.py);
``firereg mnist``: tests/cli/test_examples.py.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from firereg.transforms.mnist_data import (
    SKLEARN_SOURCE,
    IDXFormatError,
    atlas_index,
    find_mnist_files,
    load_digit_data,
    load_mnist,
    load_sklearn_digits,
    read_idx,
    read_mnist_images,
    read_mnist_labels,
)

# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("compressed", [False, True])
def test_read_idx_plain_and_gzip(tmp_path, compressed, idx_bytes):
    images = np.random.default_rng(1).integers(0, 256, size=(3, 5, 4), dtype=np.uint8)
    labels = np.array([7, 0, 9], np.uint8)
    raw_images = idx_bytes(2051, images.shape, images.tobytes())
    raw_labels = idx_bytes(2049, labels.shape, labels.tobytes())
    if compressed:
        raw_images, raw_labels = gzip.compress(raw_images), gzip.compress(raw_labels)
    (tmp_path / "im").write_bytes(raw_images)  # no suffix: gzip is detected from the bytes
    (tmp_path / "lb").write_bytes(raw_labels)
    np.testing.assert_array_equal(read_mnist_images(tmp_path / "im"), images)
    np.testing.assert_array_equal(read_mnist_labels(tmp_path / "lb"), labels)
    assert read_mnist_labels(tmp_path / "lb").dtype == np.int64
    # other IDX types: float32 (type byte 0x0D), big-endian payload, gzip
    floats = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    (tmp_path / "f.idx.gz").write_bytes(gzip.compress(idx_bytes(0x0D02, floats.shape, floats.astype(">f4").tobytes())))
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx.gz"), floats)


def test_wrong_magic_number_names_the_file(tmp_path, idx_bytes):
    labels = np.arange(4, dtype=np.uint8)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(2049, labels.shape, labels.tobytes()))  # a label file under an image name
    with pytest.raises(IDXFormatError, match=rf"{path}: wrong magic number 2049.*expected 2051"):
        read_mnist_images(path)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(IDXFormatError, match=rf"{junk}: wrong magic number"):
        read_mnist_labels(junk)
    with pytest.raises(IDXFormatError, match=f"{junk}: not an IDX file"):
        read_idx(junk)


def test_truncated_and_bad_files_are_clear(tmp_path, idx_bytes):
    images = np.zeros((10, 28, 28), np.uint8)
    raw = idx_bytes(2051, images.shape, images.tobytes())
    cut = tmp_path / "cut"
    cut.write_bytes(raw[:-100])
    with pytest.raises(IDXFormatError, match=rf"{cut}: truncated.*\(10, 28, 28\).*7856 bytes in all.*7756"):
        read_mnist_images(cut)
    short = tmp_path / "short"
    short.write_bytes(raw[:10])
    with pytest.raises(IDXFormatError, match=f"{short}: truncated header"):
        read_mnist_images(short)
    long = tmp_path / "long"
    long.write_bytes(raw + b"xx")
    with pytest.raises(IDXFormatError, match=f"{long}: 2 unexpected bytes"):
        read_mnist_images(long)
    bad_gz = tmp_path / "bad.gz"
    bad_gz.write_bytes(gzip.compress(raw)[:50])
    with pytest.raises(IDXFormatError, match=f"{bad_gz}: gzip data is corrupt or truncated"):
        read_mnist_images(bad_gz)
    with pytest.raises(FileNotFoundError, match="nothing"):
        read_idx(tmp_path / "nothing")


def test_find_and_load_mnist(mnist_dir, tmp_path, idx_bytes, digit_images):
    images_path, labels_path = find_mnist_files(mnist_dir)
    assert images_path.name == "train-images-idx3-ubyte.gz" and labels_path.name == "train-labels-idx1-ubyte"
    data = load_mnist(mnist_dir)
    assert data.images.shape == (60, 32, 32) and data.images.dtype == np.float32
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    raw, _ = digit_images(60, np.random.default_rng(0))
    np.testing.assert_allclose(data.images[:, 2:30, 2:30], raw / 255.0, atol=1e-7)  # padded by 2 on every side
    assert data.images[:, :2].max() == 0 and data.images[:, :, 30:].max() == 0
    assert "MNIST IDX files" in data.source
    assert load_digit_data(mnist_dir).source == data.source

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"no MNIST images file in {empty}.*train-images-idx3-ubyte\.gz"):
        find_mnist_files(empty)
    with pytest.raises(FileNotFoundError, match="MNIST folder not found"):
        find_mnist_files(tmp_path / "missing")
    # image and label counts must agree
    (empty / "train-images-idx3-ubyte").write_bytes(idx_bytes(2051, (2, 28, 28), bytes(2 * 28 * 28)))
    (empty / "train-labels-idx1-ubyte").write_bytes(idx_bytes(2049, (3,), bytes(3)))
    with pytest.raises(ValueError, match="2 images.*3 labels"):
        load_mnist(empty)


def test_embedded_digits_are_sklearn_and_say_so():
    data = load_sklearn_digits()
    assert data.images.shape == (1797, 32, 32) and data.labels.shape == (1797,)
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert data.images[:, :4].max() == 0 and data.images[:, :, 28:].max() == 0  # 24 x 24 digit, 4 px border
    assert data.source == SKLEARN_SOURCE and "NOT MNIST" in data.source and "scikit-learn" in data.source
    assert load_digit_data(None).source == SKLEARN_SOURCE


def test_atlas_index_is_nearest_to_mean():
    images = np.zeros((4, 2, 2), np.float32)
    images[0] = 1.0
    images[1] = 0.25
    images[2] = -1.0
    images[3] = 0.5  # mean = 0.1875 → image 1 is nearest
    assert atlas_index(images) == 1


# ---------------------------------------------------------------- atlas training


@pytest.mark.slow
def test_atlas_training_raises_ncc_without_folding(tmp_path):
    """Short training on the embedded digits: NCC and Dice to the atlas rise, folding stays < 1 %."""
    from firereg.pipelines.examples.mnist_atlas import AtlasConfig, run_mnist

    summary = run_mnist(tmp_path, AtlasConfig(digit=3, steps=120, batch_size=16, threads=2))
    m = summary["metrics"]
    assert summary["data_source"] == SKLEARN_SOURCE
    assert m["n_images"] >= 30
    assert m["ncc_after"] > m["ncc_before"] + 0.04, m
    assert m["dice_after"] > m["dice_before"] + 0.04, m
    assert m["folding_fraction"] < 0.01, m
    assert (tmp_path / "atlas_grid.png").stat().st_size > 10_000
