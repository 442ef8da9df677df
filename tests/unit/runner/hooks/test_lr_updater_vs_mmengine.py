"""Differential test: where mmengine documents an equivalent scheduler, the LR sequences agree.

mmengine's migration guide maps mmcv's ``StepLrUpdaterHook`` to ``MultiStepLR``,
``CosineAnnealingLrUpdaterHook`` to ``CosineAnnealingLR`` (T_max = max epochs) and
``ExpLrUpdaterHook`` to ``ExponentialLR``. (Its PolyLR and chained warmups use other
formulas, so they are checked against mmcv's closed forms in test_lr_updater_hook.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from mmengine.optim import scheduler as mmengine_scheduler  # the test oracle (dev dependency)
from torch import nn

from tests.unit.runner.hooks.fake_hook_runner import FakeRunnerFactory, fake_runner_factory
from trackcfg.registry import HOOKS

EPOCHS = 12


@pytest.fixture
def make_runner(tmp_path: Path) -> FakeRunnerFactory:
    return fake_runner_factory(tmp_path)


def sgd() -> torch.optim.SGD:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)


def mmengine_lrs(make: Callable[[torch.optim.Optimizer], object]) -> list[float]:
    optimizer = sgd()
    scheduler = make(optimizer)
    lrs = []
    for _ in range(EPOCHS):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: a no-op, but the order torch expects
        scheduler.step()  # type: ignore[attr-defined]
    return lrs


CASES: list[tuple[dict[str, object], Callable[[torch.optim.Optimizer], object]]] = [
    (
        {"policy": "Step", "step": [3, 8], "gamma": 0.2},
        lambda o: mmengine_scheduler.MultiStepLR(o, milestones=[3, 8], gamma=0.2),
    ),
    (
        {"policy": "CosineAnnealing", "min_lr": 1e-4},
        lambda o: mmengine_scheduler.CosineAnnealingLR(o, T_max=EPOCHS, eta_min=1e-4),
    ),
    (
        {"policy": "Exp", "gamma": 0.7},
        lambda o: mmengine_scheduler.ExponentialLR(o, gamma=0.7),
    ),
]


@pytest.mark.parametrize(
    ("lr_config", "oracle"),
    CASES,
    ids=[str(lr_config)[:40] for lr_config, _ in CASES],  # the oracle's repr holds an address
)
def test_epoch_schedules_agree_with_mmengine_equivalents(
    make_runner: FakeRunnerFactory,
    lr_config: dict[str, object],
    oracle: Callable[[torch.optim.Optimizer], object],
) -> None:
    cfg = dict(lr_config)
    hook = HOOKS.build({"type": f"{cfg.pop('policy')}LrUpdaterHook", **cfg})
    runner = make_runner(optimizer=sgd(), max_epochs=EPOCHS)
    hook.before_run(runner)
    ours = []
    for epoch in range(EPOCHS):
        runner.epoch = epoch
        hook.before_train_epoch(runner)
        hook.before_train_iter(runner)
        ours.append(runner.optimizer.param_groups[0]["lr"])  # type: ignore[attr-defined]
    assert ours == pytest.approx(mmengine_lrs(oracle), rel=1e-9)
