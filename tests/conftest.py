"""Shared fixtures of the library tests and the CLI tests (tests/cli/).

A small generated FIRE-format dataset (made once per test session), a tiny trained cascade, and
the inputs of ``register`` (photographs, NIfTI volumes) and of the MNIST example (IDX files).
Heavy libraries are imported inside the fixtures, so collecting the tests stays cheap. Helpers
that tests call directly come as fixtures returning the function (pytest's "factories as
fixtures"): test modules cannot import each other or this file (``--import-mode=importlib``).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from firereg.transforms.fire_generator import GeneratorConfig, make_fire_dataset

#: the settings of the shared dataset (small: a few seconds to make)
SMALL_CONFIG = dict(size=256, pairs={"S": 2, "P": 2, "A": 1}, seed=1)


@pytest.fixture(scope="session")
def fire_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated FIRE-format folder: S01, S02, P01, P02, A01 at 256 x 256 px.

    Shared by the whole session: tests must not modify it (copy it to ``tmp_path`` first).
    """
    out = tmp_path_factory.mktemp("fire-small") / "fire"
    return make_fire_dataset(out, GeneratorConfig(**SMALL_CONFIG), progress=False)


@pytest.fixture
def firereg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``FIREREG_HOME`` at a temporary folder so defaults never touch the real home."""
    home = tmp_path / "firereg-home"
    monkeypatch.setenv("FIREREG_HOME", str(home))
    return home


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (restored afterwards): on a 2-core machine shared with
    other work, more threads only spin. Modules use it with ``pytestmark``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- a trained cascade


@pytest.fixture(scope="session")
def cascade_run(fire_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding a tiny trained cascade (best.pt, last.pt): 64 px, one epoch on ``fire_data``.

    Shared by the whole session (method specs, ``firereg benchmark``): tests must not modify it.
    """
    from firereg.pipelines.training import TrainConfig, train

    out = tmp_path_factory.mktemp("cascade") / "run"
    config = TrainConfig(model="cascade", size=64, kernel_size=5, epochs=1, augment=False)
    train(config, fire_data, out, progress=False, num_threads=1)
    return out


# ----------------------------------------------------------------------------- photographs for register


def _retina(size: int) -> np.ndarray:
    """skimage's retina photograph resized to ``size`` x ``size`` px, (H, W, 3) uint8."""
    import cv2
    from skimage.data import retina

    return cv2.resize(retina(), (size, size), interpolation=cv2.INTER_AREA)


def _shifted(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """The moving image of a pure shift: moving(p + shift) = image(p)."""
    import cv2

    m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    return cv2.warpAffine(image, m, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderValue=0)


def _checkpoint(path: Path, model_type: str = "affine", size: int = 128,
                shift_px: tuple[float, float] = (0.0, 0.0)) -> Path:
    """A firereg checkpoint; an affine one predicts ``shift_px`` (working-size px) for any input."""
    import torch

    from firereg.pipelines.nn.networks import build_network

    torch.manual_seed(0)
    # the regression estimator's translation head makes a network of known output
    net_kwargs = {"estimator": "regression"} if model_type == "affine" else {}
    net = build_network(model_type, **net_kwargs)
    if model_type == "affine":
        with torch.no_grad():  # zero weights: the translation head outputs its bias (share of the size)
            net.translation.bias.copy_(torch.tensor(shift_px) / size)
    torch.save(
        {"model_type": model_type, "net_kwargs": net_kwargs, "state_dict": net.state_dict(), "size": size, "channel": "green", "epoch": 0},
        path,
    )
    return path


@pytest.fixture(scope="session")
def retina_photo():
    """``retina_photo(size)``: skimage's retina at ``size`` x ``size`` px, (H, W, 3) uint8."""
    return _retina


@pytest.fixture(scope="session")
def shifted_photo():
    """``shifted_photo(image, (dx, dy))``: the moving image of a pure shift, moving(p + shift) = image(p)."""
    return _shifted


@pytest.fixture(scope="session")
def photo_checkpoint():
    """``photo_checkpoint(path, model_type, size, shift_px)``: write a firereg checkpoint (see ``_checkpoint``)."""
    return _checkpoint


@pytest.fixture(scope="module")
def photo_pair(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Fixed/moving PNGs related by a known shift, a matching affine checkpoint and FIRE control points.

    Keys: root, fixed, moving (arrays), ckpt, points (fixed (x, y) px), shift ((dx, dy) = (20, -10) px,
    fixed -> moving) and size (the images' side, 200 px; the checkpoint's network size is 128 px:
    AffineNet needs >= 128, six halvings + InstanceNorm).
    """
    from PIL import Image

    shift, size, work = (20.0, -10.0), 200, 128
    root = tmp_path_factory.mktemp("register")
    fixed = _retina(size)
    moving = _shifted(fixed, shift)
    Image.fromarray(fixed).save(root / "fixed.png")
    Image.fromarray(moving).save(root / "moving.png")
    work_shift = tuple(s * work / size for s in shift)  # (12.8, -6.4) working px
    ckpt = _checkpoint(root / "affine.pt", "affine", work, work_shift)
    pts = np.array([[50.0, 60.0], [100.5, 120.25], [150.0, 40.0], [33.0, 170.0]])
    lines = [f"{x} {y} {x + shift[0]} {y + shift[1]}" for x, y in pts]
    (root / "control_points.txt").write_text("\n".join(lines) + "\n")
    (root / "fixed_points.txt").write_text("\n".join(f"{x} {y}" for x, y in pts) + "\n")
    return {"root": root, "fixed": fixed, "moving": moving, "ckpt": ckpt, "points": pts, "shift": shift, "size": size}


# ----------------------------------------------------------------------------- NIfTI volumes for register

#: the feature widths of the tiny VoxelMorph in the NIfTI checkpoints
NIFTI_FEATURES = (4, 4, 4, 4, 4, 4)


def _oblique_affine() -> np.ndarray:
    """A non-trivial affine: anisotropic voxels, a flipped axis, a rotation and an offset."""
    theta = np.deg2rad(20.0)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag([1.5, -2.0, 3.0])
    a[:3, 3] = [-40.0, 25.5, 10.0]
    return a


def _volume(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A smooth random image with structure everywhere (float32)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    img = sum(np.sin((3 + k) * np.pi * g + rng.uniform(0, 6)) for k, g in enumerate(grids))
    return (img - img.min()).astype(np.float32) * 100.0


def _write_nifti(path: Path, data, affine: np.ndarray) -> Path:
    """Save ``data`` (float32) with ``affine`` as a NIfTI file; returns ``path``."""
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), path)
    return path


def _constant_shift_checkpoint(path: Path, dims: int, shift_voxels: tuple[float, ...], shape=None) -> None:
    """A VoxelMorph checkpoint whose DDF is the constant ``shift_voxels`` (working voxels)."""
    import torch

    from firereg.pipelines.nn.networks import VoxelMorphNet

    torch.manual_seed(0)
    net = VoxelMorphNet(spatial_dims=dims, features=NIFTI_FEATURES)
    with torch.no_grad():
        net.flow.weight.zero_()
        net.flow.bias.copy_(torch.tensor(shift_voxels))
    ckpt = {"model_type": "voxelmorph", "net_kwargs": {"spatial_dims": dims, "features": list(NIFTI_FEATURES)},
            "state_dict": net.state_dict(), "size": 32, "channel": "luminance", "epoch": 0}
    if shape is not None:
        ckpt["shape"] = list(shape)
    torch.save(ckpt, path)


@pytest.fixture
def oblique_affine() -> np.ndarray:
    """A non-trivial 4 x 4 voxel-to-world affine: anisotropic voxels, a flipped axis, a rotation, an offset."""
    return _oblique_affine()


@pytest.fixture(scope="session")
def nifti_volume():
    """``nifti_volume(shape, seed=0)``: a smooth random float32 image with structure everywhere."""
    return _volume


@pytest.fixture(scope="session")
def write_nifti():
    """``write_nifti(path, data, affine)``: save a float32 NIfTI file, return its path."""
    return _write_nifti


@pytest.fixture(scope="session")
def shift_checkpoint():
    """``shift_checkpoint(path, dims, shift_voxels, shape=None)``: a VoxelMorph checkpoint whose DDF is constant."""
    return _constant_shift_checkpoint


@pytest.fixture
def pair3d(tmp_path: Path) -> dict:
    """Fixed/moving 20 x 18 x 16 NIfTI volumes on an oblique affine and a checkpoint shifting by (1, 0, -2) voxels."""
    shape = (20, 18, 16)
    affine = _oblique_affine()
    fixed = _write_nifti(tmp_path / "fixed.nii.gz", _volume(shape, 0), affine)
    moving = _write_nifti(tmp_path / "moving.nii", _volume(shape, 1), affine)
    ckpt = tmp_path / "shift.pt"
    _constant_shift_checkpoint(ckpt, 3, (1.0, 0.0, -2.0), shape=shape)  # working shape = image shape
    return {"fixed": fixed, "moving": moving, "ckpt": ckpt, "shape": shape, "affine": affine, "root": tmp_path}


# ----------------------------------------------------------------------------- MNIST-format files


def _idx_bytes(magic: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    """An IDX file written by hand (big-endian header)."""
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in shape) + payload


def _digit_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n blurry 28 x 28 'digits': a thick vertical stroke whose position and tilt vary, labels cycle 0..9."""
    images = np.zeros((n, 28, 28), np.uint8)
    rows = np.arange(28)[:, None]
    cols = np.arange(28)[None, :]
    for k in range(n):
        centre = 14 + rng.uniform(-2, 2) + rng.uniform(-0.15, 0.15) * (rows - 14)
        images[k] = (255 * np.exp(-0.5 * ((cols - centre) / 2.0) ** 2) * ((rows > 4) & (rows < 24))).astype(np.uint8)
    return images, (np.arange(n) % 10).astype(np.uint8)


@pytest.fixture(scope="session")
def idx_bytes():
    """``idx_bytes(magic, shape, payload)``: the bytes of an IDX file (big-endian header)."""
    return _idx_bytes


@pytest.fixture(scope="session")
def digit_images():
    """``digit_images(n, rng)``: n blurry 28 x 28 uint8 'digits' and labels cycling 0..9."""
    return _digit_images


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    """A folder of tiny MNIST-format IDX files: gzip images, plain labels (60 items, ``digit_images(60, rng(0))``)."""
    images, labels = _digit_images(60, np.random.default_rng(0))
    root = tmp_path / "mnist"
    root.mkdir()
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(2051, images.shape, images.tobytes())))
    (root / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(2049, labels.shape, labels.tobytes()))
    return root
