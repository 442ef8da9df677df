"""JournalDelivery and sync against a real SQLite store: exactly once, outages, one deliverer.

The journals are written by a real `MetricJournal`; a `Sender` other than
`mlflow_sender` stands only for a store that is away or slow.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest
from mlflow import MlflowClient

from trackcfg.errors import JournalBusyError
from trackcfg.tracking.agent.delivery import JournalDelivery, mlflow_sender
from trackcfg.tracking.agent.journal import (
    MetricJournal,
    MetricRecord,
    journal_dir,
    read_journal,
    write_journal_meta,
)
from trackcfg.tracking.sync import sync

History = Callable[[str, str, str], list[tuple[int, float]]]

# sync() fills in MLflow's HTTP settings process-wide; keep them inside each test.
pytestmark = pytest.mark.usefixtures("fail_fast_http")


def store_away(records: Sequence[MetricRecord]) -> None:
    raise ConnectionError("tracking store is away")


def journal_losses(directory: Path, run_id: str, uri: str, steps: Iterable[int]) -> int:
    """Journal ``loss = step`` for ``steps``; returns the writer's last sequence number."""
    journal = MetricJournal(directory, run_id, uri)
    for step in steps:
        journal.log("loss", float(step), step)
    return journal.close()


class RecordingSender:
    """A store that takes every batch once ``gate`` is set, and lists what it took."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.seqs: list[int] = []

    def __call__(self, records: Sequence[MetricRecord]) -> None:
        if not self.gate.wait(10):
            raise ConnectionError("gate closed")
        self.seqs.extend(r.seq for r in records)


def test_records_handed_over_in_memory_are_delivered_once_after_the_journaled_ones(
    tmp_path: Path,
) -> None:
    directory = journal_dir(tmp_path, "run")
    journal_losses(directory, "run", "sqlite:///x.db", range(1, 4))  # seqs 1-3 on disk
    # Records the writer could not journal; one of them reached the file after all.
    with open(directory / "metrics.jsonl", "ab") as f:
        f.write(MetricRecord(4, "loss", 4.0, 4, 0).to_line())
    in_memory = [MetricRecord(seq, "loss", float(seq), seq, 0) for seq in (4, 5, 6)]
    sender = RecordingSender()
    sender.gate.set()
    delivery = JournalDelivery(directory, sender, poll_interval=0.01, send_interval=0.01)
    assert delivery.add(in_memory) == 2
    assert delivery.close(timeout=30, final_seq=6)
    assert sender.seqs == [1, 2, 3, 4, 5, 6]


def test_a_delivered_file_the_disk_refuses_does_not_stop_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = journal_dir(tmp_path, "run")
    final = journal_losses(directory, "run", "sqlite:///x.db", range(1, 11))
    real = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    sender = RecordingSender()
    sender.gate.set()
    delivery = JournalDelivery(directory, sender, poll_interval=0.01, send_interval=0.01)
    assert delivery.close(timeout=30, final_seq=final)
    assert sender.seqs == list(range(1, 11))
    monkeypatch.setattr(os, "fsync", real)
    # What `delivered` claims is true (here: possibly nothing), never more.
    assert read_journal(directory).delivered <= set(range(1, 11))


# -- delivery ------------------------------------------------------------------------------


def test_every_journaled_metric_arrives_once(
    tmp_path: Path, store_run: tuple[str, str], metric_history: History
) -> None:
    uri, run_id = store_run
    directory = journal_dir(tmp_path, run_id)
    journal = MetricJournal(directory, run_id, uri)
    for step in range(1, 301):
        journal.log_many({"loss": 1.0 / step, "lr": 0.1}, step=step)
    final = journal.close()
    delivery = JournalDelivery(directory, mlflow_sender(uri, run_id))
    assert delivery.close(timeout=60, final_seq=final)
    assert delivery.delivered_count == 600
    assert metric_history(uri, run_id, "loss") == [(s, 1.0 / s) for s in range(1, 301)]
    assert len(metric_history(uri, run_id, "lr")) == 300
    assert read_journal(directory).undelivered == ()


def test_metrics_kept_while_the_store_is_away_are_delivered_by_a_later_delivery(
    tmp_path: Path, store_run: tuple[str, str], metric_history: History
) -> None:
    uri, run_id = store_run
    directory = journal_dir(tmp_path, run_id)
    journal_losses(directory, run_id, uri, range(1, 51))
    away = JournalDelivery(directory, store_away, max_backoff=0.05)
    assert away.close(timeout=0.3) is False
    assert away.pending_count == 50
    assert len(read_journal(directory).undelivered) == 50
    assert JournalDelivery(directory, mlflow_sender(uri, run_id)).close(timeout=60)
    assert metric_history(uri, run_id, "loss") == [(s, float(s)) for s in range(1, 51)]
    assert read_journal(directory).undelivered == ()


def test_replaying_records_whose_delivery_was_not_recorded_adds_no_duplicate(
    tmp_path: Path, store_run: tuple[str, str], metric_history: History
) -> None:
    uri, run_id = store_run
    directory = journal_dir(tmp_path, run_id)
    journal_losses(directory, run_id, uri, range(1, 21))
    assert JournalDelivery(directory, mlflow_sender(uri, run_id)).close(timeout=60)
    (directory / "delivered").write_bytes(b"")  # killed after sending, before recording
    replay = JournalDelivery(directory, mlflow_sender(uri, run_id))
    assert replay.close(timeout=60)
    assert replay.delivered_count == 20  # sent again...
    steps = Counter(step for step, _ in metric_history(uri, run_id, "loss"))
    assert steps == Counter(range(1, 21))  # ...and the store kept each once


def test_records_the_store_refuses_are_set_aside_and_the_rest_delivered(
    tmp_path: Path, store_run: tuple[str, str], metric_history: History
) -> None:
    uri, run_id = store_run
    directory = journal_dir(tmp_path, run_id)
    journal = MetricJournal(directory, run_id, uri)
    journal.log("good", 1.0, 1)
    journal.log("bad key!", 1.0, 1)
    journal.log("good", 2.0, 2)
    journal.close()
    delivery = JournalDelivery(directory, mlflow_sender(uri, run_id))
    assert delivery.close(timeout=60)
    assert (delivery.delivered_count, delivery.rejected_count) == (2, 1)
    assert metric_history(uri, run_id, "good") == [(1, 1.0), (2, 2.0)]
    assert b"bad key!" in (directory / "rejected").read_bytes()
    assert read_journal(directory).undelivered == ()  # not retried forever


def test_mlflow_sender_delivers_a_batch(
    store_run: tuple[str, str], metric_history: History
) -> None:
    uri, run_id = store_run
    mlflow_sender(uri, run_id)([MetricRecord(1, "m", 0.25, 7, int(time.time() * 1000))])
    assert metric_history(uri, run_id, "m") == [(7, 0.25)]


def test_delivery_follows_records_appended_after_it_opened(
    tmp_path: Path, store_run: tuple[str, str], metric_history: History
) -> None:
    uri, run_id = store_run
    directory = journal_dir(tmp_path, run_id)
    delivery = JournalDelivery(directory, mlflow_sender(uri, run_id), poll_interval=0.02)
    journal = MetricJournal(directory, run_id, uri)
    try:
        for first in (1, 11, 21):
            for step in range(first, first + 10):
                journal.log("loss", float(step), step)
            seq = journal.flush(timeout=10)
            assert seq == first + 9
            assert delivery.wait_delivered(seq, timeout=30)
            assert metric_history(uri, run_id, "loss") == [(s, float(s)) for s in range(1, seq + 1)]
    finally:
        journal.close()
        delivery.close(timeout=5)


def test_wait_delivered_returns_once_that_record_is_delivered(tmp_path: Path) -> None:
    directory = journal_dir(tmp_path, "run")
    final = journal_losses(directory, "run", "sqlite:///x.db", range(1, 6))
    sender = RecordingSender()
    delivery = JournalDelivery(directory, sender)
    try:
        assert delivery.wait_delivered(final, timeout=0.3) is False
        sender.gate.set()
        assert delivery.wait_delivered(final, timeout=10) is True
        assert sender.seqs == [1, 2, 3, 4, 5]
        assert read_journal(directory).undelivered == ()  # recorded before it returned
    finally:
        sender.gate.set()
        delivery.close(timeout=5)


def test_stop_with_final_seq_waits_for_the_writers_last_records(tmp_path: Path) -> None:
    directory = journal_dir(tmp_path, "run")
    journal = MetricJournal(directory, "run", "sqlite:///x.db")
    journal.log("loss", 1.0, 1)
    journal.flush(timeout=10)
    sender = RecordingSender()
    sender.gate.set()
    delivery = JournalDelivery(directory, sender, poll_interval=0.02)

    def write_the_rest() -> None:
        journal.log("loss", 2.0, 2)
        journal.log("loss", 3.0, 3)
        journal.close()

    late_writer = threading.Timer(0.5, write_the_rest)
    late_writer.start()
    try:
        assert delivery.close(timeout=10, final_seq=3)
    finally:
        late_writer.join()
    assert sender.seqs == [1, 2, 3]


def test_stop_reports_false_when_the_final_seq_never_appears(tmp_path: Path) -> None:
    directory = journal_dir(tmp_path, "run")
    final = journal_losses(directory, "run", "sqlite:///x.db", range(1, 3))
    sender = RecordingSender()
    sender.gate.set()
    delivery = JournalDelivery(directory, sender, poll_interval=0.02)
    assert delivery.close(timeout=0.5, final_seq=final + 1) is False
    assert sender.seqs == [1, 2]


# -- one deliverer per journal ----------------------------------------------------------------


def test_a_second_delivery_of_a_journal_gives_up_after_lock_timeout(tmp_path: Path) -> None:
    directory = journal_dir(tmp_path, "run")
    first = JournalDelivery(directory, store_away)
    try:
        start = time.monotonic()
        with pytest.raises(JournalBusyError, match="another process is still delivering"):
            JournalDelivery(directory, store_away, lock_timeout=0.3)
        assert time.monotonic() - start >= 0.3
    finally:
        first.close(timeout=0)


def test_a_second_delivery_starts_once_the_first_is_released(tmp_path: Path) -> None:
    directory = journal_dir(tmp_path, "run")
    first = JournalDelivery(directory, store_away)
    first.stop(timeout=0)
    releaser = threading.Timer(0.3, first.release)
    releaser.start()
    start = time.monotonic()
    second = JournalDelivery(directory, store_away, lock_timeout=30)
    waited = time.monotonic() - start
    releaser.join()
    second.close(timeout=0)
    assert 0.2 <= waited < 10


_LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from trackcfg.tracking.agent.delivery import JournalDelivery

    def away(records):
        raise ConnectionError("away")

    delivery = JournalDelivery(Path(sys.argv[1]), away)
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_the_lock_is_dropped_when_the_delivering_process_is_killed(tmp_path: Path) -> None:
    directory = journal_dir(tmp_path, "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(directory)], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"
        with pytest.raises(JournalBusyError):
            JournalDelivery(directory, store_away, lock_timeout=0)
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
    JournalDelivery(directory, store_away, lock_timeout=5).close(timeout=0)


# -- sync --------------------------------------------------------------------------------------


def test_sync_of_a_work_dir_without_journals_does_nothing(tmp_path: Path) -> None:
    report = sync(tmp_path)
    assert (report.journals, report.delivered, report.pending, report.statuses) == (0, 0, 0, 0)


def test_sync_delivers_what_is_pending_and_then_sets_the_recorded_final_status(
    tmp_path: Path, store_run: tuple[str, str], metric_history: History
) -> None:
    uri, run_id = store_run
    directory = journal_dir(tmp_path, run_id)
    journal_losses(directory, run_id, uri, range(1, 11))
    meta = read_journal(directory).meta
    end = MlflowClient(uri).get_run(run_id).info.start_time + 1234
    write_journal_meta(directory, {**meta, "final_status": "FINISHED", "end_time": end})
    report = sync(tmp_path, timeout=60)
    assert (report.journals, report.delivered, report.pending, report.statuses) == (1, 10, 0, 1)
    run = MlflowClient(uri).get_run(run_id)
    assert (run.info.status, run.info.end_time) == ("FINISHED", end)
    assert metric_history(uri, run_id, "loss") == [(s, float(s)) for s in range(1, 11)]
    assert "final_status" not in read_journal(directory).meta
    assert sync(tmp_path).delivered == 0  # nothing is delivered twice


def test_sync_never_ends_a_run_before_it_started(
    tmp_path: Path, store_run: tuple[str, str]
) -> None:
    # An end time recorded before the run's start (another clock, an early failure)
    # would show as a negative duration in MLflow's UI.
    uri, run_id = store_run
    directory = journal_dir(tmp_path, run_id)
    journal_losses(directory, run_id, uri, [1])
    meta = read_journal(directory).meta
    write_journal_meta(directory, {**meta, "final_status": "FAILED", "end_time": 1234})
    sync(tmp_path, timeout=30)
    run = MlflowClient(uri).get_run(run_id)
    assert (run.info.status, run.info.end_time) == ("FAILED", run.info.start_time)


def test_sync_leaves_alone_a_run_resumed_since_its_status_was_left_pending(
    tmp_path: Path, store_run: tuple[str, str]
) -> None:
    uri, run_id = store_run
    directory = journal_dir(tmp_path, run_id)
    # The killed process's agent could not reach the store: metrics and status left to sync.
    journal_losses(directory, run_id, uri, [1])
    meta = read_journal(directory).meta
    write_journal_meta(directory, {**meta, "final_status": "KILLED", "end_time": 1234})
    # resume_run's own sync could not deliver everything in time; the resumed trainer
    # reopens the journal, and its agent sets the final status when the run ends.
    journal_losses(directory, run_id, uri, [2])
    MlflowClient(uri).set_terminated(run_id, status="FINISHED", end_time=9999)
    sync(tmp_path, timeout=30)
    run = MlflowClient(uri).get_run(run_id)
    assert (run.info.status, run.info.end_time) == ("FINISHED", 9999)


def test_sync_sets_a_status_even_when_another_journal_stays_pending(
    tmp_path: Path, store_run: tuple[str, str], unreachable_uri: str
) -> None:
    uri, run_id = store_run
    journal_losses(journal_dir(tmp_path / "1-away", "run-away"), "run-away", unreachable_uri, [1])
    write_journal_meta(
        journal_dir(tmp_path / "2-done", run_id),
        {"run_id": run_id, "tracking_uri": uri, "final_status": "FINISHED", "end_time": 1234},
    )
    report = sync(tmp_path, timeout=0.5)
    assert (report.journals, report.pending, report.statuses) == (2, 1, 1)
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"


def test_sync_counts_a_journal_another_process_delivers_as_pending(
    tmp_path: Path, store_run: tuple[str, str], metric_history: History
) -> None:
    uri, run_id = store_run
    directory = journal_dir(tmp_path, run_id)
    journal_losses(directory, run_id, uri, range(1, 6))
    busy = JournalDelivery(directory, store_away)
    try:
        report = sync(tmp_path, timeout=5, lock_timeout=0)
    finally:
        busy.close(timeout=0)
    assert (report.journals, report.delivered, report.pending) == (1, 0, 5)
    assert metric_history(uri, run_id, "loss") == []


@pytest.mark.parametrize(
    ("only", "exclude", "synced"),
    [("run-a", (), "run-a"), (None, ("run-a",), "run-b")],
    ids=["only", "exclude"],
)
def test_sync_delivers_only_the_selected_runs_journals(
    tmp_path: Path,
    sqlite_store: str,
    metric_history: History,
    only: str | None,
    exclude: tuple[str, ...],
    synced: str,
) -> None:
    client = MlflowClient(sqlite_store)
    experiment = client.create_experiment("sync")
    run_ids = {name: client.create_run(experiment).info.run_id for name in ("run-a", "run-b")}
    for name, run_id in run_ids.items():
        journal_losses(journal_dir(tmp_path / name, run_id), run_id, sqlite_store, [1])
    report = sync(
        tmp_path,
        timeout=30,
        only=None if only is None else run_ids[only],
        exclude=[run_ids[name] for name in exclude],
    )
    assert (report.journals, report.delivered, report.pending) == (1, 1, 0)
    for name, run_id in run_ids.items():
        expected = [(1, 1.0)] if name == synced else []
        assert metric_history(sqlite_store, run_id, "loss") == expected
