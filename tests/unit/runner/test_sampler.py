"""ResumableBatchSampler / SeededDataset: order and augmentation follow (seed, epoch, batch)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.runner.toys import ToyData
from trackcfg.runner.sampler import BatchKey, ResumableBatchSampler, SeededDataset, build_dataloader


def indices(sampler: ResumableBatchSampler) -> list[tuple[int, ...]]:
    return [key.indices for key in sampler]


def test_order_depends_only_on_seed_and_epoch() -> None:
    a = ResumableBatchSampler(20, 4, seed=1)
    b = ResumableBatchSampler(20, 4, seed=1)
    a.set_epoch(3)
    list(b)  # passes over other epochs do not matter
    b.set_epoch(3)
    assert indices(a) == indices(b)
    b.set_epoch(4)
    assert indices(a) != indices(b)


@pytest.mark.parametrize(
    ("n", "batch", "drop_last", "lengths"), [(10, 4, False, [4, 4, 2]), (10, 4, True, [4, 4])]
)
def test_batches_cover_the_epoch(n: int, batch: int, drop_last: bool, lengths: list[int]) -> None:
    sampler = ResumableBatchSampler(n, batch, seed=0, drop_last=drop_last)
    batches = indices(sampler)
    assert [len(b) for b in batches] == lengths == [len(b) for b in batches[: len(sampler)]]
    if not drop_last:
        assert sorted(i for b in batches for i in b) == list(range(n))


@pytest.mark.parametrize("start", [0, 1, 3, 5])
def test_set_start_yields_the_remaining_batches_once(start: int) -> None:
    sampler = ResumableBatchSampler(20, 4, seed=2)
    full = list(sampler)
    sampler.set_start(start)
    assert list(sampler) == full[start:]
    assert list(sampler) == full  # one-shot: the next pass starts at 0 again


def test_set_start_rejects_positions_past_the_epoch() -> None:
    with pytest.raises(ValueError, match=r"start batch must be in 0\.\.5"):
        ResumableBatchSampler(20, 4, seed=0).set_start(6)


def test_ranks_get_disjoint_shards_of_one_permutation() -> None:
    shards = [indices(ResumableBatchSampler(10, 2, seed=0, rank=r, world_size=2)) for r in range(2)]
    flat = [set(i for b in shard for i in b) for shard in shards]
    assert flat[0] | flat[1] == set(range(10)) and not flat[0] & flat[1]


def test_batch_seeds_differ_per_batch_epoch_and_rank() -> None:
    seeds = set()
    for epoch in range(2):
        for rank in range(2):
            sampler = ResumableBatchSampler(8, 2, seed=0, rank=rank, world_size=2)
            sampler.set_epoch(epoch)
            seeds.update(key.seed for key in sampler)
    assert len(seeds) == 2 * 2 * 2


def test_seeded_fetch_is_repeatable_and_leaves_caller_rngs_alone() -> None:
    dataset = SeededDataset(ToyData())
    key = BatchKey(indices=(0, 1), seed=42)
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    expected_next = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    first = dataset.__getitems__(key)
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected_next
    second = dataset.__getitems__(key)
    for (xa, _), (xb, _) in zip(first, second, strict=True):  # type: ignore[misc]
        assert torch.equal(xa, xb)


def test_batches_do_not_depend_on_num_workers() -> None:
    def epoch_batches(workers: int) -> list[torch.Tensor]:
        loader = build_dataloader(ToyData(16), 4, workers, seed=5)
        out = []
        for epoch in range(2):
            loader.batch_sampler.set_epoch(epoch)  # type: ignore[union-attr]
            out.extend(x for x, _ in loader)
        return out

    for a, b in zip(epoch_batches(0), epoch_batches(2), strict=True):
        assert torch.equal(a, b)


def test_loader_iteration_does_not_draw_from_the_global_rng() -> None:
    loader = build_dataloader(ToyData(8), 4, 0, seed=5)
    torch.manual_seed(1)
    expected = torch.rand(1)
    torch.manual_seed(1)
    list(loader)
    assert torch.equal(torch.rand(1), expected)


@given(
    n=st.integers(1, 60),
    batch=st.integers(1, 9),
    world_size=st.integers(1, 4),
    epoch=st.integers(0, 5),
    shuffle=st.booleans(),
    data=st.data(),
)
def test_any_start_yields_the_same_suffix_and_ranks_cover_the_data(
    n: int, batch: int, world_size: int, epoch: int, shuffle: bool, data: st.DataObject
) -> None:
    samplers = [
        ResumableBatchSampler(n, batch, seed=9, shuffle=shuffle, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    full = [list(s) for s in samplers]
    assert len({len(batches) for batches in full}) == 1  # every rank runs as many batches
    covered = {i for batches in full for key in batches for i in key.indices}
    assert covered == set(range(n))
    start = data.draw(st.integers(0, len(samplers[0])))
    samplers[0].set_start(start)
    assert list(samplers[0]) == full[0][start:]
