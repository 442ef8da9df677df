"""MLflow hooks: the training side of a tracked run; never a call into MLflow.

Unlike mmcv's ``MlflowLoggerHook`` these hooks never touch MLflow's global active
run, and nothing they do waits on the store:

- `MlflowLoggerHook` hands every logged scalar to the run's `MetricJournal` (an
  in-memory append), with ``step`` = the global iteration (1-based, as mmcv), and
  then to its metric listeners (``trackcfg verify`` compares them as they come);
- `MlflowCheckpointHook` listens to the runner's checkpoint writer and hands each
  durably complete checkpoint, with the journal's last sequence number at that
  moment, to a publisher — the tracking agent, which uploads it and then moves
  the run's "latest complete checkpoint" pointer (`trackcfg.tracking.agent.uploads`).
  With a journal attached, the writer pins each checkpoint in the journal's
  ``checkpoints/`` before committing it, so what is uploaded is exactly what
  this run wrote, even when another run writes the same name in the same work dir.

The journal may be attached after the hooks are registered (`attach`): a tracked
run learns its run id only when the tracking agent has created it, just before
the first iteration. Both hooks do nothing on ranks other than 0 (one MLflow run
per job). They are not in ``HOOKS``: a config cannot name them (they need the
journal and publisher of a live run); `trackcfg run` adds them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from trackcfg.errors import RunnerError
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.hooks.logger import LoggerHook

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner
    from trackcfg.runner.checkpoint import SavedCheckpoint
    from trackcfg.tracking.agent.journal import MetricJournal

__all__ = ["CheckpointPublisher", "MetricListener", "MlflowCheckpointHook", "MlflowLoggerHook"]

#: Takes a durably complete checkpoint and the journal sequence number it follows.
CheckpointPublisher = Callable[["SavedCheckpoint", int], None]
#: Takes the scalars logged at one step and the step, on the training thread.
MetricListener = Callable[[Mapping[str, float], int], None]


class MlflowLoggerHook(LoggerHook):
    """Log every scalar the runner logs to an MLflow run, via a `MetricJournal`.

    Args:
        journal: The run's journal (owned by the caller, who closes it); None until
            `attach` is called, which must happen before the first log.
        interval: Log every ``interval`` iterations (as `LoggerHook`).
        ignore_last: Skip the partial interval at the end of an epoch.
        reset_flag: Clear the log buffer output after logging.
        by_epoch: Count ``interval`` within each epoch.
    """

    def __init__(
        self,
        journal: MetricJournal | None = None,
        interval: int = 10,
        ignore_last: bool = True,
        reset_flag: bool = False,
        by_epoch: bool = True,
    ) -> None:
        super().__init__(
            interval=interval, ignore_last=ignore_last, reset_flag=reset_flag, by_epoch=by_epoch
        )
        self.journal = journal
        self._listeners: list[MetricListener] = []

    def attach(self, journal: MetricJournal) -> None:
        """Log into ``journal`` from now on."""
        self.journal = journal

    def add_listener(self, listener: MetricListener) -> None:
        """Call ``listener(scalars, step)`` with what each `log` journals, right after it.

        On the training thread: an exception it raises stops training.
        """
        self._listeners.append(listener)

    def log(self, runner: BaseRunner) -> None:
        """Queue the buffer's scalars (and lr/momentum) at the global iteration."""
        if runner.rank != 0:
            return
        if self.journal is None:
            raise RunnerError(
                "MlflowLoggerHook has no journal to log into",
                hint="`trackcfg run` attaches one; in Python, call attach(journal) before "
                "the run starts",
            )
        tags, step = self.get_loggable_tags(runner), self.get_iter(runner)
        self.journal.log_many(tags, step=step)
        for listener in self._listeners:
            listener(tags, step)


class MlflowCheckpointHook(Hook):
    """Hand every durably complete checkpoint to ``publish``, after the metrics before it.

    Before publishing, the journal is flushed (on the runner's writer thread, not
    the training thread), so the sequence number passed along covers every metric
    logged before the checkpoint: the pointer to it may move only once they are
    delivered.

    Args:
        publish: Receives ``(saved checkpoint, journal sequence number)``.
        journal: The run's journal; may be attached later (`attach`).
    """

    priority = "LOW"

    def __init__(self, publish: CheckpointPublisher, journal: MetricJournal | None = None) -> None:
        self.publish = publish
        self.journal = journal

    def attach(self, journal: MetricJournal) -> None:
        """Flush ``journal`` before each publication from now on."""
        self.journal = journal

    def before_run(self, runner: BaseRunner) -> None:
        if runner.rank != 0:
            return
        from trackcfg.tracking.agent.journal import PINNED_DIR

        pin_dir = None if self.journal is None else self.journal.directory / PINNED_DIR
        runner.add_checkpoint_listener(self.on_checkpoint, pin_dir=pin_dir)

    def on_checkpoint(self, saved: SavedCheckpoint) -> None:
        """Publish ``saved`` (called by the runner's writer once it is durable)."""
        seq = 0
        if self.journal is not None:
            flushed = self.journal.flush(timeout=30.0)
            # Not flushed in time (a full disk): the records are numbered and kept; the
            # uploader waits for all of them to be delivered before moving the pointer.
            seq = flushed if flushed is not None else self.journal.last_seq
        self.publish(saved, seq)
