"""Hybrid registration: keypoints → quadratic global map → learned deformable stage, one field.

The global stage is ``sift-quadratic`` (:class:`firereg.evaluation.baselines.sift.SiftQuadraticMethod`:
SIFT on the CLAHE-enhanced green channel, RANSAC homography, robust quadratic refit; the
homography where the quadratic would fold). The moving image is warped onto the fixed grid
with that map ``Q``; a trained VoxelMorph (a ``voxelmorph`` checkpoint, or the deformable
stage of a ``cascade`` checkpoint) then registers the globally aligned pair, giving ``u`` on
the fixed grid. The two compose exactly (:class:`HybridResult`)::

    p_moving = Q(p + u(p))        (fixed → moving, full-resolution pixels)

because the aligned image is ``aligned(p') = moving(Q(p'))``. With ``refine`` (spec
``hybrid+tto:RUN``) the deformable field is refined on the aligned pair as ``TYPE+tto`` refines
a network's field (:func:`firereg.pipelines.inference.refine.refine_ddf`). Conventions:
:mod:`firereg.transforms.coords`; the network sees its checkpoint's size and channel, as
:class:`firereg.pipelines.inference.deep_method.DeepMethod` prepares them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from firereg.evaluation.baselines.sift import SiftQuadraticMethod
from firereg.evaluation.deformation import jacobian_determinant_xy
from firereg.evaluation.results import (
    DisplacementFieldResult,
    NotInvertibleError,
    RegistrationResult,
    ScaledResult,
    check_points,
)
from firereg.pipelines.checkpoints import CheckpointError, load_model
from firereg.pipelines.inference.deep_method import DeepMethod
from firereg.pipelines.inference.refine import RefineConfig
from firereg.pipelines.nn.networks import CascadeNet, VoxelMorphNet
from firereg.transforms.coords import field_xy_to_yx
from firereg.transforms.fov import field_of_view

__all__ = ["HYBRID_MODEL_TYPES", "HybridResult", "HybridMethod", "deformable_stage"]

#: checkpoint types whose deformable stage the hybrid uses
HYBRID_MODEL_TYPES = ("voxelmorph", "cascade")


class HybridResult(RegistrationResult):
    """``p -> Q(p + u(p))``: a local map on the fixed grid, then a global map into the moving image.

    Args:
        global_result: ``Q``, fixed → moving (its fixed and moving shapes are this result's).
        local: ``p -> p + u(p)``, fixed → globally aligned image (both on the fixed grid).

    Attributes:
        local_jac_min: the smallest ``det(I + grad u)`` of the local field (at its own grid);
            ``invertible`` needs it positive and ``Q`` invertible.
    """

    def __init__(self, global_result: RegistrationResult, local: RegistrationResult, local_jac_min: float) -> None:
        super().__init__(global_result.fixed_shape, global_result.moving_shape)
        if local.fixed_shape != self.fixed_shape or local.moving_shape != self.fixed_shape:
            raise ValueError(
                f"the local map must map the fixed grid {self.fixed_shape} onto itself, "
                f"got {local.fixed_shape} -> {local.moving_shape}"
            )
        self.global_result, self.local = global_result, local
        self.local_jac_min = float(local_jac_min)
        self.invertible = bool(global_result.invertible and self.local_jac_min > 0)

    def fixed_to_moving(self, points: np.ndarray) -> np.ndarray:
        return self.global_result.fixed_to_moving(self.local.fixed_to_moving(check_points(points)))

    def moving_to_fixed(self, points: np.ndarray, tol_px: float = 1e-3, max_iterations: int = 100) -> np.ndarray:
        """Invert ``Q`` exactly, then ``p + u(p) = r`` by fixed-point iteration ``p <- r - u(p)``.

        Raises:
            NotInvertibleError: if ``Q`` has no inverse, the local field folds, or the
                iteration does not reach ``tol_px`` pixels.
        """
        if not self.invertible:
            raise NotInvertibleError(
                f"hybrid map not invertible (global invertible: {self.global_result.invertible}, "
                f"min local Jacobian determinant {self.local_jac_min:.3g})"
            )
        r = self.global_result.moving_to_fixed(check_points(points))
        p = r.copy()
        for _ in range(int(max_iterations)):
            new = r - (self.local.fixed_to_moving(p) - p)
            step = float(np.max(np.abs(new - p))) if len(p) else 0.0
            p = new
            if step < tol_px:
                return p
        raise NotInvertibleError(f"the deformable stage's inverse did not converge to {tol_px:g} px")


def deformable_stage(net: torch.nn.Module, model_type: str, path: str) -> VoxelMorphNet:
    """The VoxelMorph of a ``voxelmorph`` or ``cascade`` network.

    Raises:
        CheckpointError: naming ``path`` for another model type.
    """
    if model_type == "voxelmorph" and isinstance(net, VoxelMorphNet):
        return net
    if model_type == "cascade" and isinstance(net, CascadeNet):
        return net.deformable
    raise CheckpointError(
        f"checkpoint {path} holds a {model_type!r} model; hybrid needs one of {', '.join(HYBRID_MODEL_TYPES)} "
        f"(its deformable stage)"
    )


class HybridMethod:
    """Keypoints + quadratic, then a trained deformable stage on the aligned pair.

    Args:
        checkpoint: run folder or ``.pt`` file of a ``voxelmorph`` or ``cascade`` model.
        name: label in tables (default ``hybrid``).
        global_method: the global stage (default :class:`SiftQuadraticMethod`).
        refine: test-time refinement of the deformable stage's field on the aligned pair
            (:func:`firereg.pipelines.inference.refine.refine_ddf`, as ``TYPE+tto`` does; off by default).

    Raises:
        FileNotFoundError: naming a missing run folder or checkpoint.
        CheckpointError: naming an unreadable checkpoint or one of another type.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        name: str = "hybrid",
        global_method: SiftQuadraticMethod | None = None,
        refine: RefineConfig | None = None,
    ) -> None:
        net, ckpt = load_model(checkpoint)
        self._setup(deformable_stage(net, ckpt["model_type"], ckpt["path"]), ckpt, name, global_method, refine)

    @classmethod
    def from_network(
        cls,
        net: VoxelMorphNet,
        size: int,
        channel: str = "green",
        name: str = "hybrid",
        global_method: SiftQuadraticMethod | None = None,
        refine: RefineConfig | None = None,
    ) -> "HybridMethod":
        """Wrap an in-memory VoxelMorph as a checkpoint of ``size`` px and ``channel`` would be."""
        method = cls.__new__(cls)
        method._setup(net.eval(), {"size": size, "channel": channel}, name, global_method, refine)
        return method

    def _setup(
        self, net: VoxelMorphNet, ckpt: dict, name: str, global_method: SiftQuadraticMethod | None,
        refine: RefineConfig | None,
    ) -> None:
        self.net = net
        self.size = int(ckpt["size"])
        self.channel = str(ckpt["channel"])
        self.name = name
        self.global_method = global_method or SiftQuadraticMethod()
        # the deformable stage runs exactly as a voxelmorph checkpoint would (preprocessing, refinement)
        self.deformable = DeepMethod.from_network(net, "voxelmorph", self.size, self.channel, refine, name)

    def local_field(
        self, fixed: np.ndarray, aligned: np.ndarray, fixed_mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, float]:
        """Row-major (2, S, S) DDF (fixed → aligned) at the network size ``S`` (the refinement's
        size when refining) and its min Jacobian determinant inside the fixed field of view."""
        ddf, _ = self.deformable.predict(fixed, aligned, fixed_mask)
        field = field_xy_to_yx(ddf[0].detach())
        det = jacobian_determinant_xy(field)
        fov = field_of_view(fixed, fixed_mask).astype(np.uint8)
        inside = cv2.resize(fov, det.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
        return field, float(np.min(det[inside])) if inside.any() else float(np.min(det))

    def register(
        self,
        fixed: np.ndarray,
        moving: np.ndarray,
        fixed_mask: np.ndarray | None = None,
        moving_mask: np.ndarray | None = None,
    ) -> HybridResult:
        """Register ``moving`` onto ``fixed`` (row-major arrays); answers in their pixels.

        Returns:
            :class:`HybridResult`; ``global_note`` says whether the global stage kept the quadratic.

        Raises:
            RuntimeError: when the global stage fails (too few keypoints, matches, inliers).
        """
        global_result = self.global_method.register(fixed, moving, fixed_mask, moving_mask)
        aligned = global_result.warp_moving(np.asarray(moving))  # moving(Q(p)) on the fixed grid
        field, jac_min = self.local_field(fixed, aligned, fixed_mask)
        shape = global_result.fixed_shape
        local = ScaledResult(DisplacementFieldResult(field), shape, shape)
        result = HybridResult(global_result, local, jac_min)
        result.global_note = getattr(global_result, "global_note", "")
        return result
