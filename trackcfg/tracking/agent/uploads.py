"""Checkpoint uploads of a run: artifacts, the "latest complete checkpoint" pointer, keep-last-K.

`CheckpointUploader` uploads each durably complete checkpoint to the run's
``checkpoints/`` artifacts from its own thread. Only after an upload finished,
and after every metric logged before the checkpoint reached the store, does it
move the run's pointer (the tags ``trackcfg.latest_checkpoint`` and
``trackcfg.latest_checkpoint_digest``, with its iteration, epoch and time); only
then does it delete checkpoints beyond the newest ``keep_last``, remotely and
locally. A failed upload is retried with backoff. When training outpaces the
uploads, only the newest ``keep_last`` of the queued checkpoints are uploaded
(the others would be deleted right away).

Only the bytes the checkpoint's digest names are uploaded. The trainer pins each
checkpoint before it takes its final name (a hard link in the run's journal
directory, ``checkpoints/``; see `trackcfg.runner.checkpoint`), so another run
writing the same name in a shared work dir cannot change what is uploaded, and
the uploader checks the digest of what it sends: a file whose bytes differ is
never uploaded (it is logged, counted in `CheckpointUploader.rejected` and set
aside as ``<name>.rejected``).

A pin is published (`publish_pin`: renamed to the checkpoint's own name) after
the metrics before it are journaled, and removed once uploaded: the published
pins in a journal directory are the checkpoints no agent uploaded (it was
killed, or stopped waiting). `trackcfg sync` uploads them (`upload_stranded`),
moving the pointer and honouring keep-last-K as the agent would have.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trackcfg.checkpoint_file import (
    content_digest,
    read_checkpoint_record,
    remove_stale_temp_files,
)
from trackcfg.errors import first_line
from trackcfg.tracking.agent.journal import PINNED_DIR

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.store.artifact.artifact_repo import ArtifactRepository

__all__ = [
    "CHECKPOINT_ARTIFACT_DIR",
    "CheckpointUploader",
    "StrandedUploads",
    "UploadRequest",
    "best_checkpoint_metric",
    "checkpoint_number",
    "publish_pin",
    "stranded_checkpoints",
    "upload_stranded",
]

_logger = logging.getLogger(__name__)

#: Artifact directory of uploaded checkpoints inside a run.
CHECKPOINT_ARTIFACT_DIR = "checkpoints"

#: Waits until the journal's records up to a sequence number are delivered; False on timeout.
DeliveredUpTo = Callable[[int, float], bool]


def best_checkpoint_metric(name: str) -> str | None:
    """The metric of a best checkpoint's name (``EvalHook(save_best=...)``), else None.

    Best checkpoints are outside keep-last-K: kept until a newer best replaces them.

    Example:
        >>> best_checkpoint_metric("best_top_1_iter_400.pth"), best_checkpoint_metric("epoch_3.pth")
        ('top_1', None)
    """
    base = name.rsplit("/", 1)[-1]
    match = re.fullmatch(r"best_(.+)_(?:epoch|iter)_\d+\.pth", base)
    return match.group(1) if match else None


def checkpoint_number(name: str) -> int | None:
    """The epoch or iteration in a checkpoint's name (``checkpoints/epoch_3.pth`` -> 3).

    Example:
        >>> checkpoint_number("checkpoints/iter_400.pth"), checkpoint_number("notes.txt")
        (400, None)
    """
    base = name.rsplit("/", 1)[-1]
    numbers = re.findall(r"\d+", base)
    return int(numbers[-1]) if numbers and base.endswith(".pth") else None


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """A durably complete checkpoint to upload.

    Attributes:
        path: The checkpoint file.
        digest: xxh3-128 hex digest of its bytes.
        epoch: Completed epochs when it was taken.
        iter: Completed iterations when it was taken.
        seq: The journal's last sequence number when it was written: the metrics
            that must reach the store before the pointer moves to it.
        source: The checkpoint in its own directory, when ``path`` is a pin of it
            (what keep-last-K deletes locally).
        pinned: ``path`` is a pin: removed once uploaded.
    """

    path: Path
    digest: str
    epoch: int
    iter: int
    seq: int = 0
    source: Path | None = None
    pinned: bool = False

    @property
    def local(self) -> Path:
        """The checkpoint in its own directory (the one the runner wrote)."""
        return self.source if self.source is not None else self.path


class CheckpointUploader:
    """Upload a run's checkpoints in order and keep its "latest complete" pointer.

    Args:
        client: A client of the run's store.
        run_id: The run.
        delivered: Waits for the metrics before a checkpoint (None: do not wait).
        keep_last: Keep only this many newest checkpoints (remotely and locally);
            None keeps all.
        max_backoff: Longest wait between upload attempts while the store is away.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        *,
        delivered: DeliveredUpTo | None = None,
        keep_last: int | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
        self.client = client
        self.run_id = run_id
        self.keep_last = keep_last
        self.uploaded: list[UploadRequest] = []
        self.rejected: list[UploadRequest] = []
        self.upload_count = 0  # checkpoints this uploader uploaded and pointed to
        self._delivered = delivered
        self._max_backoff = max_backoff
        self._queue: queue.Queue[UploadRequest | None] = queue.Queue()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0
        self._repo: ArtifactRepository | None = None
        self._seeded = False
        self._thread = threading.Thread(target=self._loop, name="trackcfg-ckpt-upload", daemon=True)
        self._thread.start()

    def put(self, request: UploadRequest) -> None:
        """Queue a checkpoint for upload."""
        with self._idle:
            self._pending += 1
        self._queue.put(request)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every queued checkpoint is uploaded; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Finish queued uploads (up to ``timeout``), then stop the upload thread."""
        done = self.wait(timeout)
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=1.0)
        return done

    # -- upload thread -----------------------------------------------------------------

    def _loop(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while True:  # everything queued meanwhile (training outpaced the uploads)
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            requests = [r for r in batch if r is not None]
            if self.keep_last is not None:
                # Older ones would be deleted right after their upload: skip them.
                # (Best checkpoints are outside keep-last-K: always uploaded.)
                kept = [r for r in requests if best_checkpoint_metric(r.path.name) is None]
                skipped = kept[: -self.keep_last]
                requests = [r for r in requests if r not in skipped]
                self._record_skipped(skipped)
                for old in skipped:
                    _delete_local(old)  # keep-last-K locally too
                self._done(len(skipped))
            for request in requests:
                self._upload_with_retries(request)
                self._done(1)

    def _record_skipped(self, skipped: list[UploadRequest]) -> None:
        """Tag checkpoints never uploaded (superseded in the queue): `verify` compares them too."""
        from trackcfg.tracking.mlflow_run import set_tags

        tags = dict(_checkpoint_tag(r) for r in skipped if r.path.is_file())
        if not tags:
            return
        try:
            set_tags(self.client, self.run_id, tags)
        except Exception as error:  # a record only: never hold back the uploads for it
            _logger.warning(
                "trackcfg: cannot record skipped checkpoints %s: %s",
                ", ".join(sorted(tags)),
                first_line(error),
            )

    def _done(self, count: int) -> None:
        if count:
            with self._idle:
                self._pending -= count
                self._idle.notify_all()

    def _upload_with_retries(self, request: UploadRequest) -> None:
        backoff = 0.25
        while not self._stop.is_set():
            try:
                self._upload(request)
                return
            except Exception as error:  # retried: the pointer must not move early
                if not request.path.is_file():
                    self._vanished(request)
                    return
                _logger.warning(
                    "trackcfg: uploading checkpoint %s failed (%s); retrying",
                    request.path.name,
                    first_line(error),
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    def _upload(self, request: UploadRequest) -> None:
        from trackcfg.tracking.mlflow_run import (
            TAG_LATEST_CHECKPOINT,
            TAG_LATEST_CHECKPOINT_DIGEST,
            TAG_LATEST_CHECKPOINT_EPOCH,
            TAG_LATEST_CHECKPOINT_ITER,
            TAG_LATEST_CHECKPOINT_TIME,
            set_tags,
        )

        if not request.path.is_file():
            self._vanished(request)
            return
        # Exactly the bytes the digest names: checked before the upload, and the
        # file must still be the same one after it (a path the runner does not pin
        # could be replaced by another run meanwhile; then the next attempt rejects it).
        before = os.stat(request.path)
        actual = content_digest(request.path)
        if actual != request.digest:
            self._reject(request, actual)
            return
        # The digest travels inside the file (its trailer), in the pointer tag and in
        # the checkpoint's own tag, which outlives the file (keep-last-K): `verify`
        # compares every checkpoint's training state with it.
        own_tag, own_record = _checkpoint_tag(request)
        self.client.log_artifact(self.run_id, str(request.path), CHECKPOINT_ARTIFACT_DIR)
        after = os.stat(request.path)
        if (after.st_ino, after.st_dev, after.st_mtime_ns, after.st_size) != (
            before.st_ino,
            before.st_dev,
            before.st_mtime_ns,
            before.st_size,
        ):
            raise RuntimeError(f"{request.path} was replaced while it was uploaded")
        if self._delivered is not None and not self._delivered(request.seq, 30.0):
            # Every metric logged before this checkpoint should be in the store before
            # a resume can start from it: a resume on another machine (without the
            # journal) relies on the store's history. After 30 s the pointer moves
            # anyway; the metrics stay journaled for `trackcfg sync`.
            _logger.warning("trackcfg: metrics before %s not yet delivered", request.path.name)
        set_tags(
            self.client,
            self.run_id,
            {
                TAG_LATEST_CHECKPOINT: f"{CHECKPOINT_ARTIFACT_DIR}/{request.path.name}",
                TAG_LATEST_CHECKPOINT_DIGEST: request.digest,
                TAG_LATEST_CHECKPOINT_ITER: str(request.iter),
                TAG_LATEST_CHECKPOINT_EPOCH: str(request.epoch),
                TAG_LATEST_CHECKPOINT_TIME: str(int(time.time() * 1000)),
                own_tag: own_record,
            },
        )
        self.upload_count += 1
        if request.pinned:  # uploaded and pointed to: no longer stranded
            request.path.unlink(missing_ok=True)
        metric = best_checkpoint_metric(request.path.name)
        if metric is not None:
            self._uploaded_best(request, metric)
            return
        if self.keep_last is not None and not self._seeded:
            self.uploaded = self._earlier_uploads(request)
            self._seeded = True
        self.uploaded = [c for c in self.uploaded if c.path.name != request.path.name]
        self.uploaded.append(request)
        if self.keep_last is not None:
            while len(self.uploaded) > self.keep_last:
                self._prune(self.uploaded.pop(0))

    def _uploaded_best(self, request: UploadRequest, metric: str) -> None:
        """Tag the run with a new best checkpoint; delete the earlier best remotely.

        Locally, `EvalHook` deletes the earlier best itself once the new one is durable.
        """
        from trackcfg.tracking.mlflow_run import (
            TAG_BEST_CHECKPOINT,
            TAG_BEST_EPOCH,
            TAG_BEST_ITER,
            TAG_BEST_METRIC,
            artifact_repository,
            set_tags,
        )

        set_tags(
            self.client,
            self.run_id,
            {
                TAG_BEST_CHECKPOINT: f"{CHECKPOINT_ARTIFACT_DIR}/{request.path.name}",
                TAG_BEST_METRIC: metric,
                TAG_BEST_EPOCH: str(request.epoch),
                TAG_BEST_ITER: str(request.iter),
            },
        )
        for info in self.client.list_artifacts(self.run_id, CHECKPOINT_ARTIFACT_DIR):
            name = info.path.rsplit("/", 1)[-1]
            if info.is_dir or name == request.path.name or best_checkpoint_metric(name) is None:
                continue
            if self._repo is None:
                self._repo = artifact_repository(self.client, self.run_id)
            try:
                self._repo.delete_artifacts(f"{CHECKPOINT_ARTIFACT_DIR}/{name}")  # type: ignore[no-untyped-call]
            except Exception as error:  # a leftover remote file is harmless
                _logger.warning("trackcfg: could not delete remote %s: %s", name, first_line(error))

    def _reject(self, request: UploadRequest, actual: str) -> None:
        _logger.error(
            "trackcfg: checkpoint %s holds other bytes than the trainer recorded (xxh3-128 %s, "
            "recorded %s): not uploaded%s",
            request.path,
            actual,
            request.digest,
            "; set aside as " + request.path.name + ".rejected" if request.pinned else "",
        )
        self.rejected.append(request)
        if request.pinned:
            request.path.replace(request.path.with_name(request.path.name + ".rejected"))

    @staticmethod
    def _vanished(request: UploadRequest) -> None:
        # The runner's CheckpointHook (max_keep_ckpts) deleted it because newer ones
        # exist: when checkpoints come faster than uploads, the newer ones are what
        # the run's pointer needs. Not worth a warning.
        _logger.debug("trackcfg: checkpoint %s was deleted before its upload", request.path)

    def _earlier_uploads(self, request: UploadRequest) -> list[UploadRequest]:
        """Checkpoints an earlier process of this run uploaded (a resumed run prunes them too).

        Ordered by the number in their name (``epoch_3.pth``, ``iter_400.pth``); only
        the name matters for pruning.
        """
        found: list[tuple[int, UploadRequest]] = []
        for info in self.client.list_artifacts(self.run_id, CHECKPOINT_ARTIFACT_DIR):
            name = info.path.rsplit("/", 1)[-1]
            number = checkpoint_number(name)
            if info.is_dir or number is None or name == request.path.name:
                continue
            if best_checkpoint_metric(name) is not None:  # outside keep-last-K
                continue
            earlier = UploadRequest(request.local.with_name(name), "", 0, number)
            found.append((number, earlier))
        return [c for _, c in sorted(found, key=lambda item: item[0])]

    def _prune(self, old: UploadRequest) -> None:
        from trackcfg.tracking.mlflow_run import artifact_repository

        if self._repo is None:  # one lookup per run, not per pruned checkpoint
            self._repo = artifact_repository(self.client, self.run_id)
        name = old.path.name
        try:
            self._repo.delete_artifacts(f"{CHECKPOINT_ARTIFACT_DIR}/{name}")  # type: ignore[no-untyped-call]
        except Exception as error:  # a leftover remote file is harmless
            _logger.warning("trackcfg: could not delete remote %s: %s", name, first_line(error))
        _delete_local(old)


def _checkpoint_tag(request: UploadRequest) -> tuple[str, str]:
    """The checkpoint's own tag: ``iter=<i> epoch=<e> xxh3-128=<file> [state=<state>]``."""
    from trackcfg.tracking.mlflow_run import TAG_CHECKPOINT_PREFIX

    record = read_checkpoint_record(request.path)
    state = record.state_digest if record is not None else None
    value = f"iter={request.iter} epoch={request.epoch} xxh3-128={request.digest}"
    return TAG_CHECKPOINT_PREFIX + request.path.name, value + (f" state={state}" if state else "")


def _delete_local(old: UploadRequest) -> None:
    """Delete a checkpoint keep-last-K no longer keeps: its pin, and its own file if it is ours.

    A shared work dir may hold another run's file under the same name by now:
    the file goes only if it still has this checkpoint's digest (or the digest is
    not known: an earlier process's upload, found by name).
    """
    if old.pinned:
        old.path.unlink(missing_ok=True)
        if old.source is None:
            return  # a pin `sync` found: the runner's own directory is the runner's
    local = old.local
    if old.digest:
        try:
            record = read_checkpoint_record(local)
            digest = record.digest if record is not None else content_digest(local)
        except OSError:
            return  # gone already
        if digest != old.digest:
            return
    local.unlink(missing_ok=True)


def publish_pin(pinned: Path, name: str) -> Path:
    """Publish a pin the checkpoint writer made: rename it to the checkpoint's ``name``.

    Called once the metrics before the checkpoint are journaled; from then on the
    pin is a checkpoint `trackcfg sync` uploads if no agent does. A pin of the same
    name (an earlier, never uploaded write of this run) is replaced.

    Returns:
        The published pin (the path to upload).
    """
    published = pinned.with_name(name)
    os.replace(pinned, published)
    fd = os.open(published.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return published


def stranded_checkpoints(journal: Path) -> list[UploadRequest]:
    """The published pins in a journal directory (see the module docstring), oldest first.

    Their digest, epoch and iteration come from their trailers; a pin without a
    trailer is listed with an empty digest (and rejected when uploaded).
    """
    directory = journal / PINNED_DIR
    if not directory.is_dir():
        return []
    remove_stale_temp_files(directory)  # hidden pins of writers that died before publishing
    found: list[tuple[int, str, UploadRequest]] = []
    for path in directory.glob("*.pth"):
        if path.name.startswith(".") or not path.is_file():
            continue
        record = read_checkpoint_record(path)
        if record is None:
            request = UploadRequest(path, "", 0, 0, pinned=True)
        else:
            request = UploadRequest(path, record.digest, record.epoch, record.iter, pinned=True)
        found.append((request.iter, path.name, request))
    return [request for _, _, request in sorted(found, key=lambda item: item[:2])]


@dataclass(frozen=True, slots=True)
class StrandedUploads:
    """What `upload_stranded` did.

    Attributes:
        uploaded: Checkpoints uploaded (the pointer moved to the newest).
        pending: Checkpoints still waiting (the store is away).
        rejected: Checkpoints whose bytes do not match their digest (not uploaded).
    """

    uploaded: int
    pending: int
    rejected: int


def upload_stranded(
    journal: Path,
    client: MlflowClient,
    run_id: str,
    *,
    keep_last: int | None,
    timeout: float,
) -> StrandedUploads:
    """Upload the checkpoints a run published but no agent uploaded (`stranded_checkpoints`).

    The caller holds the journal's delivery lock (no agent of the run is alive)
    and has delivered its metrics: the pointer may move at once.

    Args:
        journal: The run's journal directory.
        client: A client of the run's store.
        run_id: The run.
        keep_last: The run's keep-last-K (None: keep all).
        timeout: Seconds to keep trying while the store is away.
    """
    requests = stranded_checkpoints(journal)
    if not requests:
        return StrandedUploads(0, 0, 0)
    uploader = CheckpointUploader(client, run_id, keep_last=keep_last)
    for request in requests:
        uploader.put(request)
    uploader.close(timeout=timeout)
    pending = len(stranded_checkpoints(journal))
    return StrandedUploads(uploader.upload_count, pending, len(uploader.rejected))
