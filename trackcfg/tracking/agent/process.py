"""The tracking agent: the child process that does a tracked run's MLflow work.

``python -m trackcfg.tracking.agent`` is started by the training process
(`TrackingAgent.spawn`) before it loads the config, with the store in its
environment (``MLFLOW_TRACKING_URI``; never on its command line, which every user
can read). While the trainer imports torch and builds its model, the agent
imports MLflow and opens the store; then it creates the run, logs its params and
uploads the snapshot (``start``), or takes over an existing run (``attach``), and
answers ``ready``. From then on it delivers the run's metric journal
(`JournalDelivery`) and uploads the checkpoints it is told about
(`CheckpointUploader`), and at ``end`` it finishes both and sets the run's final
status. Nothing of this costs the training process more than a pipe write.

Metric records the trainer's journal could not write to disk (a full disk) come
with ``end``: the agent journals them if the disk takes them by then, delivers
them from memory otherwise, and journals what it could not deliver; only what
neither the disk nor the store took is lost, and then the reply says how many
and the run carries the error (tags ``trackcfg.error``, ``trackcfg.metrics_lost``).
A run that ends FINISHED loses the error tag (and note) an earlier failure left:
a resume finished it.

The agent outlives a trainer that is SIGKILLed: it notices (its stdin closes, or
its parent process changes), delivers everything the journal holds, uploads the
checkpoints it was told about and marks the run KILLED. It ignores SIGINT and
SIGTERM, which a terminal or a job scheduler sends the whole process group: the
trainer reports how the run ended, and the agent's own waits are bounded.

Protocol: see `trackcfg.tracking.agent.client`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from trackcfg.errors import RunLeaseError, TrackingError, first_line
from trackcfg.tracking.agent.client import (
    OP_ATTACH,
    OP_CHECKPOINT,
    OP_END,
    OP_START,
    REPLY_DONE,
    REPLY_ERROR,
    REPLY_READY,
)
from trackcfg.tracking.agent.lease import (
    RENEW_INTERVAL,
    TAG_LEASE,
    Lease,
    release_lease,
    renew_lease,
)
from trackcfg.tracking.redaction import RedactingFormatter

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from trackcfg.tracking.agent.delivery import JournalDelivery
    from trackcfg.tracking.agent.journal import MetricRecord
    from trackcfg.tracking.agent.uploads import CheckpointUploader
    from trackcfg.tracking.gitstate import GitState
    from trackcfg.tracking.snapshot import Snapshot

__all__ = ["TAG_METRICS_LOST", "main"]

_logger = logging.getLogger("trackcfg.agent")

#: Seconds between checks that the training process is still alive.
_PARENT_CHECK = 0.2
#: How much lower than the trainer's the agent's CPU priority is (``nice``).
_NICENESS = 10
#: Bounds on the last deliveries when the trainer died without saying how the run ended.
_ORPHAN_DELIVERY_TIMEOUT = 30.0
_ORPHAN_UPLOAD_TIMEOUT = 60.0

#: Tag: how many metrics of the run were neither journaled nor delivered.
TAG_METRICS_LOST = "trackcfg.metrics_lost"
#: How the note of a failed run starts (the one a finishing resume removes).


def main(argv: list[str] | None = None) -> int:
    """Run the agent until the run ends (or no run comes); returns the exit status."""
    from trackcfg.tracking.mlflow_run import to_client_uri

    parser = argparse.ArgumentParser(
        prog="python -m trackcfg.tracking.agent",
        epilog="The tracking store is MLFLOW_TRACKING_URI in the environment.",
    )
    parser.add_argument("--git-project", type=Path, help="capture this project's git state")
    parser.add_argument("--debug", action="store_true", help="third-party logs too")
    args = parser.parse_args(argv)
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        parser.error("MLFLOW_TRACKING_URI must name the tracking store")
    uri = to_client_uri(os.environ["MLFLOW_TRACKING_URI"])
    replies = _setup_process(args.debug)
    requests = _Requests(os.getppid())
    # While the trainer loads its config: the git state first (what the config was
    # loaded from), then MLflow's import. The store is opened once a run is asked
    # for: opening can create a database, which a config error must not leave behind.
    started = time.perf_counter()
    git, git_error = _capture_git(args.git_project)
    _import_mlflow()
    _logger.debug("trackcfg: agent: git state and MLflow import %.3f s", _since(started))
    first = requests.next()
    if first is None:
        return 0  # the trainer stopped before starting a run (e.g. a config error)
    try:
        if git_error is not None:
            raise git_error
        from trackcfg.tracking.mlflow_run import open_client

        run = _TrackedRun.open(open_client(uri), uri, first, git)
        _logger.debug("trackcfg: agent: run %s ready at %.3f s", run.run_id, _since(started))
    except Exception as error:
        message, hint = _describe(error, uri)
        _reply(replies, {"op": REPLY_ERROR, "message": message, "hint": hint})
        return 1
    ready = {"op": REPLY_READY, "run_id": run.run_id, "experiment_id": run.experiment_id}
    _reply(replies, {**ready, "git_dirty": bool(git is not None and git.dirty)})
    done = run.serve(requests)
    _reply(
        replies,
        {
            "op": REPLY_DONE,
            "pending": done.pending,
            "status_set": done.status_set,
            "lost": done.lost,
            "checkpoints_pending": done.checkpoints_pending,
        },
    )
    return 0


# -- process set-up -----------------------------------------------------------------------


def _setup_process(debug: bool) -> BinaryIO:
    """Priority, signals, logging, and stdout kept for replies only; returns the reply stream."""
    # Background work: on a busy machine the trainer's threads come first (torch's
    # OpenMP threads in particular lose far more to a competitor than it gains).
    with contextlib.suppress(OSError):
        os.nice(_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("trackcfg")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        for name in ("mlflow", "alembic", "urllib3", "sqlalchemy"):
            logging.getLogger(name).setLevel(logging.WARNING)
        for module in ("mlflow", "pydantic", "sqlalchemy", "alembic"):
            warnings.filterwarnings("ignore", module=module)
    return replies


def _reply(replies: BinaryIO, message: dict[str, object]) -> None:
    # A trainer that is gone reads no reply; the run's state is in the store regardless.
    with contextlib.suppress(BrokenPipeError):
        replies.write((json.dumps(message) + "\n").encode())


def _capture_git(project: Path | None) -> tuple[GitState | None, Exception | None]:
    if project is None:
        return None, None
    try:
        from trackcfg.tracking.gitstate import capture_git_state

        return capture_git_state(project), None
    except Exception as error:
        return None, TrackingError(
            f"{project}: cannot capture the git state: {first_line(error)}",
            hint="check that `git` works in this directory",
        )


def _since(start: float) -> float:
    return time.perf_counter() - start


def _import_mlflow() -> None:
    """Import MLflow's client now (about a second); a failure shows when it is used."""
    with contextlib.suppress(Exception):
        import mlflow.tracking  # noqa: F401


def _describe(error: Exception, uri: str) -> tuple[str, str | None]:
    """The message and hint the trainer raises as `TrackingError` for ``error``."""
    from trackcfg.tracking.mlflow_run import unusable_store

    reported = error if isinstance(error, TrackingError) else unusable_store(uri, error)
    return reported.message, reported.hint


class _Requests:
    """Requests from the trainer; None once it is gone (stdin closed or parent changed)."""

    def __init__(self, parent: int) -> None:
        self._parent = parent
        self._queue: queue.Queue[dict[str, object] | None] = queue.Queue()
        threading.Thread(target=self._read, name="trackcfg-agent-stdin", daemon=True).start()

    def _read(self) -> None:
        received = False
        for line in sys.stdin.buffer:
            try:
                message = json.loads(line)
            except ValueError:
                _logger.warning("trackcfg: agent: ignoring a malformed request: %r", line[:200])
                continue
            if isinstance(message, dict):
                received = True
                self._queue.put(message)
        if not received:
            # No run is coming (the trainer's config failed): nothing to finish, and
            # the trainer should not wait for MLflow's import to end.
            os._exit(0)
        self._queue.put(None)

    def next(self) -> dict[str, object] | None:
        """The next request; None when the trainer is gone and everything it sent is read."""
        while True:
            try:
                return self._queue.get(timeout=_PARENT_CHECK)
            except queue.Empty:
                pass
            if os.getppid() != self._parent:
                # Forked data-loader workers may keep the pipe open after the trainer
                # died; its parent changing is the sure sign. Take what it sent last.
                time.sleep(_PARENT_CHECK)
                try:
                    return self._queue.get_nowait()
                except queue.Empty:
                    return None


# -- the run -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Done:
    pending: int
    status_set: bool
    lost: int = 0
    checkpoints_pending: int = 0


class _TrackedRun:
    """One run's deliveries and uploads inside the agent."""

    def __init__(
        self,
        client: MlflowClient,
        uri: str,
        run_id: str,
        experiment_id: str,
        work_dir: Path,
        keep_last: int | None,
        lease: Lease,
    ) -> None:
        from trackcfg.tracking.agent.delivery import JournalDelivery, mlflow_sender
        from trackcfg.tracking.agent.journal import journal_dir
        from trackcfg.tracking.agent.uploads import CheckpointUploader

        self.client = client
        self.uri = uri
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.work_dir = work_dir
        self.journal = journal_dir(work_dir, run_id)
        self.delivery: JournalDelivery = JournalDelivery(
            self.journal, mlflow_sender(uri, run_id), lock_timeout=120.0
        )
        self.uploader: CheckpointUploader = CheckpointUploader(
            client, run_id, delivered=self.delivery.wait_delivered, keep_last=keep_last
        )
        self.lease = _LeaseKeeper(client, run_id, lease)

    @classmethod
    def open(
        cls,
        client: MlflowClient,
        uri: str,
        request: dict[str, object],
        git: GitState | None = None,
    ) -> _TrackedRun:
        """Create the run (``start``) or take over an existing one (``attach``).

        For ``start``, ``git`` (captured when the agent started) is added to the
        run's tags and to the snapshot; the snapshot is sealed (its manifest's root
        digest becomes the run's ``trackcfg.snapshot_digest`` tag) and uploaded, and
        the run gets what the MLflow UI shows of it (`trackcfg.tracking.description`).
        """
        from trackcfg.tracking import mlflow_run as mr
        from trackcfg.tracking.description import describe_run

        op = request.get("op")
        work_dir = Path(str(request["work_dir"]))
        keep = request.get("keep_last")
        keep_last = keep if isinstance(keep, int) else None
        claim = Lease.from_tag(str(request.get("lease", "")))
        if claim is None:
            raise TrackingError(f"tracking agent: a {op} request needs the run's lease")
        # The agent renews the lease: it outlives a killed trainer until the run is marked.
        lease = claim.with_pid(os.getpid())
        if op == OP_ATTACH:
            run_id, experiment_id = str(request["run_id"]), str(request["experiment_id"])
            try:
                renewed = renew_lease(client, run_id, lease)
            except Exception as error:  # the store is away: the trainer's claim stands
                _logger.debug("trackcfg: renewing the lease failed: %s", first_line(error))
            else:
                if renewed is None:
                    raise RunLeaseError(f"run {run_id}: another trainer took the run's lease")
            return cls(client, uri, run_id, experiment_id, work_dir, keep_last, lease)
        if op != OP_START:
            raise TrackingError(f"tracking agent: expected a start request, got {op!r}")
        if git is None:
            raise TrackingError("tracking agent: a start request needs --git-project")
        snapshot = Path(str(request["snapshot"]))
        root_digest = _seal_snapshot(snapshot, git)
        snap = _read_staged(snapshot, root_digest)
        experiment_id = mr.get_or_create_experiment(client, str(request["experiment"]), uri)
        requested = _str_map(request["tags"])
        config_file = requested.get(mr.TAG_CONFIG_FILE)
        tags = {
            **requested,
            **mr.git_tags(git),
            **(mr.source_tags(config_file) if config_file else {}),
            # Set with the run itself: no reader ever sees the run without it.
            mr.TAG_SNAPSHOT_DIGEST: root_digest,
            TAG_LEASE: lease.to_tag(),
        }
        run_id = mr.create_run(client, experiment_id, name=str(request["name"]), tags=tags)
        try:
            params = mr.FlatParams(_str_map(request["params"]), tuple(_strs(request["truncated"])))
            mr.log_params(client, run_id, params)
            _upload_snapshot(client, run_id, snapshot)
            if snap is not None:
                describe_run(client, run_id, snap)
        except BaseException as error:
            _set_final_status(client, run_id, "FAILED", f"{type(error).__name__}: {error}")
            raise
        run = cls(client, uri, run_id, experiment_id, work_dir, keep_last, lease)
        threading.Thread(
            target=_sync_leftovers, args=(work_dir, run_id), name="trackcfg-leftovers", daemon=True
        ).start()
        return run

    def serve(self, requests: _Requests) -> _Done:
        """Handle requests until ``end`` (or the trainer's death); returns the report."""
        from trackcfg.tracking.agent.uploads import UploadRequest

        while True:
            request = requests.next()
            if request is None:
                _logger.warning(
                    "trackcfg: the training process of run %s died without reporting how the "
                    "run ended; delivering what it journaled and marking the run KILLED",
                    self.run_id,
                )
                return self.finish(
                    "KILLED",
                    error="the training process died without reporting a status "
                    "(SIGKILL, out of memory or a crash)",
                    end_time=int(time.time() * 1000),
                    final_seq=None,
                    delivery_timeout=_ORPHAN_DELIVERY_TIMEOUT,
                    upload_timeout=_ORPHAN_UPLOAD_TIMEOUT,
                )
            op = request.get("op")
            if op == OP_CHECKPOINT:
                source = request.get("source")
                self.uploader.put(
                    UploadRequest(
                        Path(str(request["path"])),
                        str(request["digest"]),
                        _int(request["epoch"]),
                        _int(request["iter"]),
                        _int(request["seq"]),
                        source=Path(source) if isinstance(source, str) else None,
                        pinned=isinstance(source, str),
                    )
                )
            elif op == OP_END:
                error = request.get("error")
                final_seq = request.get("final_seq")
                return self.finish(
                    str(request["status"]),
                    error=error if isinstance(error, str) else None,
                    end_time=_int(request["end_time"]),
                    final_seq=final_seq if isinstance(final_seq, int) else None,
                    delivery_timeout=float(str(request["delivery_timeout"])),
                    upload_timeout=float(str(request["upload_timeout"])),
                    unjournaled=_records(request.get("unjournaled")),
                    tags=_str_map(request.get("tags") or {}),
                )
            else:
                _logger.warning("trackcfg: agent: ignoring request %r", op)

    def finish(
        self,
        status: str,
        *,
        error: str | None,
        end_time: int,
        final_seq: int | None,
        delivery_timeout: float,
        upload_timeout: float,
        unjournaled: Sequence[MetricRecord] = (),
        tags: Mapping[str, str] | None = None,
    ) -> _Done:
        """Finish uploads and deliveries (bounded), then set the final status and ``tags``."""
        from trackcfg.tracking.agent.uploads import stranded_checkpoints

        if unjournaled:
            self._take_over(unjournaled)
        # Uploads first: each waits for the metrics before its checkpoint, then moves
        # the pointer; the delivery keeps running meanwhile.
        self.uploader.close(timeout=upload_timeout)
        try:
            delivered = self.delivery.stop(timeout=delivery_timeout, final_seq=final_seq)
            lost = self._journal_leftovers()
            pending = self.delivery.pending_count - lost
        finally:
            self.delivery.release()
        checkpoints_pending = len(stranded_checkpoints(self.journal))
        if lost:
            reason = (
                f"{lost} metric(s) could neither be journaled in {self.journal} nor "
                "delivered to the tracking store: they are lost"
            )
            _logger.error("trackcfg: run %s: %s", self.run_id, reason)
            error = reason if error is None else f"{error}; {reason}"
        if not delivered:
            _logger.warning(
                "trackcfg: %d metric(s) of run %s are journaled in %s but not yet delivered; "
                "run `trackcfg sync %s` when the tracking store is reachable",
                pending,
                self.run_id,
                self.journal,
                self.work_dir,
            )
        if checkpoints_pending:
            _logger.warning(
                "trackcfg: %d checkpoint(s) of run %s are not uploaded yet; run `trackcfg sync "
                "%s` when the tracking store is reachable",
                checkpoints_pending,
                self.run_id,
                self.work_dir,
            )
        extra = {**(tags or {}), **({TAG_METRICS_LOST: str(lost)} if lost else {})}
        status_set = _set_final_status(
            self.client,
            self.run_id,
            status,
            error,
            end_time=end_time,
            journal=self.journal,
            extra_tags=extra,
        )
        # After the status: a resume waiting for this run sees it ended first.
        self.lease.release()
        return _Done(pending, status_set, lost, checkpoints_pending)

    def _take_over(self, records: Sequence[MetricRecord]) -> None:
        """Records the trainer could not journal: journal them now, else deliver from memory."""
        from trackcfg.tracking.agent.journal import append_records

        try:
            append_records(self.journal, records)
            _logger.info(
                "trackcfg: journaled %d metric record(s) the training process could not",
                len(records),
            )
        except OSError as error:
            taken = self.delivery.add(records)
            _logger.warning(
                "trackcfg: %d metric record(s) of run %s cannot be journaled (%s); delivering "
                "them from memory",
                taken,
                self.run_id,
                error,
            )

    def _journal_leftovers(self) -> int:
        """Journal what was delivered from memory but did not arrive; returns how many are lost."""
        from trackcfg.tracking.agent.journal import append_records

        left = self.delivery.undelivered_added()
        if not left:
            return 0
        try:
            append_records(self.journal, left)
        except OSError as error:
            _logger.error("trackcfg: cannot journal metrics of run %s: %s", self.run_id, error)
            return len(left)
        return 0


class _LeaseKeeper:
    """Renews the run's lease from its own thread until `release`."""

    def __init__(self, client: MlflowClient, run_id: str, lease: Lease) -> None:
        self._client = client
        self._run_id = run_id
        self._lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trackcfg-lease", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(RENEW_INTERVAL):
            try:
                renewed = renew_lease(self._client, self._run_id, self._lease)
            except Exception as error:  # the store is away: the TTL leaves room for retries
                _logger.debug("trackcfg: renewing the lease failed: %s", first_line(error))
                continue
            if renewed is None:
                # A new trainer took over (this run's trainer died, or its machine
                # looked gone): it waits for what this agent still delivers.
                _logger.info("trackcfg: the lease of run %s passed to a new trainer", self._run_id)
                return
            self._lease = renewed

    def release(self) -> None:
        """Stop renewing and remove the lease (left to expire if the store is away)."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        try:
            release_lease(self._client, self._run_id, self._lease)
        except Exception as error:
            _logger.debug("trackcfg: releasing the lease failed: %s", first_line(error))


def _seal_snapshot(staged: Path, git: GitState) -> str:
    """Complete the trainer's snapshot with the git state and seal it; returns its root digest."""
    from trackcfg.tracking.snapshot import seal_snapshot, write_git_state

    write_git_state(staged, git)
    return seal_snapshot(staged)


def _read_staged(staged: Path, root_digest: str) -> Snapshot | None:
    """The sealed snapshot, read back for the UI's description; None (warned) if unreadable.

    The trainer always stages a complete snapshot; one it could not have written
    still gets its run, without a description (`resume` reports the snapshot).
    """
    from trackcfg.errors import SnapshotError
    from trackcfg.tracking.snapshot import read_snapshot

    try:
        return read_snapshot(staged, root_digest=root_digest)
    except SnapshotError as error:
        _logger.warning("trackcfg: no description for the run: %s", error)
        return None


def _upload_snapshot(client: MlflowClient, run_id: str, staged: Path) -> None:
    """Upload the snapshot the trainer wrote to ``staged``; then remove the staging copy."""
    from trackcfg.tracking.snapshot import upload_snapshot

    upload_snapshot(client, run_id, staged)
    shutil.rmtree(staged.parent, ignore_errors=True)


def _set_final_status(
    client: MlflowClient,
    run_id: str,
    status: str,
    error: str | None,
    *,
    end_time: int | None = None,
    journal: Path | None = None,
    extra_tags: dict[str, str] | None = None,
) -> bool:
    """Set the run's status (and error tags); if the store is away, leave it to ``sync``.

    Returns:
        Whether the store took it.
    """
    from trackcfg.tracking import mlflow_run as mr
    from trackcfg.tracking.agent.journal import record_pending_status

    end_time = end_time if end_time is not None else int(time.time() * 1000)
    try:
        tags = dict(extra_tags or {})
        if status == "FINISHED":
            mr.clear_failure_tags(client, run_id)
        elif mr.TAG_PREEMPTED not in tags:
            # A resumed run's earlier preemption is stale once it ends otherwise.
            mr.clear_preempted_tag(client, run_id)
        if error is not None:
            tags[mr.TAG_ERROR] = error
            if status != "KILLED":
                # Above the description, which stays readable below it.
                note = client.get_run(run_id).data.tags.get(mr.TAG_NOTE, "")
                tags[mr.TAG_NOTE] = mr.with_failure_note(note, error)
        if tags:
            mr.set_tags(client, run_id, tags)
        mr.terminate_run(client, run_id, status, end_time)
        return True
    except Exception as failure:
        if journal is None:
            _logger.warning("trackcfg: cannot set run %s to %s: %s", run_id, status, failure)
            return False
        try:
            record_pending_status(journal, status, end_time)
        except OSError as error:  # a full disk: say so, never a traceback
            _logger.error(
                "trackcfg: cannot set run %s to %s (%s), nor leave the status for "
                "`trackcfg sync` in %s (%s)",
                run_id,
                status,
                first_line(failure),
                journal,
                error,
            )
            return False
        _logger.warning(
            "trackcfg: cannot set run %s to %s (%s); `trackcfg sync` will",
            run_id,
            status,
            first_line(failure),
        )
        return False


def _sync_leftovers(work_dir: Path, run_id: str) -> None:
    """Deliver journals earlier processes left in ``work_dir`` (not this run's)."""
    from trackcfg.tracking.sync import sync

    try:
        sync(work_dir, timeout=5.0, lock_timeout=0.0, exclude=(run_id,))
    except Exception as error:  # best effort: `trackcfg sync` is the way to insist
        _logger.warning("trackcfg: delivering old journals in %s failed: %s", work_dir, error)


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TrackingError(f"tracking agent: expected a mapping, got {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items()}


def _strs(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _records(value: object) -> list[MetricRecord]:
    from trackcfg.tracking.agent.journal import MetricRecord

    if not isinstance(value, list):
        return []
    records = []
    for item in value:
        try:
            records.append(MetricRecord.from_list(item))
        except (ValueError, TypeError):
            _logger.warning("trackcfg: agent: ignoring a malformed metric record %r", item)
    return records


def _int(value: object) -> int:
    return int(value) if isinstance(value, (int, float, str)) else 0
