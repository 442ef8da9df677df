"""Delivering a metric journal to MLflow: tail ``metrics.jsonl``, send, record what arrived.

`JournalDelivery` reads the journal a `MetricJournal` writes (possibly in
another process, while it writes), sends the records it has not delivered yet
with ``MlflowClient.log_batch`` (at most 1,000 per request, MLflow's limit) and
appends their sequence numbers to ``delivered``. A failed request is retried
with exponential backoff until the delivery is closed: a tracking server that
is away delays delivery but never loses a metric (what is left stays in the
journal for the next deliverer). Records the store refuses as invalid are set
aside in ``rejected`` so the others still go through.

Records the journal's writer could not write to disk (a full disk) reach the
delivery in memory instead (`JournalDelivery.add`, from the tracking agent). A
``delivered`` or ``rejected`` file the disk refuses to extend only costs a
duplicate send later (the store drops identical rows): delivery goes on.

One deliverer per journal at a time: it holds an exclusive ``flock`` on the
journal's ``deliver.lock`` for its whole life. The tracking agent of a killed
training process may still be delivering when ``trackcfg resume`` or
``trackcfg sync`` starts; they wait for it (the kernel drops the lock when a
deliverer dies, however it dies).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trackcfg.errors import JournalBusyError, first_line
from trackcfg.tracking.agent.journal import (
    DELIVERED_FILE,
    LOCK_FILE,
    METRICS_FILE,
    REJECTED_FILE,
    MetricRecord,
    RangeLog,
    parse_record,
    read_done,
    write_ranges,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "MAX_METRICS_PER_BATCH",
    "JournalDelivery",
    "Sender",
    "mlflow_sender",
]

_logger = logging.getLogger(__name__)

#: MLflow's limit on metrics per log_batch request (mlflow.utils.validation).
MAX_METRICS_PER_BATCH = 1000

#: Delivers records to the run; raises when they did not arrive.
Sender = Callable[[Sequence[MetricRecord]], None]

# MLflow error codes after which sending the same request again cannot succeed.
_PERMANENT_ERRORS = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"})


def mlflow_sender(tracking_uri: str, run_id: str) -> Sender:
    """A `Sender` that delivers records with ``MlflowClient.log_batch``."""
    clients: list[MlflowClient] = []  # made at the first send: a journal with
    # nothing left to deliver never imports MLflow

    def send(records: Sequence[MetricRecord]) -> None:
        from trackcfg.tracking.mlflow_run import log_metric_batch, open_client

        if not clients:
            clients.append(open_client(tracking_uri))
        log_metric_batch(
            client=clients[0],
            run_id=run_id,
            metrics=[(r.key, r.value, r.timestamp, r.step) for r in records],
        )

    return send


class JournalDelivery:
    """Deliver one journal directory's records from a background thread.

    Args:
        directory: The journal directory.
        send: Delivers a batch (see `mlflow_sender`).
        lock_timeout: Seconds to wait for another deliverer of this journal to
            finish; None waits as long as it takes.
        poll_interval: Seconds between looks for new records in ``metrics.jsonl``.
        send_interval: Seconds between delivery requests unless 1,000 records are
            waiting, someone waits for delivery, or the delivery closes (fewer,
            larger requests cost the server less).
        max_backoff: Longest wait between delivery attempts while the store is away.

    Raises:
        JournalBusyError: another process still delivers the journal after
            ``lock_timeout`` seconds.
    """

    def __init__(
        self,
        directory: Path,
        send: Sender,
        *,
        lock_timeout: float | None = 60.0,
        poll_interval: float = 0.2,
        send_interval: float = 1.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.directory = directory
        self._send = send
        self._poll_interval = poll_interval
        self._send_interval = send_interval
        self._max_backoff = max_backoff
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _acquire(directory / LOCK_FILE, lock_timeout)

        self._done_before = read_done(directory)
        self._offset = 0
        self._delivered_log = RangeLog(directory / DELIVERED_FILE)
        self._record_errors = 0
        self._added: set[int] = set()  # sequence numbers `add` handed over
        self._read_lock = threading.Lock()  # one reader of metrics.jsonl at a time

        self._cond = threading.Condition()
        self._unsent: list[MetricRecord] = []
        self._read_seq = 0  # highest sequence number read from the file
        self._delivered_seq = 0  # every record up to this one is delivered (or set aside)
        self._delivered = 0
        self._rejected = 0
        self._send_errors = 0
        self._waiters = 0
        self._closing = False
        self._drained = False  # a read after closing found nothing left to send
        self._give_up = False
        self._abandoned = False
        self._wake = threading.Event()
        self._read_new()
        self._thread = threading.Thread(
            target=self._loop, name=f"trackcfg-deliver-{directory.name[:8]}", daemon=True
        )
        self._thread.start()

    # -- status ------------------------------------------------------------------

    @property
    def delivered_count(self) -> int:
        """Records this delivery sent successfully."""
        with self._cond:
            return self._delivered

    @property
    def rejected_count(self) -> int:
        """Records the store refused as invalid (kept in ``rejected``)."""
        with self._cond:
            return self._rejected

    @property
    def pending_count(self) -> int:
        """Records read from the journal and not yet delivered."""
        with self._cond:
            return len(self._unsent)

    def undelivered_added(self) -> tuple[MetricRecord, ...]:
        """Records handed over with `add` that are not delivered (they are not journaled)."""
        with self._cond:
            return tuple(r for r in self._unsent if r.seq in self._added)

    # -- control -------------------------------------------------------------------

    def add(self, records: Sequence[MetricRecord]) -> int:
        """Deliver ``records``, which the journal's writer could not write, from memory.

        They follow everything journaled (the writer has closed the journal); a
        record that reached the file all the same is delivered once.

        Returns:
            How many were taken (the others were in the file already).
        """
        with self._read_lock:
            self._read_new()  # everything journaled first: `_unsent` stays in order
        with self._cond:
            fresh = sorted(
                (r for r in records if r.seq > self._read_seq and r.seq not in self._added),
                key=lambda r: r.seq,
            )
            if fresh:
                self._added.update(r.seq for r in fresh)
                self._unsent.extend(fresh)
                self._read_seq = fresh[-1].seq
                self._drained = False
                self._wake.set()
                self._cond.notify_all()
            return len(fresh)

    def wait_delivered(self, seq: int, timeout: float | None = None) -> bool:
        """Wait until every record up to sequence number ``seq`` is delivered.

        The writer must have journaled ``seq`` already (`MetricJournal.flush`).
        """
        with self._cond:
            self._waiters += 1
            self._wake.set()
            try:
                return self._cond.wait_for(lambda: self._delivered_seq >= seq, timeout)
            finally:
                self._waiters -= 1

    def close(self, timeout: float | None = 30.0, *, final_seq: int | None = None) -> bool:
        """`stop`, then `release`; returns what `stop` returned."""
        try:
            return self.stop(timeout, final_seq=final_seq)
        finally:
            self.release()

    def stop(self, timeout: float | None = 30.0, *, final_seq: int | None = None) -> bool:
        """Deliver what the journal holds for up to ``timeout`` seconds, then stop sending.

        The journal stays locked until `release`.

        Args:
            timeout: Seconds to keep trying; what is left stays in the journal.
            final_seq: The writer's last sequence number, when it is known to have
                stopped: wait for records up to it to appear in the file too.

        Returns:
            True when every record was delivered.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._wake.set()

            def finished() -> bool:
                read_all = final_seq is None or self._read_seq >= final_seq
                return read_all and self._drained and not self._unsent

            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done = self._cond.wait_for(finished, remaining)
            self._give_up = True
            self._wake.set()
        # A thread stuck in a slow request is a daemon: it cannot keep the process
        # alive; it records nothing after `release` (its batch stays undelivered in
        # the journal, and the store drops the duplicate if the request got through).
        self._thread.join(timeout=None if done else 1.0)
        return done

    def release(self) -> None:
        """Close the journal's files and give up its lock (idempotent)."""
        with self._cond:
            if self._abandoned:
                return
            self._abandoned = True
            self._give_up = True  # released without `stop`: the thread stops too
            self._wake.set()
            self._delivered_log.close()
            os.close(self._lock_fd)  # releases the flock

    # -- delivery thread -------------------------------------------------------------

    def _loop(self) -> None:
        backoff = 0.25
        while True:
            with self._cond:
                closing = self._closing
            with self._read_lock:
                self._read_new()
            with self._cond:
                # Read after close() was called and nothing left: the file holds
                # nothing more to send.
                self._drained = closing and not self._unsent
                if self._drained:
                    self._cond.notify_all()
                if self._give_up:
                    return
                batch = self._unsent[:MAX_METRICS_PER_BATCH]
            if not batch:
                self._wake.wait(self._poll_interval)
                self._wake.clear()
                continue
            try:
                rejected = self._deliver(batch)
            except Exception as error:  # any failure is retried: nothing may be lost
                self._send_errors += 1
                if self._send_errors == 1 or self._send_errors % 20 == 0:
                    _logger.warning(
                        "trackcfg: metric delivery from %s failed (%s); %d pending, retrying",
                        self.directory,
                        first_line(error),
                        len(self._unsent),
                    )
                self._sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.25
            if self._send_errors:
                _logger.warning("trackcfg: metric delivery resumed")
                self._send_errors = 0
            self._record(batch, rejected)
            with self._cond:
                self._drained = False
                more = len(self._unsent) >= MAX_METRICS_PER_BATCH
                hurry = self._closing or self._waiters > 0
            if not more and not hurry:
                self._sleep(self._send_interval)

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` unless woken (close, a waiter) — then go on at once."""
        if self._wake.wait(seconds):
            self._wake.clear()

    def _read_new(self) -> None:
        """Read the complete lines appended to ``metrics.jsonl`` since the last read."""
        try:
            with open(self.directory / METRICS_FILE, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        except OSError as error:  # unreadable for now (EIO): what is in memory goes on
            _logger.debug("trackcfg: cannot read %s: %s", self.directory / METRICS_FILE, error)
            return
        end = data.rfind(b"\n") + 1
        if end == 0:
            return
        self._offset += end
        fresh: list[MetricRecord] = []
        highest = 0
        for line in data[:end].splitlines():
            record = parse_record(line)
            if record is None:
                continue
            highest = max(highest, record.seq)
            if record.seq not in self._done_before and record.seq not in self._added:
                fresh.append(record)
        with self._cond:
            if highest > self._read_seq:
                self._read_seq = highest
            if fresh:
                self._drained = False
            self._unsent.extend(fresh)
            if not self._unsent:
                self._delivered_seq = self._read_seq
            self._cond.notify_all()

    def _record(self, batch: Sequence[MetricRecord], rejected: Sequence[MetricRecord]) -> None:
        refused = {r.seq for r in rejected}
        with self._cond:
            if self._abandoned:  # closed meanwhile: another deliverer may own the journal
                return
            error = self._delivered_log.append([r.seq for r in batch if r.seq not in refused])
            if rejected:
                try:
                    with open(self.directory / REJECTED_FILE, "ab") as f:
                        f.write(b"".join(r.to_line() for r in rejected))
                        write_ranges(f, sorted(refused))
                except OSError as failure:
                    error = failure
            self._record_failed(error)
            del self._unsent[: len(batch)]
            self._delivered_seq = (
                self._unsent[0].seq - 1 if self._unsent else max(self._read_seq, batch[-1].seq)
            )
            self._delivered += len(batch) - len(rejected)
            self._rejected += len(rejected)
            self._cond.notify_all()

    def _record_failed(self, error: OSError | None) -> None:
        """Log (once per spell) that the journal cannot record what arrived; it goes on."""
        if error is None:
            self._record_errors = 0
        else:
            self._record_errors += 1
            if self._record_errors == 1:
                _logger.warning(
                    "trackcfg: cannot record delivered metrics in %s (%s); they are in the "
                    "store, and a later delivery sends them again (the store keeps one copy)",
                    self.directory,
                    error,
                )

    def _deliver(self, batch: Sequence[MetricRecord]) -> list[MetricRecord]:
        """Send ``batch``; returns the records the store refuses as invalid."""
        try:
            self._send(batch)
            return []
        except Exception as error:
            if not _is_permanent(error):
                raise
            if len(batch) == 1:
                _logger.error(
                    "trackcfg: the tracking store refused metric %r at step %d: %s",
                    batch[0].key,
                    batch[0].step,
                    first_line(error),
                )
                return list(batch)
        # Split to find the invalid records; the valid ones still go through.
        middle = len(batch) // 2
        return self._deliver(batch[:middle]) + self._deliver(batch[middle:])


def _is_permanent(error: Exception) -> bool:
    code = getattr(error, "error_code", None)
    return isinstance(code, str) and code in _PERMANENT_ERRORS


def _acquire(path: Path, timeout: float | None) -> int:
    """Open ``path`` and take an exclusive flock on it, waiting up to ``timeout`` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if deadline is not None and time.monotonic() >= deadline:
                os.close(fd)
                raise JournalBusyError(
                    f"{path.parent}: another process is still delivering this journal"
                ) from None
            time.sleep(0.05)
