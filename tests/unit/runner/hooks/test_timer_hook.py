"""IterTimerHook: data_time (waiting for the batch) and time (the whole iteration)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.runner.hooks.fake_hook_runner import FakeRunnerFactory, fake_runner_factory
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.timer import IterTimerHook


@pytest.fixture
def make_runner(tmp_path: Path) -> FakeRunnerFactory:
    return fake_runner_factory(tmp_path)


def test_timer_logs_data_time_and_iteration_time(make_runner: Callable[..., object]) -> None:
    runner = make_runner()
    hook = HOOKS.build({"type": "IterTimerHook"})
    hook.before_run(runner)
    hook.before_train_epoch(runner)
    for _ in range(2):
        time.sleep(0.02)  # "loading the batch"
        hook.before_train_iter(runner)
        time.sleep(0.01)  # "the step"
        hook.after_train_iter(runner)
    history = runner.log_buffer.val_history  # type: ignore[attr-defined]
    assert [len(history["data_time"]), len(history["time"])] == [2, 2]
    for data_time, total in zip(history["data_time"], history["time"], strict=True):
        assert 0.02 <= data_time < total
        assert total >= 0.03


def test_timer_counts_from_before_run_when_no_epoch_starts(
    make_runner: Callable[..., object],
) -> None:
    # a mid-epoch resume fires before_run but may not fire before_epoch first
    runner = make_runner()
    hook = HOOKS.build({"type": "IterTimerHook"})
    time.sleep(0.05)
    hook.before_run(runner)
    hook.before_val_iter(runner)
    assert runner.log_buffer.val_history["data_time"][0] < 0.05  # type: ignore[attr-defined]


def test_subclass_overriding_the_generic_stage_is_called_for_train_iterations(
    make_runner: Callable[..., object],
) -> None:
    from trackcfg.runner.hooks.timer import IterTimerHook

    calls: list[str] = []

    class CountingTimer(IterTimerHook):
        def before_iter(self, runner: object) -> None:  # type: ignore[override]
            calls.append("before")

        def after_iter(self, runner: object) -> None:  # type: ignore[override]
            calls.append("after")

    runner = make_runner()
    hook = CountingTimer()
    hook.before_train_iter(runner)  # type: ignore[arg-type]
    hook.after_train_iter(runner)  # type: ignore[arg-type]
    assert calls == ["before", "after"]


def test_a_timer_moved_to_another_runner_writes_to_the_new_buffer_only(
    make_runner: Callable[..., object],
) -> None:
    first, second = make_runner(), make_runner()
    hook = IterTimerHook()
    hook.before_run(first)  # type: ignore[arg-type]
    for _ in range(3):
        hook.before_train_iter(first)  # type: ignore[arg-type]
        hook.after_train_iter(first)  # type: ignore[arg-type]
    hook.before_run(second)  # type: ignore[arg-type]
    hook.before_train_iter(second)  # type: ignore[arg-type]
    hook.after_train_iter(second)  # type: ignore[arg-type]
    assert [len(first.log_buffer.val_history[k]) for k in ("data_time", "time")] == [3, 3]  # type: ignore[attr-defined]
    assert [len(second.log_buffer.val_history[k]) for k in ("data_time", "time")] == [1, 1]  # type: ignore[attr-defined]
