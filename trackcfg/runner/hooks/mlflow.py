"""MLflow hooks: metrics through the journal, checkpoints uploaded in the background.

Unlike mmcv's ``MlflowLoggerHook`` these hooks never touch MLflow's global active
run and never call MLflow on the training thread:

- `MlflowLoggerHook` hands every logged scalar to a `MetricJournal` (an
  in-memory append), with ``step`` = the global iteration (1-based, as mmcv);
- `MlflowCheckpointHook` listens to the runner's checkpoint writer and uploads each
  durably complete checkpoint to the run's
  ``checkpoints/`` artifacts from its own thread. Only after an upload finished
  does it move the run's "latest complete checkpoint" pointer (the tags
  ``trackcfg.latest_checkpoint`` and ``trackcfg.latest_checkpoint_digest``), and
  only then does it delete checkpoints beyond the newest ``keep_last``, remotely
  and locally. A failed upload is retried with backoff; training goes on. When
  training outpaces the uploads, only the newest ``keep_last`` of the queued
  checkpoints are uploaded (the others would be deleted right away).

Both hooks do nothing on ranks other than 0 (one MLflow run per job).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.hooks.logger import LoggerHook

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.store.artifact.artifact_repo import ArtifactRepository

    from trackcfg.runner.base_runner import BaseRunner
    from trackcfg.runner.checkpoint import SavedCheckpoint
    from trackcfg.tracking.journal import MetricJournal

__all__ = ["CHECKPOINT_ARTIFACT_DIR", "MlflowCheckpointHook", "MlflowLoggerHook"]

_logger = logging.getLogger(__name__)

#: Artifact directory of uploaded checkpoints inside a run.
CHECKPOINT_ARTIFACT_DIR = "checkpoints"


class MlflowLoggerHook(LoggerHook):
    """Log every scalar the runner logs to an MLflow run, via a `MetricJournal`.

    Args:
        journal: The run's journal (owned by the caller, who closes it).
        interval: Log every ``interval`` iterations (as `LoggerHook`).
        ignore_last: Skip the partial interval at the end of an epoch.
        reset_flag: Clear the log buffer output after logging.
        by_epoch: Count ``interval`` within each epoch.
    """

    def __init__(
        self,
        journal: MetricJournal,
        interval: int = 10,
        ignore_last: bool = True,
        reset_flag: bool = False,
        by_epoch: bool = True,
    ) -> None:
        super().__init__(
            interval=interval, ignore_last=ignore_last, reset_flag=reset_flag, by_epoch=by_epoch
        )
        self.journal = journal

    def log(self, runner: BaseRunner) -> None:
        """Queue the buffer's scalars (and lr/momentum) at the global iteration."""
        if runner.rank != 0:
            return
        self.journal.log_many(self.get_loggable_tags(runner), step=self.get_iter(runner))


class MlflowCheckpointHook(Hook):
    """Upload every complete checkpoint to the run and keep a "latest complete" pointer.

    Args:
        tracking_uri: The run's store.
        run_id: The run.
        journal: Flushed before the pointer moves, so every metric logged before the
            checkpoint is durable when a resume could start from it.
        keep_last: Keep only this many newest checkpoints (remotely and locally);
            None keeps all.
        max_backoff: Longest wait between upload attempts while the store is away.
    """

    priority = "LOW"

    def __init__(
        self,
        tracking_uri: str,
        run_id: str,
        journal: MetricJournal | None = None,
        keep_last: int | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.journal = journal
        self.keep_last = keep_last
        self.max_backoff = max_backoff
        self.uploaded: list[SavedCheckpoint] = []
        self._queue: queue.Queue[SavedCheckpoint | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0
        self._repo: ArtifactRepository | None = None
        self._seeded = False

    # -- hook stages -------------------------------------------------------------

    def before_run(self, runner: BaseRunner) -> None:
        if runner.rank != 0:
            return
        runner.add_checkpoint_listener(self.on_checkpoint)

    def after_run(self, runner: BaseRunner) -> None:
        if runner.rank != 0:
            return
        runner.wait_for_checkpoints()
        # Training is over: give uploads time to finish (a store that stays away
        # longer leaves the pointer at the last uploaded checkpoint).
        self.wait(timeout=120.0)

    # -- listener (runner's writer thread) ------------------------------------------

    def on_checkpoint(self, saved: SavedCheckpoint) -> None:
        """Queue ``saved`` for upload (called by the runner once it is durable)."""
        with self._idle:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._upload_loop, name="trackcfg-ckpt-upload", daemon=True
                )
                self._thread.start()
        self._queue.put(saved)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every queued checkpoint is uploaded; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Finish queued uploads (up to ``timeout``), then stop the upload thread."""
        done = self.wait(timeout)
        self._stop.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=1.0)
        return done

    # -- upload thread -----------------------------------------------------------------

    def _upload_loop(self) -> None:
        from mlflow import MlflowClient

        client: MlflowClient = MlflowClient(self.tracking_uri)
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while True:  # everything queued meanwhile (training outpaced the uploads)
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            saved_list = [s for s in batch if s is not None]
            if self.keep_last is not None:
                # Older ones would be deleted right after their upload: skip them.
                skipped, saved_list = saved_list[: -self.keep_last], saved_list[-self.keep_last :]
                for old in skipped:
                    old.path.unlink(missing_ok=True)  # keep-last-K locally too
                self._done(len(skipped))
            for saved in saved_list:
                self._upload_with_retries(client, saved)
                self._done(1)

    def _done(self, count: int) -> None:
        if count:
            with self._idle:
                self._pending -= count
                self._idle.notify_all()

    def _upload_with_retries(self, client: MlflowClient, saved: SavedCheckpoint) -> None:
        backoff = 0.25
        while not self._stop.is_set():
            try:
                self._upload(client, saved)
                return
            except Exception as error:  # retried: the pointer must not move early
                _logger.warning(
                    "trackcfg: uploading checkpoint %s failed (%s); retrying",
                    saved.path.name,
                    str(error).splitlines()[0] if str(error) else type(error).__name__,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def _upload(self, client: MlflowClient, saved: SavedCheckpoint) -> None:
        from trackcfg.tracking.mlflow_run import (
            TAG_LATEST_CHECKPOINT,
            TAG_LATEST_CHECKPOINT_DIGEST,
            TAG_LATEST_CHECKPOINT_EPOCH,
            TAG_LATEST_CHECKPOINT_ITER,
            TAG_LATEST_CHECKPOINT_TIME,
            set_tags,
        )

        if not saved.path.is_file():
            _logger.warning("trackcfg: checkpoint %s vanished before upload", saved.path)
            return
        # The digest travels inside the file (its trailer) and in the pointer tag.
        client.log_artifact(self.run_id, str(saved.path), CHECKPOINT_ARTIFACT_DIR)
        if self.journal is not None and not self.journal.wait_delivered(timeout=30.0):
            # Every metric logged before this checkpoint should be in the store before
            # a resume can start from it: a resume on another machine (without this
            # journal) relies on the store's history. After 30 s the pointer moves
            # anyway; the metrics stay journaled for `trackcfg sync`.
            _logger.warning("trackcfg: metrics before %s not yet delivered", saved.path.name)
        set_tags(
            client,
            self.run_id,
            {
                TAG_LATEST_CHECKPOINT: f"{CHECKPOINT_ARTIFACT_DIR}/{saved.path.name}",
                TAG_LATEST_CHECKPOINT_DIGEST: saved.digest,
                TAG_LATEST_CHECKPOINT_ITER: str(saved.iter),
                TAG_LATEST_CHECKPOINT_EPOCH: str(saved.epoch),
                TAG_LATEST_CHECKPOINT_TIME: str(int(time.time() * 1000)),
            },
        )
        if self.keep_last is not None and not self._seeded:
            self.uploaded = self._earlier_uploads(client, saved)
            self._seeded = True
        self.uploaded = [c for c in self.uploaded if c.path.name != saved.path.name]
        self.uploaded.append(saved)
        if self.keep_last is not None:
            while len(self.uploaded) > self.keep_last:
                self._prune(client, self.uploaded.pop(0))

    def _earlier_uploads(
        self, client: MlflowClient, saved: SavedCheckpoint
    ) -> list[SavedCheckpoint]:
        """Checkpoints an earlier process of this run uploaded (a resumed run prunes them too).

        Ordered by the number in their name (``epoch_3.pth``, ``iter_400.pth``); only
        the name matters for pruning.
        """
        from trackcfg.runner.checkpoint import SavedCheckpoint

        found: list[tuple[int, SavedCheckpoint]] = []
        for info in client.list_artifacts(self.run_id, CHECKPOINT_ARTIFACT_DIR):
            name = info.path.rsplit("/", 1)[-1]
            number = re.findall(r"\d+", name)
            if info.is_dir or not name.endswith(".pth") or not number or name == saved.path.name:
                continue
            earlier = SavedCheckpoint(saved.path.with_name(name), "", 0, int(number[-1]))
            found.append((int(number[-1]), earlier))
        return [c for _, c in sorted(found, key=lambda item: item[0])]

    def _prune(self, client: MlflowClient, old: SavedCheckpoint) -> None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        if self._repo is None:  # one lookup per run, not per pruned checkpoint
            artifact_uri = client.get_run(self.run_id).info.artifact_uri
            self._repo = get_artifact_repository(artifact_uri, tracking_uri=self.tracking_uri)
        repo = self._repo
        name = old.path.name
        try:
            repo.delete_artifacts(f"{CHECKPOINT_ARTIFACT_DIR}/{name}")  # type: ignore[no-untyped-call]
        except Exception as error:  # a leftover remote file is harmless
            _logger.warning("trackcfg: could not delete remote %s: %s", name, error)
        Path(old.path).unlink(missing_ok=True)
