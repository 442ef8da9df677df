"""IterTimerHook: per-iteration ``data_time`` and ``time`` into the runner's log buffer.

mmcv 1.x semantics: ``data_time`` is the time from the end of the previous
iteration (or the epoch start) to ``before_iter``, i.e. waiting for the batch;
``time`` is the whole iteration including data. We read `time.perf_counter`
(monotonic) rather than mmcv's ``time.time`` so a wall-clock adjustment cannot
produce negative durations.

The hook keeps no state worth checkpointing: after a resume the first interval
is measured from ``before_run`` (the resumed process did not wait for the
interrupted one's batch).
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.hook import Hook

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner

__all__ = ["IterTimerHook"]


@HOOKS.register_module()
class IterTimerHook(Hook):
    """Log ``data_time`` (before_iter) and ``time`` (after_iter), in seconds."""

    priority = "LOW"  # mmcv's register_timer_hook priority

    def __init__(self) -> None:
        self.t = perf_counter()

    def before_run(self, runner: BaseRunner) -> None:
        # A mid-epoch resume fires no before_epoch; start the clock here too.
        self.t = perf_counter()

    def before_epoch(self, runner: BaseRunner) -> None:
        self.t = perf_counter()

    def before_iter(self, runner: BaseRunner) -> None:
        runner.log_buffer.update_scalar("data_time", perf_counter() - self.t)

    def after_iter(self, runner: BaseRunner) -> None:
        # One clock read: ``time`` ends where the next ``data_time`` starts, so the
        # intervals tile the run (mmcv read the clock twice and lost the update between).
        now = perf_counter()
        runner.log_buffer.update_scalar("time", now - self.t)
        self.t = now
