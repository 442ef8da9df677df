"""StepDistributedDataParallel keeps the step protocol and reduces gradients exactly.

The exact-reduction tests run 3 gloo ranks (2 ranks cannot show an order effect:
``a + b == b + a``) and compare the gradients of DDP's first iteration (one bucket
of every parameter) with its second (buckets rebuilt, several): the layouts a
resumed job and its uninterrupted twin use at the same iteration.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from tests.unit.runner.toys import ToyNet
from trackcfg.runner.parallel import (
    ExactReductionState,
    StepDistributedDataParallel,
    exact_reduction_hook,
    unwrap_model,
)


@pytest.fixture
def process_group(tmp_path: Path) -> Iterator[None]:
    """A one-process gloo group (what torchrun would set up), torn down afterwards."""
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_unwrap_model_returns_the_model_inside_data_parallel() -> None:
    model = ToyNet()
    assert unwrap_model(nn.DataParallel(model)) is model
    assert unwrap_model(model) is model


def test_step_ddp_runs_train_step_and_syncs_gradients(process_group: None) -> None:
    torch.manual_seed(0)
    model = ToyNet()
    wrapped = StepDistributedDataParallel(model)
    batch = (torch.randn(4, 4), torch.tensor([0, 1, 0, 1]))
    outputs = wrapped.train_step(batch, None)
    assert isinstance(outputs, dict)
    outputs["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    assert unwrap_model(wrapped) is model
    assert list(unwrap_model(wrapped).state_dict()) == ["fc.weight", "fc.bias"]


WORLD = 3


class Mlp(nn.Module):
    """Several parameters of different sizes: several buckets once DDP rebuilds them."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Linear(64, 8))

    def train_step(self, x: torch.Tensor, optimizer: object = None) -> dict[str, torch.Tensor]:
        return {"loss": (self.net(x) ** 2).sum()}


def _two_iterations(
    model: nn.Module, wrapped: nn.Module, x: torch.Tensor
) -> list[list[torch.Tensor]]:
    """The gradients of two identical backward passes (DDP's initial, then rebuilt, buckets)."""
    grads = []
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        wrapped.train_step(x)["loss"].backward()  # type: ignore[operator]
        grads.append([p.grad.clone() for p in model.parameters()])  # type: ignore[union-attr]
    return grads


def _reduce_rank(rank: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        # Inputs of very different magnitudes per rank: the sum order shows in the bits.
        x = torch.randn(4, 16, generator=torch.Generator().manual_seed(rank)) * 10.0**rank
        torch.manual_seed(0)
        local = Mlp()
        local.train_step(x)["loss"].backward()
        results: dict[str, object] = {"local": [p.grad for p in local.parameters()]}
        # bucket_cap_mb: a 64x64 weight (16 KB) per bucket once rebuilt.
        for name, exact in (("exact", True), ("plain", False)):
            torch.manual_seed(0)
            model = Mlp()
            wrapped = StepDistributedDataParallel(model, exact_reduction=exact, bucket_cap_mb=0.01)
            assert wrapped.exact_reduction is exact
            results[name] = _two_iterations(model, wrapped, x)
        torch.manual_seed(0)
        model = Mlp()
        wrapped = StepDistributedDataParallel(model, exact_reduction=False, bucket_cap_mb=0.01)
        group = dist.group.WORLD
        assert group is not None
        # The 1024- and 4096-element weights all-reduced one by one, the rest gathered.
        state = ExactReductionState(group, WORLD, allreduce_min_numel=1000)
        wrapped.register_comm_hook(state, exact_reduction_hook)
        results["mixed"] = _two_iterations(model, wrapped, x)
        torch.save(results, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def reduced(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, list[torch.Tensor]]]:
    """Per rank: local gradients, and both iterations' reduced ones (exact, plain, mixed)."""
    tmp = tmp_path_factory.mktemp("reduce")
    out = str(tmp / "grads")
    mp.spawn(_reduce_rank, args=(str(tmp / "init"), out), nprocs=WORLD, join=True)
    return [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(WORLD)]


def assert_bitwise_equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.xdist_group("exact_reduction")  # one spawn of 3 ranks for both tests
def test_exact_reduction_is_the_rank_ordered_mean_whatever_the_bucket_layout(
    reduced: list[dict[str, list[torch.Tensor]]],
) -> None:
    local = [r["local"] for r in reduced]
    expected = [((g0 + g1) + g2) / WORLD for g0, g1, g2 in zip(*local, strict=True)]
    for rank in range(WORLD):
        first, second = reduced[rank]["exact"]
        assert_bitwise_equal(first, expected)
        assert_bitwise_equal(second, expected)
        # Large gradients all-reduced on their own: the same bits in both layouts too,
        # on every rank; the small ones are still the rank-ordered mean.
        first, second = reduced[rank]["mixed"]
        assert_bitwise_equal(first, second)
        assert_bitwise_equal(first, reduced[0]["mixed"][0])
        for got, want in zip(first, expected, strict=True):
            if got.numel() < 1000:
                assert torch.equal(got, want)
            else:
                torch.testing.assert_close(got, want)


@pytest.mark.xdist_group("exact_reduction")
def test_plain_ddp_reduction_depends_on_the_bucket_layout(
    reduced: list[dict[str, list[torch.Tensor]]],
) -> None:
    """Why exact reduction exists: DDP's own all-reduce sums in a layout-dependent order."""
    first, second = reduced[0]["plain"]
    assert not all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    expected = [sum(g) / WORLD for g in zip(*(r["local"] for r in reduced), strict=True)]
    for got, want in zip(second, expected, strict=True):
        torch.testing.assert_close(got, want)  # still the mean, up to rounding


def test_exact_reduction_is_off_in_a_one_process_group(process_group: None) -> None:
    assert not StepDistributedDataParallel(ToyNet()).exact_reduction
