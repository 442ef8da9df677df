"""Toys for runner tests: a tiny model with the mmcv step protocol, data, recording hooks."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from trackcfg.runner.base_runner import BaseRunner
from trackcfg.runner.hooks.hook import Hook


class ToyData(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """12 fixed samples with augmentation from Python, NumPy and torch RNGs."""

    def __init__(self, n: int = 12) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=generator)
        self.y = (self.x[:, 0] > 0).long()
        self.fetched: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.fetched.append(index)
        noise = 0.1 * torch.randn(4) + float(np.random.normal()) * 0.01 + random.random() * 0.01
        return self.x[index] + noise, self.y[index]


class ToyNet(nn.Module):
    """Linear + dropout with mmcv's train_step/val_step."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.drop = nn.Dropout(0.5)

    def train_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], optimizer: object
    ) -> dict[str, object]:
        x, y = batch
        loss = nn.functional.cross_entropy(self.fc(self.drop(x)), y)
        return {"loss": loss, "log_vars": {"loss": loss.item()}, "num_samples": len(x)}

    def val_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], optimizer: object
    ) -> dict[str, object]:
        return self.train_step(batch, optimizer)


class StepHook(Hook):
    """Minimal optimizer hook: backward + step after every training iteration."""

    priority = "ABOVE_NORMAL"

    def after_train_iter(self, runner: BaseRunner) -> None:
        optimizer = runner.optimizer
        assert isinstance(optimizer, torch.optim.Optimizer)
        optimizer.zero_grad()
        loss = runner.outputs["loss"]
        assert isinstance(loss, torch.Tensor)
        loss.backward()
        optimizer.step()


class RecordingHook(Hook):
    """Records (stage, mode, epoch, iter, inner_iter) at every specific stage."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, int, int, int]] = []

    def _record(self, stage: str, runner: BaseRunner) -> None:
        self.events.append((stage, runner.mode, runner.epoch, runner.iter, runner.inner_iter))

    def before_run(self, runner: BaseRunner) -> None:
        self._record("before_run", runner)

    def after_run(self, runner: BaseRunner) -> None:
        self._record("after_run", runner)

    def before_train_epoch(self, runner: BaseRunner) -> None:
        self._record("before_train_epoch", runner)

    def after_train_epoch(self, runner: BaseRunner) -> None:
        self._record("after_train_epoch", runner)

    def before_val_epoch(self, runner: BaseRunner) -> None:
        self._record("before_val_epoch", runner)

    def after_val_epoch(self, runner: BaseRunner) -> None:
        self._record("after_val_epoch", runner)

    def before_train_iter(self, runner: BaseRunner) -> None:
        self._record("before_train_iter", runner)

    def after_train_iter(self, runner: BaseRunner) -> None:
        self._record("after_train_iter", runner)

    def before_val_iter(self, runner: BaseRunner) -> None:
        self._record("before_val_iter", runner)

    def after_val_iter(self, runner: BaseRunner) -> None:
        self._record("after_val_iter", runner)


class CheckpointEveryIter(Hook):
    """Requests a checkpoint after every training iteration."""

    def after_train_iter(self, runner: BaseRunner) -> None:
        assert runner.work_dir is not None
        runner.save_checkpoint(runner.work_dir)


RunnerFactory = Callable[..., BaseRunner]
