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

import time
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
        self.t = time.perf_counter()

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

    def before_run(self, runner: BaseRunner) -> None:
        # A mid-epoch resume fires no before_epoch; start the clock here too.
        self.t = time.perf_counter()

    def before_epoch(self, runner: BaseRunner) -> None:
        self.t = time.perf_counter()

    # Both methods run every iteration, so they append to the buffer's history arrays
    # themselves once the key exists: `LogBuffer.update_scalar` (what they would call)
    # is one more function per iteration, and the overhead budget of issue 3 counts them.
    # The result is the same entry: the float and a count of 1.

    def before_iter(self, runner: BaseRunner) -> None:
        data_time = time.perf_counter() - self.t
        buffer = runner.log_buffer
        values = buffer.val_history.get("data_time")
        if values is None:
            buffer.update_scalar("data_time", data_time)
        else:
            values.append(data_time)
            buffer.n_history["data_time"].append(1)

    def after_iter(self, runner: BaseRunner) -> None:
        # One clock read: ``time`` ends where the next ``data_time`` starts, so the
        # intervals tile the run (mmcv read the clock twice and lost the update between).
        now = time.perf_counter()
        iter_time = now - self.t
        self.t = now
        buffer = runner.log_buffer
        values = buffer.val_history.get("time")
        if values is None:
            buffer.update_scalar("time", iter_time)
        else:
            values.append(iter_time)
            buffer.n_history["time"].append(1)

    # The specific stages *are* the generic ones (no forwarding call per iteration);
    # val iterations still reach them through Hook.before_val_iter/after_val_iter.
    before_train_iter = before_iter
    after_train_iter = after_iter
