"""The metric journal of a run: its files, and the training side that writes them.

The training thread never waits on MLflow or on the disk: `MetricJournal.log`
appends a tuple to an in-memory deque (about a microsecond). A daemon thread,
the *journaler*, drains the deque every ``flush_interval`` seconds (0.25), gives
each record the next sequence number, appends it to ``metrics.jsonl`` (one JSON
line per record) and fsyncs once per batch. Delivering the journal to MLflow is
another process's job (`trackcfg.tracking.agent.delivery`, run by the tracking agent,
``trackcfg resume`` or ``trackcfg sync``); it reads the file and records what
arrived in ``delivered``.

Exactly once. Every record carries the timestamp taken when it was logged, so a
record sent twice is the identical row, which MLflow's store drops (its primary
key is key, timestamp, step and value); a record whose delivery a killed
deliverer could not record is sent again and deduplicated by the store. A
journal opened again by a resumed process skips the (key, step) pairs it
already holds. A record a process had only in memory when it was SIGKILLed (at
most ``flush_interval`` worth) was never journaled; resume re-computes it,
because the newest complete checkpoint is older than what the journal holds
(the "latest checkpoint" pointer moves only after the metrics logged before the
checkpoint were delivered, so even a resume without this journal finds them).

A write that fails (a full disk: ``ENOSPC``; ``EIO``) loses nothing either.
The records keep their sequence numbers and their order in memory, and the
journaler writes them again, at the same offset, with backoff (up to 2 s) until
the disk takes them; the first failure is logged once, and `write_error` shows
it meanwhile. `flush` returns only once everything is durable. `close` retries
for a bounded time and never raises: what it still could not write is left in
`unjournaled`, for the caller to hand to the tracking agent, which delivers it
directly (`trackcfg.tracking.agent`).

Files, under ``<work_dir>/.trackcfg/journal/<run_id>/``::

    meta.json        run id, tracking URI, keep-last-K, a final status still to be set
    metrics.jsonl    {"s": seq, "k": key, "v": value, "p": step, "t": ms}
    delivered        "first last" inclusive sequence ranges, one per line
    rejected         records the store refused as invalid (kept for inspection)
    deliver.lock     held (flock) by the one process delivering the journal
    checkpoints/     pins of published checkpoints not yet uploaded
                     (`trackcfg.tracking.agent.uploads`)

A line cut short by a SIGKILL is ignored (and cut off before appending again).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "DELIVERED_FILE",
    "JOURNAL_DIR",
    "LOCK_FILE",
    "META_FILE",
    "METRICS_FILE",
    "PINNED_DIR",
    "REJECTED_FILE",
    "JournalContents",
    "MetricJournal",
    "MetricRecord",
    "RangeLog",
    "append_records",
    "find_journals",
    "journal_dir",
    "parse_ranges",
    "parse_record",
    "pending_status",
    "read_done",
    "read_journal",
    "read_journal_meta",
    "record_pending_status",
    "without_pending_status",
    "write_journal_meta",
    "write_ranges",
]

#: Where journals live, relative to a work dir.
JOURNAL_DIR = Path(".trackcfg") / "journal"

#: File names inside a journal directory.
METRICS_FILE = "metrics.jsonl"
DELIVERED_FILE = "delivered"
REJECTED_FILE = "rejected"
META_FILE = "meta.json"
LOCK_FILE = "deliver.lock"
PINNED_DIR = "checkpoints"

# meta.json keys of a final status left for `trackcfg sync`.
_FINAL_STATUS = "final_status"
_END_TIME = "end_time"

_logger = logging.getLogger(__name__)

#: Longest wait between two attempts to write the journal while the disk refuses.
_MAX_WRITE_BACKOFF = 2.0


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

    def to_list(self) -> list[object]:
        """``[seq, key, value, step, timestamp]``: how the tracking agent's protocol carries it."""
        return [self.seq, self.key, self.value, self.step, self.timestamp]

    @classmethod
    def from_list(cls, item: object) -> MetricRecord:
        """The record `to_list` gave.

        Raises:
            ValueError: ``item`` is not such a list.
        """
        if not isinstance(item, list) or len(item) != 5:
            raise ValueError(f"not a metric record: {item!r}")
        seq, key, value, step, timestamp = item
        return cls(int(seq), str(key), float(value), int(step), int(timestamp))


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
    found = {meta.parent for meta in root.glob(f"**/{JOURNAL_DIR.as_posix()}/*/{META_FILE}")}
    return sorted(found)


def write_journal_meta(directory: Path, meta: dict[str, object]) -> None:
    """Atomically replace ``meta.json`` (a crash leaves the old or the new one)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (META_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / META_FILE)


def read_journal_meta(directory: Path) -> dict[str, object]:
    """``meta.json`` of a journal directory (empty when missing)."""
    meta_path = directory / META_FILE
    if meta_path.is_file():
        loaded = json.loads(meta_path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            return loaded
    return {}


def read_done(directory: Path) -> set[int]:
    """Sequence numbers recorded as delivered or set aside as rejected."""
    done: set[int] = set()
    for name in (DELIVERED_FILE, REJECTED_FILE):
        path = directory / name
        if path.is_file():
            done.update(parse_ranges(path.read_bytes()))
    return done


def record_pending_status(directory: Path, status: str, end_time: int) -> None:
    """Leave a run's final status, which the store could not take, for ``trackcfg sync``."""
    meta = read_journal_meta(directory)
    meta.update({_FINAL_STATUS: status, _END_TIME: end_time})
    write_journal_meta(directory, meta)


def pending_status(meta: dict[str, object]) -> tuple[str, int | None] | None:
    """The final status (and end time) `record_pending_status` left in ``meta``, if any."""
    status = meta.get(_FINAL_STATUS)
    if not isinstance(status, str):
        return None
    end = meta.get(_END_TIME)
    return status, end if isinstance(end, int) else None


def without_pending_status(meta: dict[str, object]) -> dict[str, object]:
    """``meta`` minus a pending final status (it was set, or the run goes on)."""
    return {k: v for k, v in meta.items() if k not in (_FINAL_STATUS, _END_TIME)}


def read_journal(directory: Path) -> JournalContents:
    """Read a journal directory; tolerates a last line cut short by a crash.

    Args:
        directory: A journal directory (see `journal_dir`).

    Returns:
        Its contents; a missing directory reads as an empty journal.
    """
    meta = read_journal_meta(directory)
    records: list[MetricRecord] = []
    valid = 0
    metrics_path = directory / METRICS_FILE
    if metrics_path.is_file():
        data = metrics_path.read_bytes()
        valid = data.rfind(b"\n") + 1
        for line in data[:valid].splitlines():
            record = parse_record(line)
            if record is not None:
                records.append(record)
    records.sort(key=lambda r: r.seq)
    return JournalContents(
        meta=meta,
        records=tuple(records),
        delivered=frozenset(read_done(directory)),
        valid_bytes=valid,
    )


def parse_record(line: bytes) -> MetricRecord | None:
    """The record of one journal line, or None for a line that is not one."""
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


def parse_ranges(data: bytes) -> Iterable[int]:
    """The sequence numbers listed in a ``delivered``/``rejected`` file's bytes."""
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


def write_ranges(f: BinaryIO, seqs: Sequence[int]) -> None:
    """Append ``seqs`` as inclusive ranges to an open ``delivered``/``rejected`` file; fsync."""
    if not seqs:
        return
    f.write(_range_lines(seqs))
    f.flush()
    os.fsync(f.fileno())


def _range_lines(seqs: Sequence[int]) -> bytes:
    return b"".join(f"{a} {b}\n".encode() for a, b in _ranges(sorted(seqs)))


class RangeLog:
    """An append-only ``delivered`` file that a failed write (a full disk) cannot corrupt.

    Sequence numbers whose line could not be written wait, in memory, for the next
    `append`. After a failed write the next one starts with a newline: a line cut
    short names fewer numbers than it was meant to (a prefix of a number is not
    larger than it), never others, so what the file claims stays true.

    Args:
        path: The file (created if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._waiting: list[int] = []
        self._torn = False

    def append(self, seqs: Sequence[int]) -> OSError | None:
        """Write ``seqs`` (and any still waiting) durably; returns the error if that failed."""
        self._waiting.extend(seqs)
        if not self._waiting:
            return None
        data = (b"\n" if self._torn else b"") + _range_lines(self._waiting)
        try:
            _write_fully(self._fd, data, None)
            os.fsync(self._fd)
        except OSError as error:
            self._torn = True
            return error
        self._waiting.clear()
        self._torn = False
        return None

    def close(self) -> None:
        """Close the file (what still waits stays unrecorded: it is sent again, harmlessly)."""
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _write_fully(fd: int, data: bytes, offset: int | None) -> None:
    """Write all of ``data`` at ``offset`` (None: append); a short write goes on."""
    view = memoryview(data)
    while view:
        if offset is None:
            written = os.write(fd, view)
        else:
            written = os.pwrite(fd, view, offset)
            offset += written
        view = view[written:]


def append_records(directory: Path, records: Sequence[MetricRecord]) -> int:
    """Journal ``records`` that ``metrics.jsonl`` does not hold yet (after a torn line is cut).

    For records a `MetricJournal` could not write before it closed: the tracking
    agent, or the training process when the agent is gone, tries again. Only one
    process may write the file at a time (the journal's writer has closed it).

    Returns:
        How many records were appended.

    Raises:
        OSError: the disk still refuses.
    """
    contents = read_journal(directory)
    held = {r.seq for r in contents.records}
    missing = [r for r in records if r.seq not in held]
    if not missing:
        return 0
    fd = os.open(directory / METRICS_FILE, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, contents.valid_bytes)
        _write_fully(fd, b"".join(r.to_line() for r in missing), contents.valid_bytes)
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(missing)


class MetricJournal:
    """The training side of a run's journal: log in memory, journal to disk in the background.

    Opening a journal that already holds records (left by a killed process of the
    same run) continues its sequence numbers and drops the (key, step) pairs it
    holds, so a resumed run journals every step once.

    Args:
        directory: The run's journal directory (see `journal_dir`).
        run_id: The MLflow run the metrics belong to.
        tracking_uri: Where they are to be delivered (recorded in ``meta.json``).
        skip: ``(key, step)`` pairs the run already has (delivered by an earlier
            process); `log` drops them.
        flush_interval: Seconds between journal writes: what a SIGKILL can lose from
            memory at most. Few wake-ups matter: each one competes with torch's
            OpenMP threads.
        keep_last: The run's keep-last-K for checkpoints (recorded in ``meta.json``
            for `trackcfg sync`, which may upload checkpoints for it).

    Example:
        >>> import tempfile
        >>> j = MetricJournal(Path(tempfile.mkdtemp()), "run", "sqlite:///x.db")
        >>> j.log("train/loss", 0.5, step=1)
        >>> j.close()
        1
        >>> [(r.key, r.value, r.step) for r in read_journal(j.directory).records]
        [('train/loss', 0.5, 1)]
    """

    def __init__(
        self,
        directory: Path,
        run_id: str,
        tracking_uri: str,
        *,
        skip: Iterable[tuple[str, int]] = (),
        flush_interval: float = 0.25,
        keep_last: int | None = None,
    ) -> None:
        self.directory = directory
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self._flush_interval = flush_interval

        directory.mkdir(parents=True, exist_ok=True)
        contents = read_journal(directory)
        # A final status an earlier process left for `sync` is stale: the run goes on.
        meta = without_pending_status(contents.meta)
        meta.update({"run_id": run_id, "tracking_uri": tracking_uri})
        if keep_last is not None:
            meta["keep_last"] = keep_last
        write_journal_meta(directory, meta)
        self._skip: frozenset[tuple[str, int]] = frozenset(skip) | frozenset(
            (r.key, r.step) for r in contents.records
        )
        self._next_seq = max((r.seq for r in contents.records), default=0) + 1

        # Records are written at known offsets (`os.pwrite`), not appended: a failed
        # write is redone at the same place with the same bytes, so a partial line
        # it left is overwritten, and a reader that took its complete lines
        # (delivered them) finds the same lines there afterwards.
        self._fd = os.open(directory / METRICS_FILE, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        # Cut a torn last line, so the next record starts on a line of its own.
        os.ftruncate(self._fd, contents.valid_bytes)
        self._size = contents.valid_bytes

        # Training thread -> journaler: deque.append/popleft are atomic under the GIL.
        self._queue: collections.deque[tuple[str, float, int, int]] = collections.deque()
        self._cond = threading.Condition()
        # Journaler only (and readers after close): records with sequence numbers that
        # are not durable yet, in order.
        self._unwritten: list[MetricRecord] = []
        self._behind = False  # _unwritten is not empty (for other threads)
        self._error: OSError | None = None
        self._journaled_seq = self._next_seq - 1
        self._started_cycles = 0
        self._journaled_cycles = 0
        self._closing = False
        self._close_deadline = 0.0
        self._wake = threading.Event()
        self._journaler = threading.Thread(
            target=self._journal_loop, name=f"trackcfg-journal-{run_id[:8]}", daemon=True
        )
        self._journaler.start()

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
    def journaled_seq(self) -> int:
        """The highest sequence number durably in ``metrics.jsonl`` (0: none yet)."""
        with self._cond:
            return self._journaled_seq

    @property
    def last_seq(self) -> int:
        """The highest sequence number given to a record so far, journaled or not."""
        with self._cond:
            return self._next_seq - 1

    @property
    def write_error(self) -> OSError | None:
        """The error of the last write attempt, while the journal cannot write (else None)."""
        with self._cond:
            return self._error

    def unjournaled(self) -> tuple[MetricRecord, ...]:
        """Records that have a sequence number but are not durably journaled, in order.

        After `close`, what the disk never took: hand these to the tracking agent.
        """
        with self._cond:
            return tuple(self._unwritten)

    def flush(self, timeout: float | None = None) -> int | None:
        """Wait until everything logged before this call is durably journaled.

        Returns:
            The highest sequence number journaled then; None on timeout, or when
            the write failed (a full disk: the records are numbered and kept, see
            `last_seq` and `write_error`; waiting for the disk would stall the caller).
        """
        with self._cond:
            target = self._started_cycles + 1
            self._wake.set()
            if not self._cond.wait_for(lambda: self._journaled_cycles >= target, timeout):
                return None
            return None if self._behind else self._journaled_seq

    def close(self, timeout: float = 5.0) -> int:
        """Journal what is queued and stop; never raises.

        Args:
            timeout: Seconds to keep retrying while the disk refuses the last records;
                what is still not written then stays in `unjournaled`.

        Returns:
            The highest sequence number given to a record (journaled or not).
        """
        with self._cond:
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
        self._wake.set()
        self._journaler.join()
        with contextlib.suppress(OSError):  # everything written was fsynced already
            os.close(self._fd)
        return self._next_seq - 1

    # -- journaler thread --------------------------------------------------------

    def _journal_loop(self) -> None:
        backoff = self._flush_interval
        while True:
            with self._cond:
                closing, deadline = self._closing, self._close_deadline
            wait = self._flush_interval if self._error is None else backoff
            if closing:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            if self._wake.wait(wait):
                self._wake.clear()
            with self._cond:
                self._started_cycles += 1
                closing = self._closing
                deadline = self._close_deadline
            written = self._journal_queued()
            with self._cond:
                self._journaled_cycles += 1
                self._behind = bool(self._unwritten)
                self._cond.notify_all()
            backoff = self._flush_interval if written else min(backoff * 2, _MAX_WRITE_BACKOFF)
            if closing and (written or time.monotonic() >= deadline):
                return

    def _journal_queued(self) -> bool:
        """Give queued records their numbers and write every unwritten one; False on failure."""
        unwritten = self._unwritten
        queue = self._queue
        while True:
            try:
                key, value, step, timestamp = queue.popleft()
            except IndexError:
                break
            unwritten.append(MetricRecord(self._next_seq, key, value, step, timestamp))
            self._next_seq += 1
        if not unwritten:
            return True
        data = b"".join(r.to_line() for r in unwritten)
        try:
            _write_fully(self._fd, data, self._size)
            os.fsync(self._fd)
        except OSError as error:
            self._failed(error)
            return False
        self._size += len(data)
        with self._cond:
            self._journaled_seq = unwritten[-1].seq
            if self._error is not None:
                _logger.warning(
                    "trackcfg: the metric journal %s is written again; nothing was lost",
                    self.directory,
                )
                self._error = None
            unwritten.clear()
        return True

    def _failed(self, error: OSError) -> None:
        with self._cond:
            first = self._error is None
            self._error = error
        if first:  # once per outage: a full disk must not also flood the log
            _logger.warning(
                "trackcfg: cannot write the metric journal %s (%s); %d record(s) wait in "
                "memory, retrying",
                self.directory,
                error,
                len(self._unwritten),
            )
