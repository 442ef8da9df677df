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
from trackcfg.runner.log_buffer import PENDING_LIMIT

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

    # Both run every iteration. They append to the buffer's pending lists themselves
    # (the protocol documented at `LogBuffer.pending`): calling `LogBuffer.update_scalar`
    # is one more function per call, measured at about 0.3 % of an iteration of the
    # benchmark's MLP for the two calls (issue 3's overhead budget). A new key, or one
    # whose pending lists are full, still goes through update_scalar.

    def before_iter(self, runner: BaseRunner) -> None:
        data_time = time.perf_counter() - self.t
        buffer = runner.log_buffer
        pending = buffer.pending.get("data_time")
        if pending is None or len(pending[0]) >= PENDING_LIMIT:
            buffer.update_scalar("data_time", data_time)
        else:
            pending[0].append(data_time)
            pending[1].append(1)

    def after_iter(self, runner: BaseRunner) -> None:
        # One clock read: ``time`` ends where the next ``data_time`` starts, so the
        # intervals tile the run (mmcv read the clock twice and lost the update between).
        now = time.perf_counter()
        iter_time = now - self.t
        self.t = now
        buffer = runner.log_buffer
        pending = buffer.pending.get("time")
        if pending is None or len(pending[0]) >= PENDING_LIMIT:
            buffer.update_scalar("time", iter_time)
        else:
            pending[0].append(iter_time)
            pending[1].append(1)

    # The specific stages *are* the generic ones (no forwarding call per iteration);
    # val iterations still reach them through Hook.before_val_iter/after_val_iter.
    before_train_iter = before_iter
    after_train_iter = after_iter
