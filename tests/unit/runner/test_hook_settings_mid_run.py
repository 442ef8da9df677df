"""A hook's settings changed in the middle of a run act from the hook's next call on.

Which stages call a hook is decided once, at registration, from the methods its
class overrides. A setting under which a stage does nothing (an LR updater counting
epochs without warmup, a checkpoint hook counting epochs) does not take the hook
out of that stage, so changing the setting later is seen at once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tests.unit.runner.toys import RunnerFactory
from trackcfg.runner.base_runner import BaseRunner
from trackcfg.runner.epoch_based_runner import EpochBasedRunner
from trackcfg.runner.hooks.checkpoint import CheckpointHook
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.hooks.lr_updater import StepLrUpdaterHook

Loader = Callable[..., torch.utils.data.DataLoader[object]]
Changes = dict[tuple[str, int], dict[str, object]]


class Mutator(Hook):
    """Sets ``changes[(stage, iter)]`` on the target hook at that stage and iteration."""

    priority = "HIGHEST"

    def __init__(self, target: Hook, changes: Changes) -> None:
        self.target = target
        self.changes = changes

    def _apply(self, stage: str, runner: BaseRunner) -> None:
        for name, value in self.changes.get((stage, runner.iter), {}).items():
            setattr(self.target, name, value)

    def before_train_iter(self, runner: BaseRunner) -> None:
        self._apply("before_train_iter", runner)

    def after_train_iter(self, runner: BaseRunner) -> None:
        self._apply("after_train_iter", runner)


class LrTrace(Hook):
    """The LR each training step ran with."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def after_train_iter(self, runner: BaseRunner) -> None:
        optimizer = runner.optimizer
        assert isinstance(optimizer, torch.optim.Optimizer)
        self.lrs.append(optimizer.param_groups[0]["lr"])


def lrs_of(
    make_runner: RunnerFactory, loader: Loader, hook: StepLrUpdaterHook, changes: Changes
) -> list[float]:
    runner = make_runner(EpochBasedRunner, max_epochs=3)  # 3 iterations per epoch
    runner.register_hook(hook)
    trace = LrTrace()
    runner.register_hook(trace)
    runner.register_hook(Mutator(hook, changes))
    runner.run([loader()], [("train", 1)])
    return trace.lrs


DECAYED = 0.1 * 0.1


def test_lr_updater_switched_to_counting_iterations_mid_epoch(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    changes: Changes = {
        ("after_train_iter", 1): {"by_epoch": False},
        ("after_train_iter", 6): {"by_epoch": True},
    }
    lrs = lrs_of(make_runner, toy_loader, StepLrUpdaterHook(step=[4]), changes)
    # decayed at iteration 4 (in epoch 1), not at epoch 4; kept after switching back
    assert lrs == [0.1] * 4 + [DECAYED] * 5


def test_warmup_switched_on_mid_run_applies_from_the_next_iteration(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    changes: Changes = {
        ("after_train_iter", 1): {"warmup_iters": 3, "warmup_ratio": 0.5, "warmup": "linear"},
    }
    lrs = lrs_of(make_runner, toy_loader, StepLrUpdaterHook(step=[2]), changes)
    warmed = 0.1 * (1 - (1 - 2 / 3) * 0.5)  # linear warmup at iteration 2 of 3
    assert lrs == [0.1, 0.1, warmed] + [0.1] * 3 + [DECAYED] * 3


def test_checkpoint_hook_switched_to_counting_iterations_mid_run(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=3)
    hook = CheckpointHook(interval=2)
    runner.register_hook(hook)
    changes: Changes = {
        ("before_train_iter", 1): {"by_epoch": False},
        ("after_train_iter", 5): {"by_epoch": True},
    }
    runner.register_hook(Mutator(hook, changes))
    taken_at: list[int] = []  # completed iterations of each checkpoint
    runner.add_checkpoint_listener(lambda saved: taken_at.append(saved.iter))
    runner.run([toy_loader()], [("train", 1)])
    # after iterations 2 and 4 while counting iterations, then after epochs 2 and 3
    assert sorted(taken_at) == [2, 4, 6, 9]
