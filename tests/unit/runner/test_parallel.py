"""StepDistributedDataParallel keeps the step protocol; unwrap_model finds the user's model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from tests.unit.runner.toys import ToyNet
from trackcfg.runner.parallel import StepDistributedDataParallel, unwrap_model


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
