"""Tests of the seeded epoch order and the seeded items (firereg.pipelines.training.sampling).

Exact resume depends on the order: the literals below are the orders every run since the
first one has used (``torch.randperm`` from ``torch.Generator().manual_seed(seed + epoch)``).
"""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from torch.utils.data import DistributedSampler

from firereg.pipelines.training import EpochOrder, SeededItems, collate_pairs


def test_epoch_order_is_reproducible_and_skips_done_batches():
    full = list(EpochOrder(7, seed=3, epoch=2))
    assert sorted(full) == list(range(7))
    assert list(EpochOrder(7, seed=3, epoch=2, skip=4)) == full[4:]
    assert list(EpochOrder(7, seed=3, epoch=3)) != full


def test_epoch_order_pins_the_seeded_permutation():
    # seed + epoch = 5: the same order whatever the split between the two
    assert list(EpochOrder(7, seed=3, epoch=2)) == [1, 0, 4, 2, 6, 5, 3]
    assert list(EpochOrder(7, seed=5, epoch=0)) == [1, 0, 4, 2, 6, 5, 3]
    assert EpochOrder(7, seed=3, epoch=2).order() == [1, 0, 4, 2, 6, 5, 3]
    # 5 items on 3 ranks: padded with the first item to 6, rank r takes positions r, r + 3
    assert [list(EpochOrder(5, seed=1, epoch=0, rank=r, world_size=3)) for r in range(3)] == [[0, 3], [4, 1], [2, 0]]


@pytest.mark.parametrize("n, world_size", [(7, 1), (7, 2), (5, 3), (2, 4), (0, 2)])
def test_epoch_order_same_seed_same_order_skip_is_a_suffix_and_ranks_partition(n, world_size):
    seed, epoch = 11, 4
    shards = [EpochOrder(n, seed, epoch, rank=r, world_size=world_size) for r in range(world_size)]
    for rank, shard in enumerate(shards):
        again = EpochOrder(n, seed, epoch, rank=rank, world_size=world_size)
        assert list(shard) == list(again)  # same seed and epoch: same order
        assert len(shard) == shard.shard_size() == -(-n // world_size)
        for skip in range(len(shard) + 2):  # mid-epoch resume: the rest of the same order
            rest = EpochOrder(n, seed, epoch, skip=skip, rank=rank, world_size=world_size)
            assert list(rest) == list(shard)[skip:] and len(rest) == max(len(shard) - skip, 0)
        # exactly what torch's DistributedSampler gives (the class it is built on)
        sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        assert list(shard) == list(sampler)
    # the ranks partition the padded order: interleaving the shards gives it back
    order = EpochOrder(n, seed, epoch).order()
    total = len(shards[0]) * world_size
    padded = (order * (total // max(n, 1) + 1))[:total]
    interleaved = [shards[i % world_size].shard()[i // world_size] for i in range(total)]
    assert interleaved == padded
    assert sorted(set(interleaved)) == list(range(n))


def test_epoch_order_refuses_a_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        EpochOrder(4, 0, 0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        EpochOrder(4, 0, 0, rank=0, world_size=0)


class _Noise(torch.utils.data.Dataset):
    """Items drawn from a seeded random state, like a MONAI dataset's random transform."""

    def __init__(self) -> None:
        self.transform = self
        self.state = None

    def set_random_state(self, seed: int) -> None:
        self.state = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> float:
        return float(torch.rand(1, generator=self.state))


def test_seeded_items_depend_on_seed_epoch_and_index_only():
    items = SeededItems(_Noise(), seed=2, repeats=2)
    assert len(items) == 6
    forward = [items[i] for i in range(6)]
    backward = [items[i] for i in reversed(range(6))][::-1]
    assert forward == backward  # independent of what was loaded before
    assert len(set(forward)) == 6  # every repeat augmented anew
    items.epoch = 1
    assert [items[i] for i in range(6)] != forward


def test_collate_unwraps_meta_tensors():
    items = [{"fixed": MetaTensor(torch.rand(1, 8, 8)), "fixed_points": MetaTensor(torch.rand(1, 3, 2).double())}
             for _ in range(2)]
    batch = collate_pairs(items)
    assert type(batch["fixed"]) is torch.Tensor and batch["fixed"].shape == (2, 1, 8, 8)
    assert type(batch["fixed_points"]) is torch.Tensor and batch["fixed_points"].dtype == torch.float32
    torch.testing.assert_close(batch["fixed_points"][1], items[1]["fixed_points"][0].float().as_tensor())
    with pytest.raises(ValueError, match="empty"):
        collate_pairs([])
