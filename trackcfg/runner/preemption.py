"""Checkpoint on preemption: a signal is a flag; the ranks stop together at an iteration boundary.

A job scheduler that preempts a job (SLURM, Kubernetes, a spot VM) sends SIGTERM,
or a signal it was told to (``sbatch --signal=B:USR1@60``), and kills the job a
grace period later (30 s to 2 min). Raising at once, wherever the signal lands,
loses the work since the last periodic checkpoint. Here:

1. `preemption_signals` installs handlers (main thread only) that only set a
   `PreemptionFlag`. A *second* signal of the same kind raises
   `RunTerminatedError` at once: the user (or the scheduler) insists.
2. `PreemptionHook` (priority LOWEST, so the iteration is logged and checkpointed
   by every other hook first) reads the flag at each training iteration boundary
   (``after_train_iter``, both runners). Under torch.distributed the ranks agree
   through one collective, an ``all_reduce(MAX)`` of one integer (the signal
   number, 0 for none): a signal that reached any rank stops all of them at the
   same iteration, with the same signal. One process does no collective at all.
3. When they agree, the hook asks for one complete checkpoint of that boundary
   through ``runner.save_checkpoint`` (so the runner's listeners, e.g. the MLflow
   publisher, get it) — unless a checkpoint of this boundary is already queued
   (the CheckpointHook's interval fell on it). The runner commits it once the
   counters have moved on (see `trackcfg.runner.base_runner`), as any checkpoint
   of an iteration boundary, named ``iter_<n>.pth`` (mmengine's name for it).
4. The companion hook `PreemptionStopHook` (priority HIGHEST) fires at the first
   stage after that commit — the next ``before_train_iter``, ``before_val_iter``,
   ``before_val_epoch`` or the epoch's ``after_train_epoch``, before any other
   hook of that stage — waits until the checkpoint is durable, waits for every
   rank (a barrier: no rank exits while rank 0 still writes, which would make
   torchrun kill it), and raises `PreemptedError` on every rank.

So the time from signal to exit is at most the rest of one iteration plus one
checkpoint write. A signal during validation or evaluation is acted on at the
next training iteration boundary (a checkpoint is exact only between training
iterations); one after the last training iteration lets the run finish.

`preemption_hooks` returns both hooks with their priorities, for
``train(..., extra_hooks=...)``. Example (the hooks, with a flag set by hand)::

    flag = PreemptionFlag()
    hooks = preemption_hooks(flag)
    flag.request(signal.SIGTERM)   # what the handler does
    train(cfg, work_dir="work", extra_hooks=hooks)   # raises PreemptedError after 1 iteration

DataLoader workers forked while the handlers are installed inherit them; a
signal sent to the whole process group (a terminal, ``scancel``) then reaches
them too, and they ignore it (a handler does nothing outside the process that
installed it): the main process shuts them down as it exits.

The NCCL path (a CUDA tensor for the collective) is written but untested here:
this project's CI has no GPU.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import torch
import torch.distributed as torch_dist

from trackcfg.errors import ArgumentValueError, PreemptedError, RunnerError, RunTerminatedError
from trackcfg.runner.hooks.hook import Hook

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner

__all__ = [
    "DEFAULT_SIGNALS",
    "PreemptionFlag",
    "PreemptionHook",
    "PreemptionStopHook",
    "join_ranks",
    "parse_signal",
    "preemption_hooks",
    "preemption_signals",
]

#: What every tracked run treats as preemption: what schedulers send first.
DEFAULT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM,)

# A handler cannot be installed for these (SIGKILL, SIGSTOP) or they are the
# process's own machinery: a child's exit, a terminal resize, a fatal fault.
_UNUSABLE = frozenset(
    {
        signal.SIGKILL,
        signal.SIGSTOP,
        signal.SIGCHLD,
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGFPE,
        signal.SIGILL,
        signal.SIGWINCH,
    }
)


def parse_signal(text: str) -> signal.Signals:
    """A preemption signal from its name (``USR1``, ``SIGUSR1``, any case) or number.

    Example:
        >>> parse_signal("usr1").name, parse_signal("SIGTERM").name, parse_signal("12").name
        ('SIGUSR1', 'SIGTERM', 'SIGUSR2')

    Raises:
        ArgumentValueError: no such signal, or one that cannot be a preemption
            signal (SIGKILL, SIGSTOP, SIGCHLD, fault signals).
    """
    word = text.strip()
    try:
        if word.isdigit():
            found = signal.Signals(int(word))
        else:
            name = word.upper()
            found = signal.Signals[name if name.startswith("SIG") else "SIG" + name]
    except (KeyError, ValueError):
        raise ArgumentValueError(
            f"unknown signal {text!r}",
            hint="name one like USR1, SIGUSR2 or TERM, or give its number",
        ) from None
    if found in _UNUSABLE:
        raise ArgumentValueError(
            f"{found.name} cannot be a preemption signal",
            hint="schedulers send SIGTERM, or SIGUSR1/SIGUSR2 when asked (sbatch --signal)",
        )
    return found


class PreemptionFlag:
    """The first preemption signal received, if any (set by the handler, read by the hook).

    Attributes:
        signum: The signal, or None while none came.
        requested_at: ``time.monotonic()`` when it came (None before): the start of
            the grace period, from which the caller budgets the rest of its exit.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.requested_at: float | None = None

    def request(self, signum: int) -> None:
        """Record ``signum`` (the first one wins)."""
        if self.signum is None:
            self.requested_at = time.monotonic()
            self.signum = int(signum)


@contextlib.contextmanager
def preemption_signals(
    signals: Sequence[int] = DEFAULT_SIGNALS,
) -> Iterator[PreemptionFlag]:
    """Within the block, ``signals`` set the yielded flag; a repeated one raises at once.

    Handlers can only be installed on the main thread; elsewhere nothing is
    installed and the flag stays unset (the signals keep their dispositions). The
    previous handlers come back when the block ends.

    Args:
        signals: The preemption signals (duplicates are ignored).

    Raises:
        ArgumentValueError: a signal that cannot be a preemption signal.
        RunTerminatedError: inside the block, when one of ``signals`` arrives a
            second time.
    """
    chosen = list(dict.fromkeys(parse_signal(str(int(s))) for s in signals))
    flag = PreemptionFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    owner = os.getpid()
    seen: set[int] = set()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            return  # a forked DataLoader worker: its parent decides
        if signum in seen:
            raise RunTerminatedError(signum)
        seen.add(signum)
        flag.request(signum)

    previous = {s: signal.signal(s, handler) for s in chosen}
    try:
        yield flag
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


class PreemptionHook(Hook):
    """At each training iteration boundary: agree on the flag; if set, checkpoint the boundary.

    Args:
        flag: Set by `preemption_signals` (or by hand).
    """

    priority = "LOWEST"

    def __init__(self, flag: PreemptionFlag) -> None:
        self.flag = flag
        #: The agreed signal, and the (epoch, iter) of the boundary; None until agreed.
        self.agreed: tuple[int, int, int] | None = None
        self._buffer: torch.Tensor | None = None

    def before_run(self, runner: BaseRunner) -> None:
        if runner.work_dir is None:
            raise RunnerError(
                "PreemptionHook needs runner.work_dir", hint="give the runner a work_dir"
            )
        self.agreed = None
        self._buffer = None
        if runner.world_size > 1:
            device = torch.device("cpu")
            if torch_dist.get_backend() == "nccl":  # untested here: no GPU in CI
                device = torch.device("cuda", torch.cuda.current_device())
            # Allocated once: the per-iteration cost is the collective alone.
            self._buffer = torch.zeros(1, dtype=torch.int32, device=device)

    def after_train_iter(self, runner: BaseRunner) -> None:
        if self.agreed is not None:
            return
        signum = self.flag.signum or 0
        buffer = self._buffer
        if buffer is not None:
            buffer.fill_(signum)
            torch_dist.all_reduce(buffer, op=torch_dist.ReduceOp.MAX)
            signum = int(buffer.item())
        if not signum:
            return
        # The boundary the loop is about to commit: `iter` moves on after this stage.
        self.agreed = (signum, runner.epoch, runner.iter + 1)
        if not _boundary_checkpoint_queued(runner):
            runner.save_checkpoint(_checkpoint_dir(runner))


class PreemptionStopHook(Hook):
    """At the first stage after the preemption checkpoint's commit: wait for it, then stop.

    Args:
        preemption: The `PreemptionHook` whose agreement it acts on.
    """

    priority = "HIGHEST"

    def __init__(self, preemption: PreemptionHook) -> None:
        self.preemption = preemption

    def _stop(self, runner: BaseRunner) -> None:
        agreed = self.preemption.agreed
        if agreed is None:
            return
        runner.wait_for_checkpoints()  # durable, and handed to the listeners
        if runner.world_size > 1:
            # Rank 0 writes; the others must not exit before (torchrun would then
            # stop rank 0 mid-write, and the checkpoint would be lost).
            torch_dist.barrier()
        signum, epoch, iteration = agreed
        runner.logger.info(
            "preempted by %s after iteration %d: checkpoint saved, stopping",
            _signal_name(signum),
            iteration,
        )
        raise PreemptedError(signum, epoch, iteration)

    # Every stage that can follow the commit of a training iteration's checkpoint.
    def before_train_iter(self, runner: BaseRunner) -> None:
        self._stop(runner)

    def before_val_iter(self, runner: BaseRunner) -> None:
        self._stop(runner)

    def before_val_epoch(self, runner: BaseRunner) -> None:
        self._stop(runner)

    def after_train_epoch(self, runner: BaseRunner) -> None:
        self._stop(runner)


def preemption_hooks(flag: PreemptionFlag) -> list[tuple[Hook, str]]:
    """The two hooks acting on ``flag``, with their priorities (``train(extra_hooks=...)``).

    Every rank of a distributed run must register them (the agreement is a collective).
    """
    hook = PreemptionHook(flag)
    return [(hook, "LOWEST"), (PreemptionStopHook(hook), "HIGHEST")]


def join_ranks(timeout: float) -> bool:
    """Wait until every rank calls this too, for at most ``timeout`` seconds.

    After a preemption, the ranks other than 0 wait here until rank 0 has stored
    the run's end (the checkpoint's upload): torchrun stops the remaining workers
    with SIGTERM as soon as one exits, and a second SIGTERM stops rank 0 at once.
    Without a process group (or alone in it) it returns at once.

    Returns:
        False when it timed out or the group failed (logged; the caller goes on
        exiting), else True.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return True
    if torch_dist.get_world_size() == 1:
        return True
    try:
        if torch_dist.get_backend() == "gloo":
            torch_dist.monitored_barrier(timeout=datetime.timedelta(seconds=timeout))
        else:  # NCCL has no monitored barrier; the group's own timeout bounds it
            torch_dist.barrier()
    except RuntimeError as error:  # a peer gone, or too slow: exit anyway
        logging.getLogger("trackcfg").warning(
            "trackcfg: not every rank finished the preemption in time: %s", error
        )
        return False
    return True


def _boundary_checkpoint_queued(runner: BaseRunner) -> bool:
    """Whether a complete checkpoint of this boundary is already queued (CheckpointHook's).

    The runner's queue holds only this boundary's requests; one that re-points
    ``latest.pth`` is a main checkpoint (side files, EvalHook's best, do not).
    """
    return any(request.link is not None for request in runner._pending)


def _checkpoint_dir(runner: BaseRunner) -> Path:
    """Where the CheckpointHook writes (its ``out_dir``), else the work dir."""
    from trackcfg.runner.hooks.checkpoint import CheckpointHook

    for hook in runner.hooks:
        if isinstance(hook, CheckpointHook) and hook.out_dir:
            return Path(hook.out_dir)
    assert runner.work_dir is not None  # checked in before_run
    return Path(runner.work_dir)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
