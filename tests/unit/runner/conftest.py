"""Fixtures for runner tests: runners around the toy model, resumable toy loaders."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.unit.runner.toys import RunnerFactory, ToyData, ToyNet
from trackcfg.runner.base_runner import BaseRunner
from trackcfg.runner.sampler import build_dataloader


@pytest.fixture
def make_runner(tmp_path: Path) -> RunnerFactory:
    """Build a runner class around a fresh ToyNet (seeded) and SGD, in tmp_path/work."""

    def make(runner_cls: type[BaseRunner], *, seed: int = 0, **kwargs: object) -> BaseRunner:
        torch.manual_seed(seed)
        model = ToyNet()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        return runner_cls(
            model,
            optimizer=optimizer,
            work_dir=tmp_path / "work",
            logger=logging.getLogger("trackcfg.test"),
            **kwargs,  # type: ignore[arg-type]
        )

    return make


@pytest.fixture
def toy_loader() -> Callable[..., torch.utils.data.DataLoader[object]]:
    """A resumable loader over ToyData (batch 4 -> 3 batches per epoch)."""

    def make(n: int = 12, workers: int = 0, seed: int = 3) -> torch.utils.data.DataLoader[object]:
        return build_dataloader(ToyData(n), 4, workers, seed=seed)

    return make
