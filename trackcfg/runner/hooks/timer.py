"""IterTimerHook: per-iteration ``data_time`` and ``time`` into the runner's log buffer.

mmcv 1.x semantics: ``data_time`` is the time from the end of the previous
iteration (or the epoch start) to ``before_iter``, i.e. waiting for the batch;
``time`` is the whole iteration including data. We read `time.perf_counter`
(monotonic) rather than mmcv's ``time.time`` so a wall-clock adjustment cannot
produce negative durations.

The hook keeps no state worth checkpointing: after a resume the first interval
is measured from ``before_run`` (the resumed process did not wait for the
interrupted one's batch).

Both stages run every iteration, so the hook keeps the values it measures in two
plain lists and hands them to the log buffer only when somebody reads it: it is
the buffer's `LogFeed`. Readers see exactly what they saw when each value went
straight into the buffer (same keys, order, values and weights); an iteration
costs one list append per stage instead of a lookup and two appends in the
buffer's pending lists — part of issue 3's overhead budget on a fast loop. The
hook feeds the log buffer of the runner it last ran in (``before_run``); a runner
keeps one log buffer for its whole life.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.log_buffer import PENDING_LIMIT, LogBuffer

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner

__all__ = ["IterTimerHook"]


@HOOKS.register_module()
class IterTimerHook(Hook):
    """Log ``data_time`` (before_iter) and ``time`` (after_iter), in seconds."""

    priority = "LOW"  # mmcv's register_timer_hook priority

    def __init__(self) -> None:
        self.t = perf_counter()
        # Measured values the buffer does not have yet (see the module docstring), and
        # whether the buffer has each key (then new values may wait here).
        self._buffer: LogBuffer | None = None
        self._data_times: list[float] = []
        self._times: list[float] = []
        self._data_time_kept = False
        self._time_kept = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # The aliases below bind IterTimerHook's own methods; a subclass that overrides
        # the generic method must still be called for training iterations.
        for generic, specific in (
            ("before_iter", "before_train_iter"),
            ("after_iter", "after_train_iter"),
        ):
            if generic in cls.__dict__ and specific not in cls.__dict__:
                setattr(cls, specific, cls.__dict__[generic])

    def __getstate__(self) -> dict[str, object]:
        # A copy (or a pickle) feeds no buffer: it starts afresh at its first value.
        state = self.__dict__.copy()
        state.update(_buffer=None, _data_times=[], _times=[])
        state.update(_data_time_kept=False, _time_kept=False)
        return state

    def before_run(self, runner: BaseRunner) -> None:
        self._feed(runner.log_buffer)
        # A mid-epoch resume fires no before_epoch; start the clock here too.
        self.t = perf_counter()

    def before_epoch(self, runner: BaseRunner) -> None:
        self.t = perf_counter()

    def before_iter(self, runner: BaseRunner) -> None:
        now = perf_counter()
        data_times = self._data_times
        if self._data_time_kept and len(data_times) < PENDING_LIMIT:
            data_times.append(now - self.t)
        else:
            self._record(runner, "data_time", now - self.t)

    def after_iter(self, runner: BaseRunner) -> None:
        # One clock read: ``time`` ends where the next ``data_time`` starts, so the
        # intervals tile the run (mmcv read the clock twice and lost the update between).
        now = perf_counter()
        times = self._times
        if self._time_kept and len(times) < PENDING_LIMIT:
            times.append(now - self.t)
        else:
            self._record(runner, "time", now - self.t)
        self.t = now

    # The specific stages *are* the generic ones (no forwarding call per iteration);
    # val iterations still reach them through Hook.before_val_iter/after_val_iter.
    before_train_iter = before_iter
    after_train_iter = after_iter

    # -- LogFeed --------------------------------------------------------------

    def drain(self, buffer: LogBuffer) -> None:
        """Hand the kept values to ``buffer`` (the one this hook feeds)."""
        if buffer is not self._buffer:
            return
        if self._data_times:
            buffer.extend_unit("data_time", self._data_times)
            self._data_times.clear()
        if self._times:
            buffer.extend_unit("time", self._times)
            self._times.clear()

    def discard(self) -> None:
        """The buffer forgot its history: drop the kept values; keys must be created anew."""
        self._data_times.clear()
        self._times.clear()
        self._data_time_kept = self._time_kept = False

    def _feed(self, buffer: LogBuffer) -> None:
        """Feed ``buffer`` from now on (the previous one gets what it is owed first)."""
        if buffer is self._buffer:
            return
        if self._buffer is not None:
            self._buffer.remove_feed(self)
        self.discard()
        self._buffer = buffer
        buffer.add_feed(self)

    def _record(self, runner: BaseRunner, key: str, value: float) -> None:
        """Put ``value`` into the buffer directly (a new key, or the kept list is full)."""
        buffer = runner.log_buffer
        self._feed(buffer)
        self.drain(buffer)  # what waits goes first
        buffer.update_scalar(key, value)
        if key == "data_time":
            self._data_time_kept = True
        else:
            self._time_kept = True
