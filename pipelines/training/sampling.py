"""What a training epoch sees: seeded items, the seeded epoch order, batches.

Resuming is exact: the order of an epoch is ``torch.utils.data.DistributedSampler``'s
permutation (``torch.Generator().manual_seed(seed + epoch)``, padded and strided by rank),
and the augmentation of every item is seeded from ``(seed, epoch, item)``, so a resumed
run skips the batches of the epoch already done (:class:`EpochOrder` ``skip``) and then
sees the very batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from monai.utils import convert_to_tensor
from torch.utils.data import Dataset, DistributedSampler

from firereg.transforms.pair_transforms import FIXED_POINTS, MOVING_POINTS

__all__ = ["SeededItems", "EpochOrder", "collate_pairs", "grid_points"]


def _item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0])


class SeededItems(Dataset):
    """Wrap a MONAI dataset so the augmentation of item ``i`` in epoch ``e`` is seeded from
    ``(seed, e, i)`` — independent of which items were loaded before (exact resume).

    With ``repeats`` > 1 the epoch holds every item that many times (item ``i`` is
    ``dataset[i % len(dataset)]``, each with its own seed). Set :attr:`epoch` before each epoch.

    Args:
        dataset: the items; its ``transform`` (if it has ``set_random_state``) is reseeded per item.
        seed: the run's seed.
        repeats: times each item appears per epoch.
    """

    def __init__(self, dataset: Dataset, seed: int, repeats: int = 1) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.repeats = int(repeats)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset) * self.repeats

    def __getitem__(self, index: int):
        transform = getattr(self.dataset, "transform", None)
        if transform is not None and hasattr(transform, "set_random_state"):
            transform.set_random_state(seed=_item_seed(self.seed, self.epoch, index))
        return self.dataset[index % len(self.dataset)]


class EpochOrder(DistributedSampler):
    """The item order of one epoch for one rank, without its first ``skip`` items (those already trained on).

    ``torch.utils.data.DistributedSampler`` with ``shuffle=True``: the order is
    ``randperm(n)`` from a ``torch.Generator`` seeded with ``seed + epoch``; with
    ``world_size`` > 1 it is padded with its own first items to a multiple of
    ``world_size`` and rank ``rank`` takes the items at positions ``rank, rank + world_size, ...``.
    ``skip`` counts items of this rank's shard. The sampler lacks the skip (mid-epoch
    resume), hence this subclass.

    Args:
        n: items in the epoch.
        seed: the run's seed.
        epoch: the epoch (0-based).
        skip: items of the shard already done.
        rank: this process's rank.
        world_size: processes (1 without distributed training).

    Raises:
        ValueError: unless ``0 <= rank < world_size``.
    """

    def __init__(self, n: int, seed: int, epoch: int, skip: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank} and world_size {world_size}")
        super().__init__(range(int(n)), num_replicas=int(world_size), rank=int(rank), shuffle=True,
                         seed=int(seed), drop_last=False)
        self.set_epoch(int(epoch))
        self.n, self.skip = int(n), int(skip)
        self.world_size = self.num_replicas

    def order(self) -> list[int]:
        """The epoch's permutation of all ``n`` items (before padding, sharding and ``skip``)."""
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()

    def shard_size(self) -> int:
        """Items of one rank's shard (all items without distribution)."""
        return self.num_samples

    def shard(self) -> list[int]:
        """This rank's items of the epoch, in order (before ``skip``)."""
        return list(super().__iter__())

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.skip :])

    def __len__(self) -> int:
        return max(self.num_samples - self.skip, 0)


def _plain(value, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A MetaTensor, array or nested sequence as a plain tensor (no metadata)."""
    return convert_to_tensor(value, dtype=dtype, track_meta=False, wrap_sequence=True)


def collate_pairs(items: Sequence[Mapping]) -> dict:
    """Collate pair dictionaries into a batch of plain tensors.

    Images and masks (1, S, S) → (B, 1, S, S); control points (1, N, 2) (or (N, 2)) →
    (B, N_max, 2) float32, padded with NaN rows for pairs with fewer points
    (:func:`firereg.pipelines.nn.losses.fit_affine` ignores them); other tensors of one shape are
    stacked, anything else (names, paths) becomes a list. Layouts: :mod:`firereg.transforms.coords` (``XY``).

    Raises:
        ValueError: for an empty batch.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch: dict = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key in (FIXED_POINTS, MOVING_POINTS):
            pts = [_plain(v, torch.float32).reshape(-1, 2) for v in values]
            n = max(p.shape[0] for p in pts)
            padded = torch.full((len(pts), n, 2), float("nan"))
            for i, p in enumerate(pts):
                padded[i, : p.shape[0]] = p
            batch[key] = padded
        elif all(isinstance(v, (torch.Tensor, np.ndarray)) for v in values):
            tensors = [_plain(v) for v in values]
            if all(t.shape == tensors[0].shape for t in tensors):
                batch[key] = torch.stack(tensors).float() if tensors[0].is_floating_point() else torch.stack(tensors)
            else:
                batch[key] = tensors
        else:
            batch[key] = values
    return batch


def grid_points(size: int, batch: int = 1, n: int = 8, margin: float = 0.1) -> torch.Tensor:
    """(batch, n*n, 2) regular grid of pixel points inside a ``size`` x ``size`` image
    (from ``margin`` to ``1 - margin`` of the image), where the affine loss is evaluated.

    Points are in network pixels, ``XY`` order (:mod:`firereg.transforms.coords`).
    """
    axis = torch.linspace(margin * (size - 1), (1 - margin) * (size - 1), n)
    gx, gy = torch.meshgrid(axis, axis, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)
    return pts.unsqueeze(0).expand(batch, -1, -1).contiguous()
