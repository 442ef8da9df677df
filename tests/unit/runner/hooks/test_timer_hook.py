"""IterTimerHook: data_time (waiting for the batch) and time (the whole iteration)."""

from __future__ import annotations

import copy
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.runner.hooks.fake_hook_runner import FakeRunnerFactory, fake_runner_factory
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.timer import IterTimerHook
from trackcfg.runner.log_buffer import LogBuffer


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


def test_timer_entries_survive_folds_and_clears_with_unit_counts(
    make_runner: Callable[..., object],
) -> None:
    # the timer appends to the buffer's pending lists itself; past PENDING_LIMIT entries
    # (and after a clear) it must still record every iteration, weighted 1, in order
    from trackcfg.runner.log_buffer import PENDING_LIMIT

    runner = make_runner()
    buffer = runner.log_buffer  # type: ignore[attr-defined]
    hook = HOOKS.build({"type": "IterTimerHook"})
    hook.before_run(runner)
    for _ in range(2 * PENDING_LIMIT + 3):
        hook.before_train_iter(runner)
        hook.after_train_iter(runner)
        assert max(len(values) for values, _ in buffer.pending.values()) <= PENDING_LIMIT + 1
    assert list(buffer.val_history) == ["data_time", "time"]
    assert [len(buffer.val_history[k]) for k in ("data_time", "time")] == [
        2 * PENDING_LIMIT + 3
    ] * 2
    assert set(buffer.n_history["time"]) == {1}
    buffer.clear()
    hook.after_train_iter(runner)
    hook.before_train_iter(runner)
    assert list(buffer.val_history) == ["time", "data_time"]
    assert [len(buffer.val_history[k]) for k in ("time", "data_time")] == [1, 1]


class _Reference:
    """mmcv's IterTimerHook on the same clock: every value straight into its buffer."""

    def __init__(self, buffer: LogBuffer, now: float) -> None:
        self.buffer, self.t = buffer, now

    def before_iter(self, now: float) -> None:
        self.buffer.update_scalar("data_time", now - self.t)

    def after_iter(self, now: float) -> None:
        self.buffer.update_scalar("time", now - self.t)
        self.t = now


def _visible(buffer: LogBuffer) -> tuple[object, ...]:
    """Everything a reader of the buffer can see, in comparable (bitwise) form."""
    return (
        {k: v.tobytes() for k, v in buffer.val_history.items()},
        {k: list(v) for k, v in buffer.n_history.items()},
        dict(buffer.output),
        buffer.ready,
    )


# iterations are the common case: weighted so that kept values pile up past the limit
_OPS = st.sampled_from(
    ["before", "after"] * 4 + ["loss", "clear", "epoch", "read", "average", "state", "restore"]
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(st.tuples(_OPS, st.integers(1, 5)), max_size=60),
    limit=st.sampled_from([2, 3, 1024]),
)
def test_the_timer_feeds_the_buffer_exactly_what_direct_writes_would_give(
    ops: list[tuple[str, int]], limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hook keeps its values and hands them over only when the buffer is read
    # (LogFeed): at every read, the buffer must show what the old direct writes gave.
    # Small PENDING_LIMITs exercise the full-list and folding paths.
    import trackcfg.runner.hooks.timer as timer_module
    import trackcfg.runner.log_buffer as log_buffer_module

    clock = [1000.0]
    with monkeypatch.context() as patch:
        patch.setattr(timer_module, "perf_counter", lambda: clock[0])
        patch.setattr(timer_module, "PENDING_LIMIT", limit)
        patch.setattr(log_buffer_module, "PENDING_LIMIT", limit)
        runner = SimpleNamespace(log_buffer=LogBuffer())
        hook = IterTimerHook()
        hook.before_run(runner)  # type: ignore[arg-type]
        reference = _Reference(LogBuffer(), clock[0])
        for op, arg in ops:
            clock[0] += arg / 7  # inexact sums: any reordering would show
            if op == "before":
                hook.before_train_iter(runner)  # type: ignore[arg-type]
                reference.before_iter(clock[0])
            elif op == "after":
                hook.after_train_iter(runner)  # type: ignore[arg-type]
                reference.after_iter(clock[0])
            elif op == "loss":
                for buffer in (runner.log_buffer, reference.buffer):
                    buffer.update_scalar("loss", arg / 3, 16)
            elif op == "clear":
                runner.log_buffer.clear()
                reference.buffer.clear()
            elif op == "epoch":
                hook.before_epoch(runner)  # type: ignore[arg-type]
                reference.t = clock[0]
            elif op == "average":
                runner.log_buffer.average(arg)
                reference.buffer.average(arg)
            elif op == "state":
                assert repr(runner.log_buffer.state_dict()) == repr(reference.buffer.state_dict())
            elif op == "restore":
                state = reference.buffer.state_dict()
                runner.log_buffer.load_state_dict(state)
                reference.buffer.load_state_dict(state)
            elif op == "read":  # not after every op: kept values must pile up in between
                assert _visible(runner.log_buffer) == _visible(reference.buffer)
        assert _visible(runner.log_buffer) == _visible(reference.buffer)


def test_a_timer_moved_to_another_runner_feeds_the_new_buffer_only(
    make_runner: Callable[..., object],
) -> None:
    first, second = make_runner(), make_runner()
    hook = IterTimerHook()
    hook.before_run(first)  # type: ignore[arg-type]
    for _ in range(3):
        hook.before_train_iter(first)  # type: ignore[arg-type]
        hook.after_train_iter(first)  # type: ignore[arg-type]
    hook.before_run(second)  # type: ignore[arg-type]  # the first buffer gets what it is owed
    hook.before_train_iter(second)  # type: ignore[arg-type]
    hook.after_train_iter(second)  # type: ignore[arg-type]
    assert [len(first.log_buffer.val_history[k]) for k in ("data_time", "time")] == [3, 3]  # type: ignore[attr-defined]
    assert [len(second.log_buffer.val_history[k]) for k in ("data_time", "time")] == [1, 1]  # type: ignore[attr-defined]


def test_a_copied_timer_feeds_nothing_until_it_runs(make_runner: Callable[..., object]) -> None:
    runner = make_runner()
    hook = IterTimerHook()
    hook.before_run(runner)  # type: ignore[arg-type]
    hook.before_train_iter(runner)  # type: ignore[arg-type]
    hook.before_train_iter(runner)  # type: ignore[arg-type]  # one value kept by the hook
    for clone in (copy.copy(hook), copy.deepcopy(hook), pickle.loads(pickle.dumps(hook))):
        assert clone._buffer is None and clone._data_times == []
    assert len(runner.log_buffer.val_history["data_time"]) == 2  # type: ignore[attr-defined]
