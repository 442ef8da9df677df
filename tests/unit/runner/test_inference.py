"""inference: results in dataset order, on one process and gathered from two (gloo)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

from trackcfg.runner.inference import multi_gpu_test, single_gpu_test
from trackcfg.runner.sampler import build_dataloader

N = 7  # not a multiple of the world size: the last rank's shard is padded


class Indexed(Dataset[torch.Tensor]):
    def __len__(self) -> int:
        return N

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(float(index))


class Echo(nn.Module):
    """One result per sample: the sample itself (its index)."""

    def test_step(self, batch: torch.Tensor) -> list[int]:
        assert not self.training  # evaluated in eval mode
        return [int(v) for v in batch]


def test_single_gpu_test_keeps_dataset_order_and_training_mode() -> None:
    model = Echo().train()
    loader = build_dataloader(Indexed(), 3, 0, seed=0, shuffle=False)
    assert single_gpu_test(model, loader) == list(range(N))
    assert model.training


def _rank(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        loader = build_dataloader(Indexed(), 2, 0, seed=0, shuffle=False)
        results = multi_gpu_test(Echo(), loader)
        Path(f"{out}.{rank}").write_text(",".join(map(str, results)))
    finally:
        dist.destroy_process_group()


def test_multi_gpu_test_gathers_every_rank_in_dataset_order(tmp_path: Path) -> None:
    out = str(tmp_path / "results")
    mp.spawn(_rank, args=(str(tmp_path / "init"), out), nprocs=2, join=True)
    expected = ",".join(map(str, range(N)))
    assert Path(f"{out}.0").read_text() == expected
    assert Path(f"{out}.1").read_text() == expected
