"""Hook.idle_stages: idle hooks are left out of the per-iteration tables, exactly.

The reference for every scenario is the same hook made never idle (``idle_stages``
returns nothing, so the runner calls it at every iteration as before): the learning
rates and checkpoints must be identical. A change of an attribute that decides
idleness takes effect from the next call of the stage on.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from pathlib import Path

import torch

from tests.unit.runner.toys import RunnerFactory
from trackcfg.runner.base_runner import BaseRunner
from trackcfg.runner.epoch_based_runner import EpochBasedRunner
from trackcfg.runner.hooks.checkpoint import CheckpointHook
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.hooks.lr_updater import StepLrUpdaterHook
from trackcfg.runner.stage import Stage

Loader = Callable[..., torch.utils.data.DataLoader[object]]


class NeverIdleStep(StepLrUpdaterHook):
    def idle_stages(self) -> frozenset[Stage]:
        return frozenset()


class NeverIdleCheckpoint(CheckpointHook):
    def idle_stages(self) -> frozenset[Stage]:
        return frozenset()


class Mutator(Hook):
    """Applies ``changes[(stage, iter)]`` to the target hook at that stage and iteration."""

    def __init__(self, target: Hook, changes: dict[tuple[str, int], dict[str, object]]) -> None:
        self.target = target
        self.changes = changes

    def _apply(self, stage: str, runner: BaseRunner) -> None:
        for name, value in self.changes.get((stage, runner.iter), {}).items():
            setattr(self.target, name, value)

    def before_train_iter(self, runner: BaseRunner) -> None:
        self._apply("before_train_iter", runner)

    def after_train_iter(self, runner: BaseRunner) -> None:
        self._apply("after_train_iter", runner)


class Trace(Hook):
    """Records the LR seen by each step and whether ``hook`` is in each iteration table."""

    priority = "HIGHEST"

    def __init__(self, hook: Hook) -> None:
        self.hook = hook
        self.lrs: list[float] = []
        self.before: list[bool] = []
        self.after: list[bool] = []

    def before_train_iter(self, runner: BaseRunner) -> None:
        self.before.append(any(fn.__self__ is self.hook for fn in runner._before_train_iter))  # type: ignore[attr-defined]
        self.after.append(any(fn.__self__ is self.hook for fn in runner._after_train_iter))  # type: ignore[attr-defined]

    def after_train_iter(self, runner: BaseRunner) -> None:
        optimizer = runner.optimizer
        assert isinstance(optimizer, torch.optim.Optimizer)
        self.lrs.append(optimizer.param_groups[0]["lr"])


def run_lr(
    make_runner: RunnerFactory,
    loader: Loader,
    hook: StepLrUpdaterHook,
    changes: dict[tuple[str, int], dict[str, object]],
    mutator_priority: str = "HIGHEST",
) -> Trace:
    runner = make_runner(EpochBasedRunner, max_epochs=3)
    runner.register_hook(hook, priority="VERY_HIGH")
    trace = Trace(hook)
    runner.register_hook(trace)
    runner.register_hook(Mutator(hook, changes), priority=mutator_priority)
    runner.run([loader()], [("train", 1)])
    return trace


def test_by_epoch_lr_updater_without_warmup_is_left_out_of_before_train_iter(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    hook = StepLrUpdaterHook(step=[1])
    trace = run_lr(make_runner, toy_loader, hook, {})
    assert trace.before == [False] * 9
    assert trace.lrs == [0.1] * 3 + [0.1 * 0.1] * 6


def test_lr_updater_switched_to_by_iter_mid_epoch_runs_from_the_next_iteration(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    # changed after iteration 1 (between iterations): identical to the never-idle hook
    changes: dict[tuple[str, int], dict[str, object]] = {
        ("after_train_iter", 1): {"by_epoch": False},
        ("after_train_iter", 6): {"by_epoch": True},
    }
    trace = run_lr(make_runner, toy_loader, StepLrUpdaterHook(step=[4]), changes)
    reference = run_lr(make_runner, toy_loader, NeverIdleStep(step=[4]), changes)
    assert trace.lrs == reference.lrs
    assert trace.lrs[4] == 0.1 * 0.1  # by iteration: decayed at iteration 4, mid-epoch 1
    assert trace.before == [False, False] + [True] * 5 + [False] * 2


def test_lr_updater_switched_inside_the_stage_by_a_higher_priority_hook(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    # The stage being run keeps the table it started with; the hook runs from the
    # next iteration on (iteration 4 decays in both).
    changes: dict[tuple[str, int], dict[str, object]] = {
        ("before_train_iter", 3): {"by_epoch": False}
    }
    trace = run_lr(make_runner, toy_loader, StepLrUpdaterHook(step=[4]), changes)
    assert trace.before == [False] * 4 + [True] * 5
    assert trace.lrs[4:] == [0.1 * 0.1] * 5
    reference = run_lr(make_runner, toy_loader, NeverIdleStep(step=[4]), changes)
    assert trace.lrs[4:] == reference.lrs[4:]


def test_warmup_switched_on_mid_run_and_ending(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    changes: dict[tuple[str, int], dict[str, object]] = {
        ("after_train_iter", 1): {"warmup_iters": 3, "warmup_ratio": 0.5, "warmup": "linear"},
        ("after_train_iter", 7): {"warmup": None},
    }
    trace = run_lr(make_runner, toy_loader, StepLrUpdaterHook(step=[2]), changes)
    reference = run_lr(make_runner, toy_loader, NeverIdleStep(step=[2]), changes)
    assert trace.lrs == reference.lrs
    assert trace.lrs[2] == 0.1 * (1 - (1 - 2 / 3) * 0.5)  # warmup applies at iteration 2
    assert trace.lrs[3] == 0.1  # warmup ended (cur_iter == warmup_iters)
    assert trace.before == [False, False] + [True] * 6 + [False]


def test_lr_updater_built_with_warmup_is_dispatched_until_warmup_is_removed(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    def hook() -> StepLrUpdaterHook:
        return StepLrUpdaterHook(step=[1], warmup="exp", warmup_iters=4, warmup_ratio=0.25)

    changes: dict[tuple[str, int], dict[str, object]] = {("after_train_iter", 5): {"warmup": None}}
    trace = run_lr(make_runner, toy_loader, hook(), changes)
    assert trace.lrs == run_lr(make_runner, toy_loader, NeverIdleStep(**_kw(hook())), changes).lrs
    assert trace.before == [True] * 6 + [False] * 3


def _kw(hook: StepLrUpdaterHook) -> dict[str, object]:
    return {
        "step": hook.step,
        "warmup": hook.warmup,
        "warmup_iters": hook.warmup_iters,
        "warmup_ratio": hook.warmup_ratio,
    }


def run_checkpoints(
    make_runner: RunnerFactory,
    loader: Loader,
    hook: CheckpointHook,
    changes: dict[tuple[str, int], dict[str, object]],
    work_dir: Path,
) -> tuple[Trace, list[str]]:
    runner = make_runner(EpochBasedRunner, max_epochs=3)
    runner.work_dir = str(work_dir)
    runner.register_hook(hook)
    trace = Trace(hook)
    runner.register_hook(trace)
    runner.register_hook(Mutator(hook, changes), priority="HIGHEST")
    runner.run([loader()], [("train", 1)])
    return trace, sorted(p.name for p in work_dir.glob("*.pth"))


def test_checkpoint_hook_by_epoch_toggled_mid_run(
    make_runner: RunnerFactory, toy_loader: Loader, tmp_path: Path
) -> None:
    changes: dict[tuple[str, int], dict[str, object]] = {
        ("before_train_iter", 1): {"by_epoch": False},
        ("after_train_iter", 5): {"by_epoch": True},
    }
    trace, names = run_checkpoints(
        make_runner, toy_loader, CheckpointHook(interval=2), changes, tmp_path / "a"
    )
    _, reference = run_checkpoints(
        make_runner, toy_loader, NeverIdleCheckpoint(interval=2), changes, tmp_path / "b"
    )
    _, unchanged = run_checkpoints(
        make_runner, toy_loader, CheckpointHook(interval=2), {}, tmp_path / "c"
    )
    assert names == reference
    assert names != unchanged  # the per-iteration saves did happen
    assert trace.after == [False, False, True, True, True, True, False, False, False]


def test_only_unmodified_hooks_report_idle_stages() -> None:
    class OwnSetattr(StepLrUpdaterHook):
        def __setattr__(self, name: str, value: object) -> None:
            object.__setattr__(self, name, value)  # would not re-dispatch

    class Overridden(StepLrUpdaterHook):
        def before_train_iter(self, runner: BaseRunner) -> None:
            super().before_train_iter(runner)

    assert StepLrUpdaterHook(step=1).idle_stages() == {Stage.BEFORE_TRAIN_ITER}
    assert StepLrUpdaterHook(step=1, by_epoch=False).idle_stages() == frozenset()
    assert OwnSetattr(step=1).idle_stages() == frozenset()
    assert Overridden(step=1).idle_stages() == frozenset()
    patched = StepLrUpdaterHook(step=1)
    patched.before_train_iter = lambda runner: None  # type: ignore[method-assign]
    assert patched.idle_stages() == frozenset()
    assert CheckpointHook().idle_stages() == {Stage.AFTER_TRAIN_ITER}
    assert CheckpointHook(by_epoch=False).idle_stages() == frozenset()


def test_replacing_the_stage_method_on_the_instance_re_dispatches(
    make_runner: RunnerFactory,
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=1)
    hook = CheckpointHook(interval=1)
    runner.register_hook(hook)
    assert runner._after_train_iter == ()
    calls: list[int] = []
    hook.after_train_iter = lambda runner: calls.append(runner.iter)  # type: ignore[method-assign]
    assert runner._after_train_iter == (hook.after_train_iter,)


def test_copied_and_pickled_hooks_are_registered_nowhere(make_runner: RunnerFactory) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=1)
    hook = StepLrUpdaterHook(step=1)
    runner.register_hook(hook)
    for clone in (copy.copy(hook), copy.deepcopy(hook), pickle.loads(pickle.dumps(hook))):
        clone.by_epoch = False  # must not touch the runner's tables
        assert clone.by_epoch is False and hook.by_epoch is True
        assert runner._before_train_iter == ()
    hook.by_epoch = False
    assert [fn.__self__ for fn in runner._before_train_iter] == [hook]  # type: ignore[attr-defined]
    # a copy registered elsewhere is watched there, and only there
    other = make_runner(EpochBasedRunner, max_epochs=1)
    clone = copy.copy(hook)
    other.register_hook(clone)
    assert [fn.__self__ for fn in other._before_train_iter] == [clone]  # type: ignore[attr-defined]
    clone.by_epoch = True
    assert other._before_train_iter == ()
    assert [fn.__self__ for fn in runner._before_train_iter] == [hook]  # type: ignore[attr-defined]
    hook.by_epoch = True
    assert runner._before_train_iter == ()


def test_a_hook_in_two_runners_updates_both(make_runner: RunnerFactory) -> None:
    runners = [make_runner(EpochBasedRunner, max_epochs=1) for _ in range(2)]
    hook = CheckpointHook(interval=1)
    for runner in runners:
        runner.register_hook(hook)
    assert all(runner._after_train_iter == () for runner in runners)
    hook.by_epoch = False
    assert all(len(runner._after_train_iter) == 1 for runner in runners)
