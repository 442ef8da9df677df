"""MetricJournal: metrics journaled to local disk and delivered to MLflow in the background.

The training thread never waits on MLflow or on the disk: `MetricJournal.log`
appends a tuple to an in-memory deque (about a microsecond). Two daemon threads
do the rest:

- the *journaler* drains the deque every ``flush_interval`` seconds (0.25), gives each
  record the next sequence number, appends it to ``metrics.jsonl`` (one JSON line
  per record) and fsyncs once per batch;
- the *sender* delivers journaled records with ``MlflowClient.log_batch`` (at most
  1,000 per request, MLflow's limit) and appends the delivered sequence numbers to
  ``delivered``. A failed request is retried with exponential backoff, forever:
  a tracking server that is away delays delivery but neither blocks training nor
  loses a metric.

Exactly once. Every record carries the timestamp taken when it was logged, so a
record sent twice is the identical row, which MLflow's store drops (its primary
key is key, timestamp, step and value). A journal opened again — on the next
start in the same work dir, on resume, or by ``trackcfg sync`` — delivers the
records not listed in ``delivered``; a record whose delivery the killed process
could not record is sent again and deduplicated by the store. A record a process
had only in memory when it was SIGKILLed (at most ``flush_interval`` worth) was
never journaled; resume re-computes it, because the newest complete checkpoint
is older than what the journal holds (the checkpoint hook waits until the
metrics logged before a checkpoint are delivered before it moves the "latest
checkpoint" pointer, so even a resume without this journal finds them).

Files, under ``<work_dir>/.trackcfg/journal/<run_id>/``::

    meta.json        run id, tracking URI, and a final status still to be set
    metrics.jsonl    {"s": seq, "k": key, "v": value, "p": step, "t": ms}
    delivered        "first last" inclusive sequence ranges, one per line
    rejected         records the store refused as invalid (kept for inspection)

A line cut short by a SIGKILL is ignored (and cut off before appending again).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "JOURNAL_DIR",
    "JournalContents",
    "MetricJournal",
    "MetricRecord",
    "find_journals",
    "journal_dir",
    "mlflow_sender",
    "read_journal",
    "write_journal_meta",
]

_logger = logging.getLogger(__name__)

#: Where journals live, relative to a work dir.
JOURNAL_DIR = Path(".trackcfg") / "journal"

_METRICS = "metrics.jsonl"
_DELIVERED = "delivered"
_REJECTED = "rejected"
_META = "meta.json"

#: MLflow's limit on metrics per log_batch request (mlflow.utils.validation).
MAX_METRICS_PER_BATCH = 1000

# MLflow error codes after which sending the same request again cannot succeed.
_PERMANENT_ERRORS = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"})


@dataclass(frozen=True, slots=True)
class MetricRecord:
    """One journaled metric value.

    Attributes:
        seq: Sequence number, unique and increasing within the run's journal.
        key: Metric name.
        value: The value.
        step: Global iteration.
        timestamp: Milliseconds since the epoch, taken when it was logged.
    """

    seq: int
    key: str
    value: float
    step: int
    timestamp: int

    def to_line(self) -> bytes:
        """The journal line (JSON, newline-terminated)."""
        obj = {"s": self.seq, "k": self.key, "v": self.value, "p": self.step, "t": self.timestamp}
        return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


@dataclass(frozen=True, slots=True)
class JournalContents:
    """What a journal directory holds.

    Attributes:
        meta: The parsed ``meta.json`` (empty when missing).
        records: Every complete record, in sequence order.
        delivered: Sequence numbers recorded as delivered (or rejected).
        valid_bytes: Length of ``metrics.jsonl`` up to its last complete line.
    """

    meta: dict[str, object]
    records: tuple[MetricRecord, ...]
    delivered: frozenset[int]
    valid_bytes: int

    @property
    def undelivered(self) -> tuple[MetricRecord, ...]:
        """Records still to be delivered, in sequence order."""
        return tuple(r for r in self.records if r.seq not in self.delivered)


#: Delivers records to the run; raises when they did not arrive.
Sender = Callable[[Sequence[MetricRecord]], None]


def journal_dir(work_dir: Path | str, run_id: str) -> Path:
    """The journal directory of ``run_id`` in ``work_dir``."""
    return Path(work_dir) / JOURNAL_DIR / run_id


def find_journals(work_dir: Path | str) -> list[Path]:
    """Journal directories in ``work_dir`` or any directory below it (sorted).

    ``trackcfg sync work_dirs`` thus finds the journals of every run's work dir.
    """
    root = Path(work_dir)
    if not root.is_dir():
        return []
    found = {meta.parent for meta in root.glob(f"**/{JOURNAL_DIR.as_posix()}/*/{_META}")}
    return sorted(found)


def write_journal_meta(directory: Path, meta: dict[str, object]) -> None:
    """Atomically replace ``meta.json`` (a crash leaves the old or the new one)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (_META + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / _META)


def read_journal(directory: Path) -> JournalContents:
    """Read a journal directory; tolerates a last line cut short by a crash.

    Args:
        directory: A journal directory (see `journal_dir`).

    Returns:
        Its contents; a missing directory reads as an empty journal.
    """
    meta: dict[str, object] = {}
    meta_path = directory / _META
    if meta_path.is_file():
        loaded = json.loads(meta_path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            meta = loaded
    records: list[MetricRecord] = []
    valid = 0
    metrics_path = directory / _METRICS
    if metrics_path.is_file():
        data = metrics_path.read_bytes()
        valid = data.rfind(b"\n") + 1
        for line in data[:valid].splitlines():
            record = _parse_record(line)
            if record is not None:
                records.append(record)
    delivered: set[int] = set()
    for name in (_DELIVERED, _REJECTED):
        path = directory / name
        if path.is_file():
            delivered.update(_parse_ranges(path.read_bytes()))
    records.sort(key=lambda r: r.seq)
    return JournalContents(
        meta=meta, records=tuple(records), delivered=frozenset(delivered), valid_bytes=valid
    )


def _parse_record(line: bytes) -> MetricRecord | None:
    try:
        obj = json.loads(line)
        return MetricRecord(
            seq=int(obj["s"]),
            key=str(obj["k"]),
            value=float(obj["v"]),
            step=int(obj["p"]),
            timestamp=int(obj["t"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _parse_ranges(data: bytes) -> Iterable[int]:
    # Only newline-terminated lines count: a torn last line was never fsynced whole.
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            first, last = int(parts[0]), int(parts[1])
        except ValueError:
            continue
        yield from range(first, last + 1)


def _ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Compress sorted sequence numbers into inclusive ranges."""
    out: list[tuple[int, int]] = []
    for seq in seqs:
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def mlflow_sender(tracking_uri: str, run_id: str) -> Sender:
    """A `Sender` that delivers records with ``MlflowClient.log_batch``."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri)

    def send(records: Sequence[MetricRecord]) -> None:
        metrics = [Metric(r.key, r.value, r.timestamp, r.step) for r in records]
        client.log_batch(run_id, metrics=metrics, synchronous=True)

    return send


def _is_permanent(error: Exception) -> bool:
    code = getattr(error, "error_code", None)
    return isinstance(code, str) and code in _PERMANENT_ERRORS


class MetricJournal:
    """The metric journal of one run, with its background journaler and sender.

    Opening a journal that already holds undelivered records (left by a killed
    process) queues them for delivery first.

    Args:
        directory: The run's journal directory (see `journal_dir`).
        run_id: The MLflow run the metrics belong to.
        tracking_uri: Where to deliver them (recorded in ``meta.json`` for ``sync``).
        skip: ``(key, step)`` pairs already in the run (delivered by an earlier
            process); `log` drops them, so a resumed run logs every step once.
        send: Delivers a batch; default ``MlflowClient(tracking_uri).log_batch``.
        flush_interval: Seconds between journal writes: what a SIGKILL can lose from
            memory at most. Nothing is lost for good: those records are newer than
            any checkpoint a resume can start from (the checkpoint hook waits for the
            records logged before a checkpoint), so the resumed run logs them again.
            Few wake-ups matter: each one competes with torch's OpenMP threads.
        send_interval: Seconds between delivery requests unless 1,000 records are
            waiting, someone waits for delivery, or the journal closes (fewer, larger
            requests cost the training process and the server less).
        max_backoff: Longest wait between delivery attempts while the store is away.

    Example:
        >>> import tempfile
        >>> sent = []
        >>> j = MetricJournal(Path(tempfile.mkdtemp()), "run", "sqlite:///x.db",
        ...                   send=sent.extend)
        >>> j.log("train/loss", 0.5, step=1)
        >>> j.close(timeout=5)
        True
        >>> [(r.key, r.value, r.step) for r in sent]
        [('train/loss', 0.5, 1)]
    """

    def __init__(
        self,
        directory: Path,
        run_id: str,
        tracking_uri: str,
        *,
        skip: Iterable[tuple[str, int]] = (),
        send: Sender | None = None,
        flush_interval: float = 0.25,
        send_interval: float = 1.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.directory = directory
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self._flush_interval = flush_interval
        self._send_interval = send_interval
        self._max_backoff = max_backoff
        self._send = send if send is not None else mlflow_sender(tracking_uri, run_id)

        directory.mkdir(parents=True, exist_ok=True)
        contents = read_journal(directory)
        meta = dict(contents.meta)
        meta.update({"run_id": run_id, "tracking_uri": tracking_uri})
        write_journal_meta(directory, meta)
        self._skip: frozenset[tuple[str, int]] = frozenset(skip) | frozenset(
            (r.key, r.step) for r in contents.records
        )
        self._next_seq = max((r.seq for r in contents.records), default=0) + 1

        metrics_path = directory / _METRICS
        if metrics_path.exists() and metrics_path.stat().st_size != contents.valid_bytes:
            # Cut a torn last line so the next record starts on a line of its own.
            os.truncate(metrics_path, contents.valid_bytes)
        self._metrics_file = open(metrics_path, "ab")  # noqa: SIM115 (closed in close())
        self._delivered_file = open(directory / _DELIVERED, "ab")  # noqa: SIM115

        # Training thread -> journaler: deque.append/popleft are atomic under the GIL.
        self._queue: collections.deque[tuple[str, float, int, int]] = collections.deque()
        self._cond = threading.Condition()
        self._unsent: list[MetricRecord] = list(contents.undelivered)
        self._journaled_cycles = 0
        # Highest sequence number journaled / delivered (delivery is in order).
        self._journaled_seq = self._next_seq - 1
        undelivered = contents.undelivered
        self._delivered_seq = undelivered[0].seq - 1 if undelivered else self._journaled_seq
        self._started_cycles = 0
        self._delivered = 0
        self._rejected = 0
        self._send_errors = 0
        self._closing = False
        self._give_up = False
        self._waiters = 0
        self._wake = threading.Event()
        self._stop_sender = threading.Event()
        self._journaler = threading.Thread(
            target=self._journal_loop, name=f"trackcfg-journal-{run_id[:8]}", daemon=True
        )
        self._sender = threading.Thread(
            target=self._send_loop, name=f"trackcfg-sender-{run_id[:8]}", daemon=True
        )
        self._journaler.start()
        self._sender.start()

    # -- training thread -------------------------------------------------------

    def log(self, key: str, value: float, step: int) -> None:
        """Queue one metric value (never blocks; safe from the training thread).

        A ``(key, step)`` listed in ``skip`` or already in the journal is dropped.
        """
        if (key, step) in self._skip:
            return
        self._queue.append((key, float(value), step, time.time_ns() // 1_000_000))

    def log_many(self, metrics: dict[str, float], step: int) -> None:
        """Queue several metrics of one step."""
        now = time.time_ns() // 1_000_000
        skip = self._skip
        append = self._queue.append
        for key, value in metrics.items():
            if (key, step) not in skip:
                append((key, float(value), step, now))

    # -- control ---------------------------------------------------------------

    @property
    def undelivered_count(self) -> int:
        """Records journaled but not yet delivered (plus those still in memory)."""
        with self._cond:
            return len(self._unsent) + len(self._queue)

    @property
    def delivered_count(self) -> int:
        """Records delivered by this journal object (replayed ones included)."""
        with self._cond:
            return self._delivered

    @property
    def rejected_count(self) -> int:
        """Records the store refused as invalid (kept in ``rejected``)."""
        with self._cond:
            return self._rejected

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged before this call is durably journaled.

        Returns:
            True when journaled; False on timeout.
        """
        with self._cond:
            target = self._started_cycles + 1
            self._wake.set()
            return self._cond.wait_for(lambda: self._journaled_cycles >= target, timeout)

    def wait_delivered(self, timeout: float | None = None) -> bool:
        """Wait until everything logged before this call is journaled *and* delivered.

        Records logged meanwhile do not extend the wait (delivery is in sequence
        order, so "delivered up to" one sequence number covers all before it).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.flush(timeout):
            return False
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        with self._cond:
            target = self._journaled_seq
            self._waiters += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._delivered_seq >= target, remaining)
            finally:
                self._waiters -= 1

    def close(self, timeout: float | None = 30.0) -> bool:
        """Journal what is queued, deliver for up to ``timeout`` seconds, stop.

        What could not be delivered stays in the journal for the next start,
        resume or ``trackcfg sync``.

        Returns:
            True when every record was delivered.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._wake.set()
        self._journaler.join()
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        with self._cond:
            done = self._cond.wait_for(lambda: not self._unsent, remaining)
            self._give_up = True
            self._cond.notify_all()
        self._stop_sender.set()
        # A sender stuck in a slow request is a daemon thread: it cannot keep the
        # process alive, and its batch stays undelivered in the journal.
        self._sender.join(timeout=1.0 if not done else None)
        self._metrics_file.close()
        if not self._sender.is_alive():
            self._delivered_file.close()
        return done

    # -- background threads ------------------------------------------------------

    def _journal_loop(self) -> None:
        while True:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            with self._cond:
                self._started_cycles += 1
                closing = self._closing
            self._journal_queued()
            with self._cond:
                self._journaled_cycles += 1
                self._cond.notify_all()
            if closing:
                return

    def _journal_queued(self) -> None:
        records: list[MetricRecord] = []
        queue = self._queue
        while True:
            try:
                key, value, step, timestamp = queue.popleft()
            except IndexError:
                break
            records.append(MetricRecord(self._next_seq, key, value, step, timestamp))
            self._next_seq += 1
        if not records:
            return
        self._metrics_file.write(b"".join(r.to_line() for r in records))
        self._metrics_file.flush()
        os.fsync(self._metrics_file.fileno())
        with self._cond:
            self._unsent.extend(records)
            self._journaled_seq = records[-1].seq
            self._cond.notify_all()

    def _send_loop(self) -> None:
        backoff = 0.25
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._unsent) or self._give_up)
                if self._give_up and (not self._unsent or self._stop_sender.is_set()):
                    return
                batch = self._unsent[:MAX_METRICS_PER_BATCH]
            try:
                rejected = self._deliver(batch)
            except Exception as error:  # any failure is retried: nothing may be lost
                self._send_errors += 1
                if self._send_errors == 1 or self._send_errors % 20 == 0:
                    _logger.warning(
                        "trackcfg: metric delivery to %s failed (%s); %d pending, retrying",
                        self.tracking_uri,
                        _one_line(error),
                        len(self._unsent),
                    )
                if self._stop_sender.wait(backoff):
                    return
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.25
            if self._send_errors:
                _logger.warning("trackcfg: metric delivery to %s resumed", self.tracking_uri)
                self._send_errors = 0
            self._record(self._delivered_file, [r.seq for r in batch if r not in rejected])
            if rejected:
                with open(self.directory / _REJECTED, "ab") as f:
                    f.write(b"".join(r.to_line() for r in rejected))
                    self._record(f, [r.seq for r in rejected])
            with self._cond:
                del self._unsent[: len(batch)]
                self._delivered_seq = max(self._delivered_seq, batch[-1].seq)
                self._delivered += len(batch) - len(rejected)
                self._rejected += len(rejected)
                self._cond.notify_all()
                self._cond.wait_for(self._send_now, timeout=self._send_interval)

    def _send_now(self) -> bool:
        """Whether the sender should not wait for more records (called holding the lock)."""
        return (
            self._closing
            or self._give_up
            or self._waiters > 0
            or len(self._unsent) >= MAX_METRICS_PER_BATCH
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
                    _one_line(error),
                )
                return list(batch)
        # Split to find the invalid records; the valid ones still go through.
        middle = len(batch) // 2
        return self._deliver(batch[:middle]) + self._deliver(batch[middle:])

    @staticmethod
    def _record(f: BinaryIO, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        f.write(b"".join(f"{a} {b}\n".encode() for a, b in _ranges(sorted(seqs))))
        f.flush()
        os.fsync(f.fileno())


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    return first if len(first) <= 200 else first[:200] + "…"
