"""Trained networks as registration methods of the evaluation interface.

A checkpoint is a ``torch.save`` dict: ``model_type`` (voxelmorph/affine/cascade),
``net_kwargs``, ``state_dict``, ``size`` (working size, px), ``channel``, plus training
state (``epoch``, ``optimizer``, ...). A *run* folder holds ``best.pt`` and ``last.pt``.

Preprocessing matches training (:func:`transforms.pair_transforms.pair_transforms`):
channel → resize to ``size`` x ``size`` (area) → intensity to [0, 1]; arrays are moved to
the ``PILReader`` layout (C, W, H) first, so network axis 0 is x.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Resize, ScaleIntensity
from monai.utils import convert_to_tensor

from evaluation.interface import DisplacementFieldResult, MatrixResult, RegistrationResult, ScaledResult
from pipelines.losses import LossConfig, RegistrationLoss
from pipelines.networks import MODEL_TYPES, AffineNet, MatchingAffineNet, affine_to_ddf, build_network
from transforms.fov import estimate_fov_mask
from transforms.pair_transforms import SelectChannel

__all__ = [
    "CheckpointError",
    "resolve_checkpoint",
    "load_checkpoint",
    "load_model",
    "prepare_image",
    "prepare_mask",
    "ddf_to_field_yx",
    "RefineConfig",
    "refine_ddf",
    "DeepMethod",
    "resample_ddf",
    "FUNDUS_REFINEMENT",
    "FUNDUS_REFINEMENT_LAMBDA",
    "fundus_refinement",
]


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, incomplete, or of another model type."""


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file from a run folder (``best.pt``, else ``last.pt``) or a file path.

    Raises:
        FileNotFoundError: naming the path when nothing usable is there.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"run folder {path} has no best.pt or last.pt")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path, expected_type: str | None = None) -> dict:
    """Load a checkpoint dict (CPU), checking its keys and, if given, its model type.

    Raises:
        FileNotFoundError: naming the missing path.
        CheckpointError: naming the file if unreadable, incomplete or of another type.
    """
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None
    missing = {"model_type", "net_kwargs", "state_dict", "size", "channel"} - set(ckpt if isinstance(ckpt, dict) else {})
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a firereg checkpoint (missing {sorted(missing)})")
    if ckpt["model_type"] not in MODEL_TYPES:
        raise CheckpointError(f"checkpoint {path} has unknown model type {ckpt['model_type']!r}")
    if expected_type is not None and ckpt["model_type"] != expected_type:
        raise CheckpointError(
            f"checkpoint {path} holds a {ckpt['model_type']!r} model, expected {expected_type!r}"
        )
    ckpt["path"] = str(path)
    return ckpt


def load_model(path: str | Path, expected_type: str | None = None) -> tuple[torch.nn.Module, dict]:
    """The network of a checkpoint in eval mode, and the checkpoint dict."""
    ckpt = load_checkpoint(path, expected_type)
    net = build_network(ckpt["model_type"], **ckpt["net_kwargs"])
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {ckpt['path']} does not fit a {ckpt['model_type']} network: {err}") from None
    return net.eval(), ckpt


def prepare_image(image: np.ndarray, size: int, channel: str = "green") -> torch.Tensor:
    """(H, W[, C]) row-major array → (1, 1, size, size) float32 tensor in [0, 1], PILReader layout."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {np.asarray(image).shape}")
    chw = torch.as_tensor(np.ascontiguousarray(np.transpose(arr, (2, 1, 0))), dtype=torch.float32)  # (C, W, H)
    one = SelectChannel(channel)(chw) if chw.shape[0] in (3, 4) else chw[:1]
    resized = Resize((size, size), mode="area")(one)
    plain = convert_to_tensor(ScaleIntensity(minv=0.0, maxv=1.0)(resized), track_meta=False)  # no MetaTensor overhead per op
    return plain.unsqueeze(0).float()


def prepare_mask(mask: np.ndarray | None, image: np.ndarray, size: int) -> torch.Tensor:
    """(H, W) bool FOV mask (estimated from ``image`` if None) → (1, 1, size, size) float 0/1."""
    m = estimate_fov_mask(image) if mask is None else np.asarray(mask, dtype=bool)
    t = torch.as_tensor(np.ascontiguousarray(m.T[None]), dtype=torch.float32)
    return convert_to_tensor(Resize((size, size), mode="nearest")(t), track_meta=False).unsqueeze(0).float()


def ddf_to_field_yx(ddf: torch.Tensor) -> np.ndarray:
    """One DDF (2, W, H) in PILReader layout → (2, H, W) row-major field, channel 0 = dx."""
    if ddf.ndim != 3 or ddf.shape[0] != 2:
        raise ValueError(f"expected a (2, W, H) DDF, got {tuple(ddf.shape)}")
    return ddf.detach().cpu().permute(0, 2, 1).numpy().astype(np.float32)


def resample_ddf(ddf: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A pixel/voxel DDF (B, D, *spatial) on another grid of the same field of view, 2D or 3D.

    Pixel-centre (``align_corners=False``) geometry, as MONAI ``Resize``: pixel ``q`` of the
    new grid is ``(q + 0.5) r - 0.5`` of the old (``r = old / new``), and displacements are
    rescaled to the new grid's pixels. Returns ``ddf`` itself when the grid is unchanged.

    Raises:
        ValueError: if ``ddf`` is not (B, D, *spatial) with D spatial axes, or ``shape`` has
            another number of axes.
    """
    dims = ddf.ndim - 2
    if dims not in (2, 3) or ddf.shape[1] != dims or len(shape) != dims:
        raise ValueError(f"expected a (B, D, *spatial) DDF with D = 2 or 3 and a {dims}-axis shape, "
                         f"got {tuple(ddf.shape)} and {tuple(shape)}")
    old = tuple(ddf.shape[2:])
    if old == tuple(shape):
        return ddf
    mode = "bilinear" if dims == 2 else "trilinear"
    ratio = torch.as_tensor([n / o for n, o in zip(shape, old)], dtype=ddf.dtype, device=ddf.device)
    resized = F.interpolate(ddf, size=tuple(shape), mode=mode, align_corners=False)
    return resized * ratio.view(1, dims, *([1] * dims))


@dataclass
class RefineConfig:
    """Test-time refinement (instance optimisation) of a predicted field.

    Two forms:

    - ``levels=1, grid=1`` (default): every pixel's displacement is optimised directly
      (2D or 3D) — fine-tuning of a field that is already close;
    - ``levels > 1`` or ``grid > 1`` (2D): a smooth correction on a coarse grid of control
      points ``grid`` pixels apart (bicubic upsampling, as a B-spline transform) is added to
      the predicted field and optimised coarse to fine on an image pyramid (each level
      halves the size) — the capture range of classical multi-resolution registration,
      which a per-pixel optimisation at one scale lacks (it stalls in the nearest local
      optimum of local NCC).

    Attributes:
        steps: optimisation steps per pyramid level (0 = off).
        lr: Adam learning rate, pixels (of the finest level) per step.
        loss: the loss optimised (the training loss by default); its smoothness term acts
            on the optimised correction (the whole field in the per-pixel form).
        size: working size of the refinement's finest level, pixels (None: the network's).
            A larger size than the network's refines the upsampled field on finer images
            (capped at the size of the images given).
        levels: pyramid levels (1 = the finest only).
        grid: control-point spacing of the correction at the finest level, pixels (1 = per pixel).
    """

    steps: int = 0
    lr: float = 0.1
    loss: LossConfig | None = None
    size: int | None = None
    levels: int = 1
    grid: int = 1

    def __post_init__(self) -> None:
        for name, low in (("steps", 0), ("levels", 1), ("grid", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"RefineConfig.{name} = {value!r}: need an integer >= {low}")
        if not self.lr > 0:
            raise ValueError(f"RefineConfig.lr = {self.lr!r}: need a number > 0")


#: test-time refinement of fundus pairs (``+tto`` in benchmarks, ``firereg register --refine-steps``):
#: a smooth correction on control points 32 px apart at 512 px, optimised on a 3-level
#: pyramid (128, 256, 512 px). Measured on the default data's validation pairs it takes the
#: cascade from ~10 px to sub-pixel median error (see the closing note of issue #4).
FUNDUS_REFINEMENT = {"lr": 0.5, "size": 512, "levels": 3, "grid": 32}
#: weight of the diffusion term on the correction (local NCC + FUNDUS_REFINEMENT_LAMBDA x
#: diffusion): on the default data's validation pairs 3.0 gave mAUC 0.958 and 0.6 % folding
#: against 0.938 and 2.9 % with the training's 0.01
FUNDUS_REFINEMENT_LAMBDA = 3.0


def fundus_refinement(steps: int = 50) -> RefineConfig:
    """The :data:`FUNDUS_REFINEMENT` settings with ``steps`` Adam steps per pyramid level (0 = off)."""
    return RefineConfig(steps=steps, loss=LossConfig(lam=FUNDUS_REFINEMENT_LAMBDA), **FUNDUS_REFINEMENT)


def refine_ddf(
    ddf: torch.Tensor,
    moving: torch.Tensor,
    fixed: torch.Tensor,
    mask: torch.Tensor | None,
    config: RefineConfig,
) -> torch.Tensor:
    """Optimise ``ddf`` (B, D, *spatial) on this pair with the loss (see :class:`RefineConfig`).

    ``moving``, ``fixed`` (B, C, *spatial) and ``mask`` are at the field's size (the finest
    level); coarser levels are area-downsampled from them. Returns the refined DDF, pixels.
    """
    from monai.networks.blocks import Warp

    warp = Warp(mode="bilinear", padding_mode="zeros")
    loss_fn = RegistrationLoss(config.loss or LossConfig())
    base = convert_to_tensor(ddf, track_meta=False).detach().clone()
    if config.levels == 1 and config.grid == 1:
        field = base.requires_grad_(True)
        optimizer = torch.optim.Adam([field], lr=config.lr)
        for _ in range(config.steps):
            optimizer.zero_grad()
            loss, _ = loss_fn(warp(moving, field), fixed, field, mask)
            loss.backward()
            optimizer.step()
        return field.detach()
    if base.ndim != 4 or base.shape[2] != base.shape[3]:
        raise ValueError(f"pyramid / grid refinement needs a square 2D DDF (B, 2, S, S), got {tuple(base.shape)}")
    size = base.shape[2]
    coarse = max(2, size // config.grid)
    correction = torch.zeros(base.shape[0], 2, coarse, coarse, dtype=base.dtype, requires_grad=True)
    optimizer = torch.optim.Adam([correction], lr=config.lr)
    lam = loss_fn.config.lam

    def upsampled() -> torch.Tensor:
        return F.interpolate(correction, size=(size, size), mode="bicubic", align_corners=False)

    for level in reversed(range(config.levels)):
        side = max(16, size // 2**level)
        down = (lambda x: F.interpolate(x, size=(side, side), mode="area")) if side != size else (lambda x: x)
        m, f = down(moving), down(fixed)
        k = (down(mask) > 0.5).to(mask.dtype) if mask is not None else None
        for _ in range(config.steps):
            optimizer.zero_grad()
            u = upsampled()
            field = resample_ddf(base + u, (side, side))
            similarity = loss_fn.similarity(warp(m, field), f, k)
            loss = similarity + lam * loss_fn.smooth(resample_ddf(u, (side, side)))
            loss.backward()
            optimizer.step()
    return (base + upsampled()).detach()


class DeepMethod:
    """A trained network (checkpoint or run folder) behind the registration interface.

    Args:
        checkpoint: run folder or ``.pt`` file.
        expected_type: refuse a checkpoint of another model type.
        refine: test-time refinement settings (off by default).
        name: label in tables; default ``<model_type>`` (``+tto`` when refining).
    """

    def __init__(
        self,
        checkpoint: str | Path,
        expected_type: str | None = None,
        refine: RefineConfig | None = None,
        name: str | None = None,
    ) -> None:
        net, ckpt = load_model(checkpoint, expected_type)
        self._setup(net, ckpt, refine, name)

    @classmethod
    def from_network(
        cls,
        net: torch.nn.Module,
        model_type: str,
        size: int,
        channel: str = "green",
        refine: RefineConfig | None = None,
        name: str | None = None,
    ) -> "DeepMethod":
        """Wrap an in-memory network (e.g. during validation) exactly as a checkpoint would be."""
        method = cls.__new__(cls)
        method._setup(net, {"model_type": model_type, "size": size, "channel": channel}, refine, name)
        return method

    def _setup(self, net: torch.nn.Module, ckpt: dict, refine: RefineConfig | None, name: str | None) -> None:
        self.net, self.ckpt = net, ckpt
        self.model_type = self.ckpt["model_type"]
        self.size = int(self.ckpt["size"])
        self.channel = self.ckpt["channel"]
        self.refine = refine or RefineConfig()
        self.name = name or (self.model_type + ("+tto" if self.refine.steps > 0 else ""))

    def predict(
        self, fixed: np.ndarray, moving: np.ndarray, fixed_mask: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Working-size DDF (1, 2, S, S) and, for the affine model, its (1, 2, 3) matrix."""
        f = prepare_image(fixed, self.size, self.channel)
        m = prepare_image(moving, self.size, self.channel)
        matrix = None
        with torch.no_grad():
            if isinstance(self.net, (AffineNet, MatchingAffineNet)):
                matrix = self.net.predict_affine(m, f)
                ddf = affine_to_ddf(matrix, f.shape[2:])
            else:
                ddf = self.net.predict_ddf(m, f)  # the field only: no warped image needed here
        if self.refine.steps > 0:
            size = self.size
            if self.refine.size is not None:
                size = max(self.size, min(int(self.refine.size), max(fixed.shape[:2])))
            if size != self.size:
                f = prepare_image(fixed, size, self.channel)
                m = prepare_image(moving, size, self.channel)
                ddf = resample_ddf(ddf, (size, size))
            mask = prepare_mask(fixed_mask, fixed, size)
            ddf = refine_ddf(ddf, m, f, mask, self.refine)
            matrix = None  # the refined field is no longer affine
        return ddf, matrix

    def register(
        self,
        fixed: np.ndarray,
        moving: np.ndarray,
        fixed_mask: np.ndarray | None = None,
        moving_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """Register ``moving`` onto ``fixed`` (row-major arrays); answers in their pixels."""
        ddf, matrix = self.predict(fixed, moving, fixed_mask)
        if matrix is not None:
            m = np.eye(3)
            m[:2] = matrix[0].double().numpy()
            inner: RegistrationResult = MatrixResult(m, (self.size, self.size), (self.size, self.size))
        else:
            inner = DisplacementFieldResult(ddf_to_field_yx(ddf[0]))
        return ScaledResult(inner, fixed.shape[:2], moving.shape[:2])

