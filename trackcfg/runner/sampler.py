"""Data order and augmentation randomness as a function of (seed, epoch, position).

Two pieces make a data loader resumable at any batch and independent of
``num_workers``:

* `ResumableBatchSampler` yields `BatchKey`s. The order of epoch ``e`` is a
  permutation drawn from a generator seeded with (seed, e) only, so batch
  ``b`` of epoch ``e`` is the same whatever happened before; `set_start`
  makes the next pass begin at batch ``b`` by slicing the index list, without
  loading the skipped samples.
* `SeededDataset` wraps a map-style dataset. For each `BatchKey` it seeds
  Python's ``random``, NumPy's global RNG and torch's CPU RNG from
  (seed, epoch, rank, batch index) *inside whichever process fetches the
  batch* (the main process when ``num_workers=0``, a worker otherwise), calls
  the dataset's ``__getitem__`` for each index, then restores the RNGs it
  found. Augmentation randomness therefore follows the batch, not the worker,
  and the main process's RNGs (dropout, ...) are never disturbed.

`build_dataloader` assembles them into a `torch.utils.data.DataLoader` with
its own ``generator`` (otherwise creating a loader iterator draws from torch's
global RNG — once per epoch without persistent workers, once per run with
them — which would make the model's dropout depend on ``num_workers``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import xxhash
from torch.utils.data import DataLoader, Dataset, Sampler

from trackcfg.runner.dist import get_dist_info

__all__ = [
    "BatchKey",
    "ResumableBatchSampler",
    "SeededDataset",
    "build_dataloader",
    "derive_seed",
    "iter_from",
    "resumable_batch_sampler",
]


def derive_seed(*parts: int) -> int:
    """A 64-bit seed that depends on every part (xxh3-64 of their decimal form).

    Stable across processes, machines and Python builds (unlike ``hash()``).
    """
    text = ":".join(str(int(p)) for p in parts).encode()
    return xxhash.xxh3_64_intdigest(text)


@dataclass(frozen=True, slots=True)
class BatchKey:
    """One batch to fetch: dataset indices plus the seed its augmentation uses."""

    indices: tuple[int, ...]
    seed: int


class ResumableBatchSampler(Sampler[BatchKey]):
    """Deterministic batch sampler that can start any pass at a given batch.

    The order of an epoch depends only on (seed, epoch); with several ranks each
    takes an interleaved shard of the same permutation (padded by wrapping, like
    ``DistributedSampler``), so the data position is one number for every rank.

    Args:
        dataset_len: Number of samples in the dataset.
        batch_size: Samples per batch.
        seed: Base seed of the order and of the per-batch augmentation seeds.
        shuffle: Permute the samples each epoch (else dataset order).
        drop_last: Drop the last incomplete batch.
        rank: This process's rank (default: from torch.distributed).
        world_size: Number of ranks (default: from torch.distributed).

    Example:
        >>> s = ResumableBatchSampler(10, 4, seed=0, shuffle=False)
        >>> [k.indices for k in s]
        [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)]
        >>> s.set_start(2)
        >>> [k.indices for k in s]
        [(8, 9)]
    """

    def __init__(
        self,
        dataset_len: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        dist_rank, dist_world = get_dist_info()
        self.dataset_len = dataset_len
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = dist_rank if rank is None else rank
        self.world_size = dist_world if world_size is None else world_size
        self.epoch = 0
        self._start = 0
        self._per_rank = -(-dataset_len // self.world_size)  # ceil

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next pass yields (mmcv/torch name)."""
        self.epoch = epoch

    def set_start(self, batch: int) -> None:
        """Make the next pass (only) begin at batch index ``batch`` of the epoch."""
        if not 0 <= batch <= len(self):
            raise ValueError(f"start batch must be in 0..{len(self)}, got {batch}")
        self._start = batch

    def __len__(self) -> int:
        if self.drop_last:
            return self._per_rank // self.batch_size
        return -(-self._per_rank // self.batch_size)

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(derive_seed(self.seed, self.epoch))
            order = torch.randperm(self.dataset_len, generator=generator).tolist()
        else:
            order = list(range(self.dataset_len))
        total = self._per_rank * self.world_size
        if total > len(order) and order:  # pad so every rank gets the same count
            order += (order * (total // len(order) + 1))[: total - len(order)]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[BatchKey]:
        start, self._start = self._start, 0  # one-shot: later passes start at 0
        indices = self._indices()
        for batch in range(start, len(self)):
            chunk = indices[batch * self.batch_size : (batch + 1) * self.batch_size]
            seed = derive_seed(self.seed, self.epoch, self.rank, batch)
            yield BatchKey(indices=tuple(chunk), seed=seed)


class SeededDataset(Dataset[object]):
    """Fetches a `BatchKey`'s samples with every RNG seeded from the key's seed.

    Args:
        dataset: Any map-style dataset (``__getitem__`` + ``__len__``).
    """

    def __init__(self, dataset: Dataset[object]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> object:
        return self.dataset[index]

    def __getitems__(self, key: BatchKey) -> list[object]:
        # Called by DataLoader's fetcher with whatever the batch sampler yielded.
        py_state = random.getstate()
        np_state = np.random.get_state()
        torch_state = torch.get_rng_state()
        try:
            seed = key.seed
            random.seed(seed)
            np.random.seed([seed & 0xFFFFFFFF, seed >> 32])
            torch.manual_seed(seed)
            return [self.dataset[i] for i in key.indices]
        finally:
            # Leave the fetching process's RNGs as they were: with num_workers=0
            # that process is the trainer, whose dropout must not see this fetch.
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_rng_state(torch_state)


def resumable_batch_sampler(loader: object) -> ResumableBatchSampler | None:
    """The loader's `ResumableBatchSampler`, or None if it has none."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    return batch_sampler if isinstance(batch_sampler, ResumableBatchSampler) else None


def iter_from(data_loader: Iterable[object], epoch: int, start: int) -> Iterator[object]:
    """An iterator over pass ``epoch`` of ``data_loader``, from its batch ``start`` on.

    With a `ResumableBatchSampler` the first ``start`` batches are skipped by index
    (nothing is loaded). Any other loader gets ``sampler.set_epoch(epoch)`` if its
    sampler has one, and the skipped batches are fetched and dropped (mmengine's way;
    `resumable_batch_sampler` tells the two apart).
    """
    sampler = resumable_batch_sampler(data_loader)
    if sampler is not None:
        sampler.set_epoch(epoch)
        sampler.set_start(start)
        return iter(data_loader)
    set_epoch = getattr(getattr(data_loader, "sampler", None), "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)
    iterator = iter(data_loader)
    for _ in range(start):
        next(iterator)
    return iterator


def build_dataloader(
    dataset: Dataset[object],
    samples_per_gpu: int,
    workers_per_gpu: int,
    *,
    seed: int,
    shuffle: bool = True,
    drop_last: bool = False,
    collate_fn: Callable[[list[object]], object] | None = None,
    persistent_workers: bool = True,
) -> DataLoader[object]:
    """A DataLoader whose batches are a function of (seed, epoch, batch index) only.

    Args:
        dataset: Map-style dataset; its ``__getitem__`` may use Python, NumPy and torch RNGs.
        samples_per_gpu: Batch size per rank (mmcv's name).
        workers_per_gpu: DataLoader worker processes (0: fetch in the main process).
        seed: Base seed of the order and the augmentation.
        shuffle: Shuffle every epoch.
        drop_last: Drop the last incomplete batch.
        collate_fn: Batch collation (torch's default collate when None).
        persistent_workers: Keep workers alive across epochs (when there are any).
    """
    batch_sampler = ResumableBatchSampler(
        len(dataset),  # type: ignore[arg-type]
        samples_per_gpu,
        seed=seed,
        shuffle=shuffle,
        drop_last=drop_last,
    )
    generator = torch.Generator()
    generator.manual_seed(derive_seed(seed, 0x6C6F61646572))  # "loader"
    return DataLoader(
        SeededDataset(dataset),
        batch_sampler=batch_sampler,  # type: ignore[arg-type]
        num_workers=workers_per_gpu,
        collate_fn=collate_fn,
        generator=generator,
        persistent_workers=persistent_workers and workers_per_gpu > 0,
    )
