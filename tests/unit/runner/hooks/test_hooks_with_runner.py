"""The built-in hooks inside the real EpochBasedRunner / IterBasedRunner, built from config."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trackcfg.runner.base_runner import BaseRunner
from trackcfg.runner.epoch_based_runner import EpochBasedRunner
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.iter_based_runner import IterBasedRunner


class Net(nn.Module):
    """A linear regressor with mmcv's train_step; deterministic (no dropout, no shuffling)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)

    def train_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], optimizer: object
    ) -> dict[str, object]:
        x, y = batch
        loss = nn.functional.mse_loss(self.fc(x).squeeze(1), y) * 10
        return {"loss": loss, "log_vars": {"loss": loss.item()}, "num_samples": len(x)}


class LrProbe(Hook):
    """Records the LR each training iteration ran with."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def after_train_iter(self, runner: BaseRunner) -> None:
        lrs = runner.current_lr()
        assert isinstance(lrs, list)
        self.lrs.append(lrs[0])


def loader(batches: int) -> DataLoader[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batches * 2, 4, generator=generator)
    y = x.sum(1) + 0.5
    return DataLoader(TensorDataset(x, y), batch_size=2, shuffle=False)


def make(
    runner_cls: type[BaseRunner], work_dir: Path, by_epoch: bool, **configs: object
) -> tuple[BaseRunner, LrProbe]:
    torch.manual_seed(0)
    model = Net()
    runner = runner_cls(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        work_dir=work_dir,
        logger=logging.getLogger("trackcfg.test"),
    )
    log_interval = configs.pop("log_interval", 2)
    configs.setdefault("lr_config", None)  # mmcv: a required argument
    runner.register_training_hooks(
        log_config={
            "interval": log_interval,
            "hooks": [{"type": "TextLoggerHook", "by_epoch": by_epoch, "progress": False}],
        },
        **configs,  # type: ignore[arg-type]
    )
    probe = LrProbe()
    runner.register_hook(probe)
    return runner, probe


def records(work_dir: Path) -> list[dict[str, object]]:
    """Training records of the JSON log, without timings (they differ run to run)."""
    (path,) = work_dir.glob("*.log.json")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [
        {k: v for k, v in rec.items() if k not in ("time", "data_time", "memory")}
        for rec in lines
        if rec.get("mode") == "train"
    ]


def test_epoch_runner_with_mmcv_training_config(tmp_path: Path) -> None:
    work = tmp_path / "work"
    runner, probe = make(
        EpochBasedRunner,
        work,
        by_epoch=True,
        lr_config={
            "policy": "step",
            "step": [1],
            "warmup": "linear",
            "warmup_iters": 2,
            "warmup_ratio": 0.1,
        },
        optimizer_config={"grad_clip": {"max_norm": 1.0, "norm_type": 2}},
        checkpoint_config={"interval": 1, "max_keep_ckpts": 1},
    )
    runner.run([loader(4)], [("train", 1)], max_epochs=2)
    expected_lrs = [0.01, 0.055, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01]
    assert [round(lr, 12) for lr in probe.lrs] == expected_lrs
    assert sorted(p.name for p in work.glob("*.pth")) == ["epoch_2.pth", "latest.pth"]
    logged = records(work)
    assert [(r["epoch"], r["iter"], r["lr"]) for r in logged] == [
        (1, 2, 0.055),
        (1, 4, 0.1),
        (2, 2, 0.01),
        (2, 4, 0.01),
    ]
    assert all(set(r) == {"mode", "epoch", "iter", "lr", "loss", "grad_norm"} for r in logged)


def test_iter_runner_with_iteration_based_hooks(tmp_path: Path) -> None:
    work = tmp_path / "work"
    runner, probe = make(
        IterBasedRunner,
        work,
        by_epoch=False,
        log_interval=3,
        lr_config={"policy": "CosineAnnealing", "min_lr": 0.0, "by_epoch": False},
        optimizer_config={},
        checkpoint_config={"interval": 3, "by_epoch": False, "max_keep_ckpts": 2},
    )
    runner.run([loader(4)], [("train", 1)], max_iters=7)
    expected = [0.5 * 0.1 * (math.cos(math.pi * i / 7) + 1) for i in range(7)]
    assert [round(a, 12) for a in probe.lrs] == [round(b, 12) for b in expected]
    assert sorted(p.name for p in work.glob("*.pth")) == ["iter_6.pth", "iter_7.pth", "latest.pth"]
    assert [r["iter"] for r in records(work)] == [3, 6]


RESUME_CASES = [
    pytest.param(
        EpochBasedRunner,
        {
            "lr_config": {"policy": "step", "step": [1]},
            "optimizer_config": {"grad_clip": {"max_norm": 1.0}},
            "checkpoint_config": {"interval": 3, "by_epoch": False},
        },
        "iter_3.pth",
        {"max_epochs": 2},
        # after 3 of 4 iterations of epoch 1: the next log averages iterations 3 and 4
        [(1, 4), (2, 2), (2, 4)],
        id="epoch runner, mid-epoch: averages span the resume",
    ),
    pytest.param(
        IterBasedRunner,
        {
            "log_interval": 3,
            "optimizer_config": {},
            "checkpoint_config": {"interval": 4, "by_epoch": False},
        },
        "iter_4.pth",
        {"max_iters": 9},
        [(2, 6), (3, 9)],  # mmcv: the epoch counts passes over the loader
        id="iter runner: the log buffer history survives",
    ),
]


@pytest.mark.parametrize(("runner_cls", "configs", "checkpoint", "length", "logged"), RESUME_CASES)
def test_logs_after_a_resume_equal_the_uninterrupted_runs(
    tmp_path: Path,
    runner_cls: type[BaseRunner],
    configs: dict[str, object],
    checkpoint: str,
    length: dict[str, int],
    logged: list[tuple[int, int]],
) -> None:
    by_epoch = runner_cls is EpochBasedRunner
    full, _ = make(runner_cls, tmp_path / "full", by_epoch=by_epoch, **dict(configs))
    full.run([loader(4)], [("train", 1)], **length)

    resumed, _ = make(runner_cls, tmp_path / "resumed", by_epoch=by_epoch, **dict(configs))
    resumed.resume(tmp_path / "full" / checkpoint)
    resumed.run([loader(4)], [("train", 1)], **length)

    expected = records(tmp_path / "full")[1:]  # the first log falls before the checkpoint
    assert [(r["epoch"], r["iter"]) for r in expected] == logged
    assert records(tmp_path / "resumed") == expected
