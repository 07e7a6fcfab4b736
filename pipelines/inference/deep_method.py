"""Trained networks as registration methods of the evaluation interface.

Checkpoints and run folders: :mod:`firereg.pipelines.checkpoints`.

Preprocessing matches training (:func:`firereg.transforms.pair_transforms.pair_transforms`):
channel → resize to ``size`` x ``size`` (area) → intensity to [0, 1], in the networks' ``XY``
layout (:mod:`firereg.transforms.coords`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.transforms import Resize, ScaleIntensity
from monai.utils import convert_to_tensor

from firereg.evaluation.results import (
    DisplacementFieldResult,
    MatrixResult,
    RegistrationResult,
    ScaledResult,
)
from firereg.evaluation.sanity import images_identical
from firereg.pipelines.checkpoints import load_model
from firereg.pipelines.inference.refine import RefineConfig, refine_ddf
from firereg.pipelines.nn.fields import affine_to_ddf, resample_ddf
from firereg.pipelines.nn.networks import AffineNet, MatchingAffineNet
from firereg.transforms.coords import field_xy_to_yx, yx_to_xy
from firereg.transforms.fov import field_of_view
from firereg.transforms.pair_transforms import SelectChannel

__all__ = ["prepare_image", "prepare_mask", "DeepMethod"]


def prepare_image(image: np.ndarray, size: int, channel: str = "green") -> torch.Tensor:
    """(H, W[, C]) row-major array → (1, 1, size, size) float32 tensor in [0, 1], ``XY`` layout.

    Raises:
        ValueError: quoting the shape of an array that is not (H, W) or (H, W, C).
    """
    chw = torch.as_tensor(yx_to_xy(image), dtype=torch.float32)  # (C, W, H)
    one = SelectChannel(channel)(chw) if chw.shape[0] in (3, 4) else chw[:1]
    resized = Resize((size, size), mode="area")(one)
    plain = convert_to_tensor(ScaleIntensity(minv=0.0, maxv=1.0)(resized), track_meta=False)  # no MetaTensor overhead per op
    return plain.unsqueeze(0).float()


def prepare_mask(mask: np.ndarray | None, image: np.ndarray, size: int) -> torch.Tensor:
    """The field of view of ``image`` (:func:`firereg.transforms.fov.field_of_view`: ``mask``, a
    row-major (H, W) array, or estimated) → (1, 1, size, size) float 0/1, ``XY`` layout (nearest)."""
    fov = torch.as_tensor(yx_to_xy(field_of_view(image, mask)), dtype=torch.float32)  # (1, W, H)
    return convert_to_tensor(Resize((size, size), mode="nearest")(fov), track_meta=False).unsqueeze(0).float()


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
        """Register ``moving`` onto ``fixed`` (row-major arrays); answers in their pixels.

        Identical images (:func:`firereg.evaluation.sanity.images_identical`) register to the
        identity without running the network: its answer there is not the identity (on
        skimage's retina at 256 px an untrained cascade moved points by 1.0 px on average, a
        one-epoch 64 px cascade by 4.9 px; a trained one by 0.5 px, compressing its field to
        Jacobian 0.31), and the identity is exact.
        """
        if images_identical(fixed, moving):
            work = (self.size, self.size)
            identity: RegistrationResult = (
                MatrixResult(np.eye(3), work, work) if self.model_type == "affine"
                else DisplacementFieldResult(np.zeros((2, *work), dtype=np.float32))
            )
            return ScaledResult(identity, fixed.shape[:2], moving.shape[:2])
        ddf, matrix = self.predict(fixed, moving, fixed_mask)
        if matrix is not None:
            m = np.eye(3)
            m[:2] = matrix[0].double().numpy()
            inner: RegistrationResult = MatrixResult(m, (self.size, self.size), (self.size, self.size))
        else:
            inner = DisplacementFieldResult(field_xy_to_yx(ddf[0]))
        return ScaledResult(inner, fixed.shape[:2], moving.shape[:2])

