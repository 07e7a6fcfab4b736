"""The network, optimiser and loss of one run, and one optimisation step (:class:`Trainer`).

Losses per model (network pixels, ``XY`` layout as the networks see it: :mod:`firereg.transforms.coords`):

- ``voxelmorph``: :class:`firereg.pipelines.nn.losses.RegistrationLoss` = similarity inside the
  fixed field of view + ``lam`` * smoothness of the DDF (+ ``point_weight`` * the mean control-point
  distance, :func:`firereg.pipelines.nn.losses.ddf_point_error`, when set);
- ``affine``: ``affine_supervision="points"`` → :func:`firereg.pipelines.nn.losses.affine_point_loss`
  against the least-squares affine of the (augmented) control points
  (:func:`firereg.pipelines.nn.losses.fit_affine`), at a grid of points inside the image, divided by
  the network size; ``"similarity"`` → image similarity of the affinely warped image;
- ``cascade``: ``RegistrationLoss`` on the final warped image (smoothness of the
  deformable stage's DDF only, so the affine stage is not penalised for rotating or
  scaling) + the affine stage's loss as for ``affine``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from firereg.pipelines.checkpoints import CheckpointError, checkpoint_state
from firereg.pipelines.nn.fields import affine_to_ddf
from firereg.pipelines.nn.losses import (
    RegistrationLoss,
    affine_point_loss,
    ddf_point_error,
    fit_affine,
    match_cross_entropy,
)
from firereg.pipelines.nn.networks import CascadeNet, MatchingAffineNet, build_network
from firereg.pipelines.training.config import TrainConfig
from firereg.pipelines.training.sampling import grid_points
from firereg.transforms.pair_transforms import (
    FIXED,
    FIXED_MASK,
    FIXED_POINTS,
    MOVING,
    MOVING_POINTS,
)

__all__ = ["AFFINE_POINT_WEIGHT", "Trainer"]

#: weight of the point terms (pixels / network size) of a matching affine stage against its match cross-entropy
AFFINE_POINT_WEIGHT = 10.0


class _NetworkLoss(nn.Module):
    """The network and its training loss as one module, so that ``DistributedDataParallel``
    sees every forward pass (the cascade's loss calls the stages' methods, not ``forward``)."""

    def __init__(self, net: nn.Module, loss: Callable[[nn.Module, Mapping], tuple[torch.Tensor, dict[str, float]]]) -> None:
        super().__init__()
        self.net = net
        self._loss = loss

    def forward(self, batch: Mapping) -> tuple[torch.Tensor, dict[str, float]]:
        return self._loss(self.net, batch)


class Trainer:
    """The network, optimiser and loss of one run, and one optimisation step.

    Args:
        config: the run's settings (validated here).
        device: where the network and loss run (default: the CPU); batches are moved there.
    """

    def __init__(self, config: TrainConfig, device: str | torch.device | None = None) -> None:
        config.validate()
        self.config = config
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.net: nn.Module = build_network(config.model, **config.net_kwargs()).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.registration_loss = RegistrationLoss(config.loss_config()).to(self.device)
        #: what a step calls: the network and loss, wrapped by :meth:`distribute`
        self.model: nn.Module = _NetworkLoss(self.net, self._loss)
        self.world_size = 1
        #: cascade: train only the affine stage (set by the training loop during the warm-up)
        self.affine_only = False

    def distribute(self) -> None:
        """Wrap the network and loss in ``DistributedDataParallel`` (an initialised process
        group is needed): gradients are averaged over ranks, rank 0's weights are broadcast."""
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # the affine warm-up leaves VoxelMorph without gradients for a while
        unused = self.config.model == "cascade" and self.config.affine_warmup > 0
        self.model = DistributedDataParallel(_NetworkLoss(self.net, self._loss), device_ids=device_ids,
                                             find_unused_parameters=unused)
        self.world_size = dist.get_world_size()

    def to_device(self, batch: Mapping) -> dict:
        """The batch with its tensors on the trainer's device."""
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # -- loss --------------------------------------------------------------------------
    def _affine_target(self, batch: Mapping) -> torch.Tensor:
        if "affine" in batch:  # patches carry their affine
            return torch.as_tensor(batch["affine"], dtype=torch.float32, device=self.device)
        return fit_affine(batch[FIXED_POINTS], batch[MOVING_POINTS]).float()

    def _affine_stage_loss(
        self,
        net: nn.Module,
        affine_net: nn.Module,
        moving: torch.Tensor,
        fixed: torch.Tensor,
        mask: torch.Tensor | None,
        batch: Mapping,
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The affine stage's matrix (B, 2, 3), its O(1) loss, and the logged value (pixels for points).

        With point supervision a :class:`MatchingAffineNet` is trained on its final and
        coarse affines plus the cross-entropy of its matches (weight 1; the point terms are
        scaled by ``AFFINE_POINT_WEIGHT`` / network size so both matter from the first step).
        """
        if isinstance(affine_net, MatchingAffineNet):
            estimate = affine_net.estimate(moving, fixed)
            matrix = estimate.matrix
        else:
            estimate, matrix = None, affine_net.predict_affine(moving, fixed)
        if self.config.affine_supervision == "points":
            network_size = fixed.shape[2]
            target = self._affine_target(batch)
            grid = grid_points(network_size, matrix.shape[0]).to(matrix.device)
            pixels = affine_point_loss(matrix, target, grid)
            if estimate is None:
                return matrix, pixels / network_size, float(pixels.detach())
            coarse = affine_point_loss(estimate.coarse, target, grid)
            entropy = match_cross_entropy(estimate.log_probs, estimate.cells, target, estimate.fixed_valid,
                                          estimate.moving_valid, sigma=float(affine_net.stride))
            return matrix, entropy + AFFINE_POINT_WEIGHT * (pixels + coarse) / network_size, float(pixels.detach())
        aligned = net.warp(moving, affine_to_ddf(matrix, fixed.shape[2:]))
        sim = self.registration_loss.similarity(aligned, fixed, mask)
        return matrix, sim, float(sim.detach())

    def compute_loss(self, batch: Mapping) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of a collated batch, and its parts (floats; NaN = not used)."""
        return self._loss(self.net, self.to_device(batch))

    def _loss(self, net: nn.Module, batch: Mapping) -> tuple[torch.Tensor, dict[str, float]]:
        moving = batch[MOVING].float()
        fixed = batch[FIXED].float()
        mask = batch.get(FIXED_MASK)
        mask = mask.float() if isinstance(mask, torch.Tensor) else None
        parts = {"similarity": float("nan"), "smoothness": float("nan"), "affine_loss": float("nan")}
        model = self.config.model
        if model == "voxelmorph":
            warped, ddf = net(moving, fixed)
            total, reg = self.registration_loss(warped, fixed, ddf, mask)
            if self.config.point_weight > 0:  # logged only inside "loss" (the log's columns are fixed)
                total = total + self.config.point_weight * ddf_point_error(ddf, batch[FIXED_POINTS], batch[MOVING_POINTS])
            parts.update(reg)
        elif model == "affine":
            _, total, logged = self._affine_stage_loss(net, net, moving, fixed, mask, batch)
            if self.config.affine_supervision == "similarity":
                parts["similarity"] = logged
            else:
                parts["affine_loss"] = logged
        else:  # cascade: CascadeNet.forward, keeping the affine and the deformable DDF
            cascade: CascadeNet = net  # type: ignore[assignment]
            matrix, affine_total, logged = self._affine_stage_loss(cascade, cascade.affine, moving, fixed, mask, batch)
            parts["affine_loss"] = logged
            if self.affine_only:
                total = affine_total
            else:
                aligned = cascade.warp(moving, affine_to_ddf(matrix, moving.shape[2:]))
                u = cascade.deformable.predict_ddf(aligned, fixed)
                warped = cascade.warp(moving, cascade.compose(matrix, u))
                reg_total, reg = self.registration_loss(warped, fixed, u, mask)
                total = reg_total + affine_total
                parts.update(reg)
        parts["loss"] = float(total.detach())
        return total, parts

    def step(self, batch: Mapping) -> dict[str, float]:
        """One optimisation step on a collated batch; returns the loss parts (averaged over
        ranks in distributed training).

        Raises:
            RuntimeError: if the loss is not finite (names the pairs); in distributed
                training on every rank when it is not finite on one.
        """
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        total, parts = self.model(self.to_device(batch))
        parts = self._mean_over_ranks(parts)
        if not torch.isfinite(total) or not math.isfinite(parts["loss"]):
            raise RuntimeError(f"non-finite training loss {parts} on pairs {batch.get('name', '?')}")
        total.backward()
        self.optimizer.step()
        return parts

    def _mean_over_ranks(self, parts: dict[str, float]) -> dict[str, float]:
        if self.world_size == 1:
            return parts
        keys = sorted(parts)
        values = torch.tensor([parts[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        return {k: float(v) / self.world_size for k, v in zip(keys, values.tolist())}

    # -- state ---------------------------------------------------------------------------
    def state(self, data: Path | None = None, **training_state) -> dict:
        """A checkpoint dict (:func:`firereg.pipelines.checkpoints.checkpoint_state`) with the
        training state: config, optimiser, RNG states, ``data`` and ``training_state``."""
        config = self.config
        return checkpoint_state(
            self.net, config.model, config.net_kwargs(), config.size, config.channel,
            config=asdict(config),
            optimizer=self.optimizer.state_dict(),
            torch_rng=torch.get_rng_state(),
            numpy_rng=np.random.get_state(),
            python_rng=random.getstate(),
            data=str(data) if data is not None else None,
            **training_state,
        )

    def load_state(self, ckpt: Mapping) -> None:
        """Restore network, optimiser (with this config's learning rate) and RNG states.

        Raises:
            CheckpointError: naming the checkpoint if its weights or optimiser do not fit.
        """
        try:
            self.net.load_state_dict(ckpt["state_dict"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"checkpoint {ckpt.get('path', '?')} does not fit this run: {err}") from None
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr
        if "torch_rng" in ckpt:
            torch.set_rng_state(torch.as_tensor(ckpt["torch_rng"], dtype=torch.uint8))
        if "numpy_rng" in ckpt:
            np.random.set_state(ckpt["numpy_rng"])
        if "python_rng" in ckpt:
            random.setstate(ckpt["python_rng"])
