"""The training process's handle on its tracking agent (see `trackcfg.tracking.agent`).

A tracked run does its MLflow work in a child process, the *agent*, so that
importing MLflow, opening the store, creating the run, uploading the snapshot and
checkpoints and delivering metrics all run beside training instead of before and
inside it. This module starts the agent and speaks its protocol: JSON lines on
the agent's stdin (requests) and on its stdout (replies).

Requests, in the order a run sends them::

    start       create the run (experiment, name, tags, params) and upload the
                snapshot written to a local directory, with the git state the
                agent captured when it started                   -> ready | error
    attach      continue an existing run (resume)                -> ready | error
    checkpoint  a durably complete checkpoint to upload (its pin, and the file
                it pins), with the journal's last sequence number  (no reply)
    end         the final status, and the metric records the journal could
                not write to disk: deliver, upload, set it         -> done

``start`` and ``attach`` carry the run's lease (`trackcfg.tracking.agent.lease`), which
the agent renews until the run ends and then removes.

Metrics do not travel through the pipe: the training side journals them to disk
(`MetricJournal`) and the agent delivers the journal. Only records the disk
refused until the end (a full disk) come with ``end``. When the training process
dies without ``end`` (SIGKILL), its end of the pipe closes; the agent still
delivers everything journaled, uploads the checkpoints it was told about and marks
the run KILLED.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trackcfg.errors import TrackingError
from trackcfg.tracking.agent.lease import Lease

if TYPE_CHECKING:
    from trackcfg.tracking.agent.journal import MetricRecord

__all__ = [
    "OP_ATTACH",
    "OP_CHECKPOINT",
    "OP_END",
    "OP_START",
    "REPLY_DONE",
    "REPLY_ERROR",
    "REPLY_READY",
    "AgentDone",
    "AgentReady",
    "TrackingAgent",
]

_logger = logging.getLogger(__name__)

OP_START = "start"
OP_ATTACH = "attach"
OP_CHECKPOINT = "checkpoint"
OP_END = "end"
REPLY_READY = "ready"
REPLY_ERROR = "error"
REPLY_DONE = "done"


@dataclass(frozen=True, slots=True)
class AgentReady:
    """The run the agent tracks.

    Attributes:
        run_id: The MLflow run.
        experiment_id: Its experiment.
        git_dirty: The project's tracked files differed from its commit when the
            agent captured the git state (a new run only).
    """

    run_id: str
    experiment_id: str
    git_dirty: bool = False


@dataclass(frozen=True, slots=True)
class AgentDone:
    """What the agent reported when the run ended.

    Attributes:
        pending: Metrics still only in the journal (``trackcfg sync`` sends them).
        status_set: Whether the store took the final status (else ``sync`` sets it).
        lost: Metrics neither journaled nor delivered (the disk and the store both
            refused until the end).
        checkpoints_pending: Checkpoints not uploaded (``trackcfg sync`` uploads them).
    """

    pending: int
    status_set: bool
    lost: int = 0
    checkpoints_pending: int = 0


class TrackingAgent:
    """A running tracking agent process and its two pipes.

    Requests may come from any thread (checkpoints arrive from the runner's writer
    thread); replies are read by the thread that waits for them.
    """

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._write_lock = threading.Lock()
        self._buffer = bytearray()
        self._ready: AgentReady | None = None
        self._broken = False
        self._asked = False  # `start` or `attach` sent: a run is (being) tracked

    @classmethod
    def spawn(
        cls, tracking_uri: str, *, project: Path | None = None, debug: bool = False
    ) -> TrackingAgent:
        """Start an agent for ``tracking_uri``; it imports MLflow and opens the store at once.

        The agent gets the store as ``MLFLOW_TRACKING_URI`` in its environment, never
        on its command line.

        Given ``project`` (a path inside the run's git work tree), the agent first
        captures its git state, which a ``start`` request then records (tags and
        ``git.json``/``git.patch`` in the snapshot): git runs beside the trainer's
        start instead of before it. The agent inherits stderr (its warnings reach
        the user) and ignores SIGINT and SIGTERM: the training process tells it how
        the run ended.
        """
        from trackcfg.tracking.mlflow_run import to_client_uri

        argv = [sys.executable, "-m", "trackcfg.tracking.agent"]
        if project is not None:
            argv += ["--git-project", str(project)]
        if debug:
            argv.append("--debug")
        # The store travels in the environment, never in argv: every user on the
        # machine can read a process's command line (`ps`), only its owner its
        # environment. Basic-auth credentials of an HTTP store go as MLflow's
        # MLFLOW_TRACKING_USERNAME/PASSWORD (`to_client_uri` put them there).
        env = dict(os.environ, MLFLOW_TRACKING_URI=to_client_uri(tracking_uri))
        # MLflow's usage telemetry deletes its session variable from a thread of its
        # own and can race another thread doing the same (a run once failed to start
        # on `_MLFLOW_TELEMETRY_SESSION_ID`); the agent needs none of it. A user's
        # explicit setting wins.
        env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, env=env
        )
        return cls(proc)

    @property
    def pid(self) -> int:
        """The agent's process id."""
        return self._proc.pid

    @property
    def started(self) -> bool:
        """Whether `start` or `attach` was sent (before: `abandon` leaves no run behind)."""
        return self._asked

    # -- requests ---------------------------------------------------------------------

    def start(
        self,
        *,
        experiment: str,
        name: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        truncated: Sequence[str],
        snapshot: Path,
        work_dir: Path,
        keep_last: int | None,
        lease: Lease,
    ) -> None:
        """Ask for a new run held by ``lease`` (the agent renews it); `wait_ready` returns it."""
        self._asked = True
        self._send(
            {
                "op": OP_START,
                "experiment": experiment,
                "name": name,
                "tags": dict(tags),
                "params": dict(params),
                "truncated": list(truncated),
                "snapshot": str(snapshot),
                "work_dir": str(work_dir),
                "keep_last": keep_last,
                "lease": lease.to_tag(),
            }
        )

    def attach(
        self,
        *,
        run_id: str,
        experiment_id: str,
        work_dir: Path,
        keep_last: int | None,
        lease: Lease,
    ) -> None:
        """Ask the agent to track the existing run ``run_id`` (a resume) under ``lease``."""
        self._asked = True
        self._send(
            {
                "op": OP_ATTACH,
                "run_id": run_id,
                "experiment_id": experiment_id,
                "work_dir": str(work_dir),
                "keep_last": keep_last,
                "lease": lease.to_tag(),
            }
        )

    def checkpoint(
        self,
        *,
        path: Path,
        digest: str,
        epoch: int,
        iter: int,
        seq: int,
        source: Path | None = None,
    ) -> None:
        """Hand over a durably complete checkpoint for upload (never blocks on the store).

        ``path`` is what to upload: a pin of the checkpoint ``source`` (see
        `trackcfg.tracking.agent.uploads`), or the checkpoint itself (``source`` None).
        """
        self._send(
            {
                "op": OP_CHECKPOINT,
                "path": str(path),
                "source": None if source is None else str(source),
                "digest": digest,
                "epoch": epoch,
                "iter": iter,
                "seq": seq,
            }
        )

    def end(
        self,
        status: str,
        *,
        error: str | None,
        final_seq: int | None,
        delivery_timeout: float,
        upload_timeout: float,
        unjournaled: Sequence[MetricRecord] = (),
        tags: Mapping[str, str] | None = None,
    ) -> AgentDone | None:
        """Report the run's end and wait until the agent has stored it.

        ``unjournaled`` are the records the journal could not write (`MetricJournal.
        unjournaled`): the agent journals them if the disk takes them now, and
        delivers them from memory otherwise. ``tags`` are set with the final status
        (`TAG_PREEMPTED` for a preempted run).

        Returns:
            The agent's report; None if it died or did not answer in time (what it
            could not deliver stays in the journal for ``trackcfg sync``).

        Raises:
            TrackingError: the agent could not create the run at all (the run ended
                before `wait_ready` heard so); there is no run to report to.
        """
        self._send(
            {
                "op": OP_END,
                "status": status,
                "error": error,
                "end_time": int(time.time() * 1000),
                "final_seq": final_seq,
                "delivery_timeout": delivery_timeout,
                "upload_timeout": upload_timeout,
                "unjournaled": [r.to_list() for r in unjournaled],
                "tags": dict(tags or {}),
            }
        )
        self._close_requests()
        deadline = time.monotonic() + delivery_timeout + upload_timeout + 30.0
        while True:
            reply = self._read_reply(deadline)
            if reply is None:
                return None
            if reply.get("op") == REPLY_ERROR:
                self._proc.wait(timeout=10.0)
                raise _start_error(reply)
            if reply.get("op") == REPLY_DONE:
                # It exits at once (no teardown), and everything is stored already: a
                # machine too busy to schedule that exit soon must not fail the run.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=10.0)
                return AgentDone(
                    _count(reply, "pending"),
                    bool(reply.get("status_set")),
                    lost=_count(reply, "lost"),
                    checkpoints_pending=_count(reply, "checkpoints_pending"),
                )

    def abandon(self) -> None:
        """Tell the agent no run is coming (the config failed before `start`); it exits."""
        self._close_requests()
        try:
            self._proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()  # no reply is read any more

    # -- replies ---------------------------------------------------------------------

    def wait_ready(self) -> AgentReady:
        """Wait for the agent's answer to `start`/`attach`.

        Raises:
            TrackingError: the store refused (the agent's message), or the agent died.
        """
        if self._ready is not None:
            return self._ready
        reply = self._read_reply(None)
        if reply is None:
            raise TrackingError(
                f"the tracking agent (pid {self._proc.pid}) exited before the run started",
                hint="its error is printed above; run with --debug for details",
            )
        if reply.get("op") == REPLY_ERROR:
            raise _start_error(reply)
        self._ready = AgentReady(
            str(reply["run_id"]), str(reply["experiment_id"]), reply.get("git_dirty") is True
        )
        return self._ready

    def _read_reply(self, deadline: float | None) -> dict[str, object] | None:
        """The next reply line; None at EOF or when ``deadline`` (monotonic) passes."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([fd], [], [], wait)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        loaded = json.loads(line)
        return loaded if isinstance(loaded, dict) else {}

    # -- pipe ------------------------------------------------------------------------------

    def _send(self, message: dict[str, object]) -> None:
        data = (json.dumps(message) + "\n").encode()
        with self._write_lock:
            if self._broken or self._proc.stdin is None or self._proc.stdin.closed:
                return
            try:
                self._proc.stdin.write(data)
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                # The agent died: training goes on; the journal keeps the metrics and
                # `trackcfg sync` delivers them.
                self._broken = True
                _logger.warning(
                    "trackcfg: the tracking agent (pid %d) is gone; metrics stay in the "
                    "journal for `trackcfg sync`",
                    self._proc.pid,
                )

    def _close_requests(self) -> None:
        with self._write_lock:
            if self._proc.stdin is not None and not self._proc.stdin.closed:
                with contextlib.suppress(BrokenPipeError):
                    self._proc.stdin.close()


def _count(reply: dict[str, object], key: str) -> int:
    value = reply.get(key)
    return value if isinstance(value, int) else 0


def _start_error(reply: dict[str, object]) -> TrackingError:
    hint = reply.get("hint")
    return TrackingError(str(reply.get("message")), hint=hint if isinstance(hint, str) else None)
