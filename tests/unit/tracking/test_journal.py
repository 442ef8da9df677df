"""MetricJournal, the writer: sequence numbers, skips, torn lines, crashes; journal files.

Delivery of what it writes is tested in test_delivery.py; here a `JournalDelivery`
appears only where a writer behaviour shows in the store (a torn line, a crash).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from trackcfg.tracking.agent.delivery import JournalDelivery, mlflow_sender
from trackcfg.tracking.agent.journal import (
    MetricJournal,
    MetricRecord,
    append_records,
    find_journals,
    journal_dir,
    parse_record,
    read_journal,
    write_journal_meta,
)
from trackcfg.tracking.sync import sync

History = Callable[[str, str, str], list[tuple[int, float]]]


def test_close_journals_every_logged_value_with_increasing_sequence_numbers(
    tmp_path: Path,
) -> None:
    journal = MetricJournal(journal_dir(tmp_path, "run"), "run", "sqlite:///x.db")
    for step in range(1, 301):
        journal.log_many({"loss": 1.0 / step, "lr": 0.1}, step=step)
    assert journal.close() == 600
    records = read_journal(journal.directory).records
    assert [r.seq for r in records] == list(range(1, 601))
    assert [(r.step, r.value) for r in records if r.key == "loss"] == [
        (s, 1.0 / s) for s in range(1, 301)
    ]


def test_flush_returns_the_sequence_number_covering_everything_logged_before(
    tmp_path: Path,
) -> None:
    journal = MetricJournal(journal_dir(tmp_path, "run"), "run", "sqlite:///x.db")
    journal.log("loss", 1.0, 1)
    journal.log_many({"loss": 2.0, "acc": 0.5}, step=2)
    assert journal.flush(timeout=10) == 3
    assert journal.journaled_seq == 3
    assert len(read_journal(journal.directory).records) == 3  # durable before close
    journal.close()


def test_skipped_steps_are_not_journaled(tmp_path: Path) -> None:
    journal = MetricJournal(
        journal_dir(tmp_path, "run"), "run", "sqlite:///x.db", skip={("loss", 1)}
    )
    journal.log("loss", 9.0, 1)
    journal.log_many({"loss": 8.0}, step=1)
    journal.log("loss", 2.0, 2)
    journal.close()
    assert [(r.step, r.value) for r in read_journal(journal.directory).records] == [(2, 2.0)]


def test_a_reopened_journal_skips_steps_it_holds_and_continues_its_sequence(
    tmp_path: Path,
) -> None:
    directory = journal_dir(tmp_path, "run")
    first = MetricJournal(directory, "run", "sqlite:///x.db")
    first.log("loss", 1.0, 1)
    first.close()
    second = MetricJournal(directory, "run", "sqlite:///x.db")
    second.log("loss", 1.5, 1)  # a resumed process recomputing step 1
    second.log("loss", 2.0, 2)
    assert second.close() == 2
    records = read_journal(directory).records
    assert [(r.seq, r.step, r.value) for r in records] == [(1, 1, 1.0), (2, 2, 2.0)]


def test_a_torn_last_line_is_ignored_and_cut_before_appending(
    tmp_path: Path, store_run: tuple[str, str], metric_history: History
) -> None:
    uri, run_id = store_run
    directory = journal_dir(tmp_path, run_id)
    journal = MetricJournal(directory, run_id, uri)
    journal.log("loss", 1.0, 1)
    journal.close()
    with open(directory / "metrics.jsonl", "ab") as f:
        f.write(b'{"s":2,"k":"loss","v":')  # SIGKILL in the middle of a write
    assert [r.step for r in read_journal(directory).records] == [1]
    reopened = MetricJournal(directory, run_id, uri)
    reopened.log("loss", 3.0, 3)
    reopened.close()
    lines = (directory / "metrics.jsonl").read_bytes().splitlines()
    assert [parse_record(line) is not None for line in lines] == [True, True]
    assert JournalDelivery(directory, mlflow_sender(uri, run_id)).close(timeout=60)
    assert metric_history(uri, run_id, "loss") == [(1, 1.0), (3, 3.0)]


def test_log_returns_at_once_while_delivery_is_stuck(tmp_path: Path) -> None:
    directory = journal_dir(tmp_path, "run")
    unstuck = threading.Event()

    def stuck(records: Sequence[MetricRecord]) -> None:
        unstuck.wait(30)
        raise ConnectionError("timeout")

    delivery = JournalDelivery(directory, stuck, poll_interval=0.01)
    journal = MetricJournal(directory, "run", "sqlite:///x.db")
    try:
        journal.log("loss", 0.5, 0)
        journal.flush(timeout=10)
        time.sleep(0.1)  # the delivery thread is now inside the stuck request
        start = time.perf_counter()
        for step in range(1, 20_000):
            journal.log("loss", 0.5, step)
        elapsed = time.perf_counter() - start
        assert journal.flush(timeout=10) == 20_000
    finally:
        unstuck.set()
        journal.close()
        delivery.close(timeout=0.1)
    # About 1 µs per call on an idle machine (tests/benchmarks/bench_tracking.py
    # measures it); generous for a loaded one, far below one stuck request.
    assert elapsed < 3.0
    assert len(read_journal(directory).records) == 20_000


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from trackcfg.tracking.agent.journal import MetricJournal, journal_dir
    uri, run_id, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    journal = MetricJournal(journal_dir(work, run_id), run_id, uri)
    for step in range(1, 151):
        journal.log("loss", step * 0.5, step)
    journal.flush(timeout=30)
    for step in range(151, 201):
        journal.log("loss", step * 0.5, step)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_writer_killed_mid_way_loses_nothing_it_journaled_and_sync_delivers_it(
    tmp_path: Path, store_run: tuple[str, str], metric_history: History, fail_fast_http: None
) -> None:
    uri, run_id = store_run
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, uri, run_id, str(tmp_path)],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    journaled = {r.step for r in read_journal(journal_dir(tmp_path, run_id)).records}
    assert set(range(1, 151)) <= journaled
    report = sync(tmp_path, timeout=60)
    assert (report.journals, report.pending) == (1, 0)
    delivered = metric_history(uri, run_id, "loss")
    assert [step for step, _ in delivered] == sorted(journaled)
    assert all(value == step * 0.5 for step, value in delivered)


def test_journal_files_are_created_under_the_work_dir(tmp_path: Path) -> None:
    directory = journal_dir(tmp_path, "run")
    assert directory == tmp_path / ".trackcfg" / "journal" / "run"
    MetricJournal(directory, "run", "sqlite:///x.db").close()
    assert sorted(os.listdir(directory)) == ["meta.json", "metrics.jsonl"]
    assert read_journal(directory).meta == {"run_id": "run", "tracking_uri": "sqlite:///x.db"}
    JournalDelivery(directory, mlflow_sender("sqlite:///x.db", "run")).close(timeout=5)
    assert sorted(os.listdir(directory)) == [
        "deliver.lock",
        "delivered",
        "meta.json",
        "metrics.jsonl",
    ]


def test_journals_are_found_in_every_work_dir_below_the_given_one(tmp_path: Path) -> None:
    for name in ("a", "b/c"):
        write_journal_meta(journal_dir(tmp_path / "work_dirs" / name, f"run-{name[0]}"), {})
    found = find_journals(tmp_path / "work_dirs")
    assert [p.relative_to(tmp_path / "work_dirs").parts[0] for p in found] == ["a", "b"]
    assert find_journals(tmp_path / "missing") == []


class FailingFsync:
    """``os.fsync`` that raises ``OSError(ENOSPC)`` while `failing` is set (a full disk)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failing = threading.Event()
        self.calls_while_failing = 0
        real = os.fsync

        def fsync(fd: int) -> None:
            if self.failing.is_set():
                self.calls_while_failing += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)


def test_a_disk_full_for_a_while_loses_no_record_and_keeps_order_and_sequence_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    disk = FailingFsync(monkeypatch)
    journal = MetricJournal(
        journal_dir(tmp_path, "run"), "run", "sqlite:///x.db", flush_interval=0.01
    )
    with caplog.at_level("WARNING", logger="trackcfg"):
        for step in range(1, 51):
            journal.log("loss", float(step), step)
        assert journal.flush(timeout=10) == 50
        disk.failing.set()
        for step in range(51, 151):
            journal.log("loss", float(step), step)
            time.sleep(0.001)
        assert journal.flush(timeout=0.3) is None  # nothing durable while the disk is full
        assert isinstance(journal.write_error, OSError)
        assert disk.calls_while_failing >= 2  # retried
        disk.failing.clear()
        assert journal.flush(timeout=10) == 150
        assert journal.write_error is None
        journal.close()
    records = read_journal(journal.directory).records
    assert [(r.seq, r.step, r.value) for r in records] == [(s, s, float(s)) for s in range(1, 151)]
    failures = [r for r in caplog.records if "cannot write the metric journal" in r.message]
    assert len(failures) == 1  # logged once, not once per retry


def test_close_on_a_full_disk_returns_and_hands_back_what_it_could_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FailingFsync(monkeypatch)
    journal = MetricJournal(journal_dir(tmp_path, "run"), "run", "sqlite:///x.db")
    journal.log("loss", 1.0, 1)
    assert journal.flush(timeout=10) == 1
    disk.failing.set()
    journal.log_many({"loss": 2.0, "acc": 0.5}, step=2)
    journal.log("loss", 3.0, 3)
    started = time.monotonic()
    assert journal.close(timeout=0.5) == 4  # no exception
    assert time.monotonic() - started < 10
    assert [(r.seq, r.key, r.step) for r in journal.unjournaled()] == [
        (2, "loss", 2),
        (3, "acc", 2),
        (4, "loss", 3),
    ]
    assert journal.journaled_seq == 1


def test_append_records_journals_only_the_missing_records_after_a_torn_line(
    tmp_path: Path,
) -> None:
    directory = journal_dir(tmp_path, "run")
    journal = MetricJournal(directory, "run", "sqlite:///x.db")
    journal.log("loss", 1.0, 1)
    journal.close()
    with open(directory / "metrics.jsonl", "ab") as f:
        f.write(b'{"s":2,"k":"lo')  # a write cut short
    records = [MetricRecord(1, "loss", 1.0, 1, 0), MetricRecord(2, "loss", 2.0, 2, 0)]
    assert append_records(directory, records) == 1
    assert [(r.seq, r.value) for r in read_journal(directory).records] == [(1, 1.0), (2, 2.0)]
