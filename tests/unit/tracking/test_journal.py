"""MetricJournal against a real SQLite store: exactly-once delivery, replay, crashes, outages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from mlflow import MlflowClient

from trackcfg.tracking.journal import (
    MetricJournal,
    MetricRecord,
    find_journals,
    journal_dir,
    mlflow_sender,
    read_journal,
    write_journal_meta,
)
from trackcfg.tracking.session import sync


@pytest.fixture
def store(sqlite_store: str) -> tuple[str, str]:
    """(tracking URI, run id) of a fresh run in a SQLite store."""
    uri = sqlite_store
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("journal"))
    return uri, run.info.run_id


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    metrics = MlflowClient(uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in metrics)


def store_away(records: Sequence[MetricRecord]) -> None:
    raise ConnectionError("tracking store is away")


def test_every_logged_metric_arrives_once(tmp_path: Path, store: tuple[str, str]) -> None:
    uri, run_id = store
    journal = MetricJournal(journal_dir(tmp_path, run_id), run_id, uri)
    for step in range(1, 301):
        journal.log_many({"loss": 1.0 / step, "lr": 0.1}, step=step)
    assert journal.close(timeout=60)
    assert history(uri, run_id, "loss") == [(s, 1.0 / s) for s in range(1, 301)]
    assert len(history(uri, run_id, "lr")) == 300


def test_metrics_kept_while_the_store_is_away_are_delivered_on_reopen(
    tmp_path: Path, store: tuple[str, str]
) -> None:
    uri, run_id = store
    directory = journal_dir(tmp_path, run_id)
    away = MetricJournal(directory, run_id, uri, send=store_away, max_backoff=0.05)
    for step in range(1, 51):
        away.log("loss", float(step), step)
    assert away.close(timeout=0.3) is False
    assert len(read_journal(directory).undelivered) == 50
    reopened = MetricJournal(directory, run_id, uri)
    assert reopened.close(timeout=60)
    assert history(uri, run_id, "loss") == [(s, float(s)) for s in range(1, 51)]
    assert read_journal(directory).undelivered == ()


def test_replaying_records_whose_delivery_was_not_recorded_adds_no_duplicate(
    tmp_path: Path, store: tuple[str, str]
) -> None:
    uri, run_id = store
    directory = journal_dir(tmp_path, run_id)
    journal = MetricJournal(directory, run_id, uri)
    for step in range(1, 21):
        journal.log("acc", step / 20, step)
    assert journal.close(timeout=60)
    (directory / "delivered").write_bytes(b"")  # killed after sending, before recording
    assert MetricJournal(directory, run_id, uri).close(timeout=60)
    steps = Counter(step for step, _ in history(uri, run_id, "acc"))
    assert set(steps) == set(range(1, 21))
    assert set(steps.values()) == {1}


def test_skipped_steps_are_not_logged_again(tmp_path: Path, store: tuple[str, str]) -> None:
    uri, run_id = store
    journal = MetricJournal(journal_dir(tmp_path, run_id), run_id, uri, skip={("loss", 1)})
    journal.log("loss", 9.0, 1)
    journal.log("loss", 2.0, 2)
    assert journal.close(timeout=60)
    assert history(uri, run_id, "loss") == [(2, 2.0)]


def test_a_reopened_journal_skips_steps_it_already_holds(
    tmp_path: Path, store: tuple[str, str]
) -> None:
    uri, run_id = store
    directory = journal_dir(tmp_path, run_id)
    first = MetricJournal(directory, run_id, uri)
    first.log("loss", 1.0, 1)
    assert first.close(timeout=60)
    second = MetricJournal(directory, run_id, uri)
    second.log("loss", 1.5, 1)  # a resumed process recomputing step 1
    second.log("loss", 2.0, 2)
    assert second.close(timeout=60)
    assert history(uri, run_id, "loss") == [(1, 1.0), (2, 2.0)]


def test_a_torn_last_line_is_ignored_and_cut_before_appending(
    tmp_path: Path, store: tuple[str, str]
) -> None:
    uri, run_id = store
    directory = journal_dir(tmp_path, run_id)
    journal = MetricJournal(directory, run_id, uri, send=store_away, max_backoff=0.05)
    journal.log("loss", 1.0, 1)
    journal.close(timeout=0.1)
    with open(directory / "metrics.jsonl", "ab") as f:
        f.write(b'{"s":2,"k":"loss","v":')  # SIGKILL in the middle of a write
    reopened = MetricJournal(directory, run_id, uri)
    reopened.log("loss", 3.0, 3)
    assert reopened.close(timeout=60)
    assert [r.step for r in read_journal(directory).records] == [1, 3]
    assert history(uri, run_id, "loss") == [(1, 1.0), (3, 3.0)]


def test_records_the_store_refuses_are_set_aside_and_the_rest_delivered(
    tmp_path: Path, store: tuple[str, str]
) -> None:
    uri, run_id = store
    directory = journal_dir(tmp_path, run_id)
    journal = MetricJournal(directory, run_id, uri)
    journal.log("good", 1.0, 1)
    journal.log("bad key!", 1.0, 1)
    journal.log("good", 2.0, 2)
    assert journal.close(timeout=60)
    assert journal.rejected_count == 1
    assert history(uri, run_id, "good") == [(1, 1.0), (2, 2.0)]
    assert b"bad key!" in (directory / "rejected").read_bytes()


def test_log_returns_at_once_while_delivery_is_stuck(
    tmp_path: Path, store: tuple[str, str]
) -> None:
    uri, run_id = store

    def slow(records: Sequence[MetricRecord]) -> None:
        time.sleep(10)
        raise ConnectionError("timeout")

    journal = MetricJournal(journal_dir(tmp_path, run_id), run_id, uri, send=slow)
    start = time.perf_counter()
    for step in range(20_000):
        journal.log("loss", 0.5, step)
    elapsed = time.perf_counter() - start
    assert journal.flush(timeout=10)
    journal.close(timeout=0.1)
    # Far below one stuck request (10 s); about 1 µs per call on an idle machine
    # (tests/benchmarks/bench_tracking.py measures it), generous for a loaded one.
    assert elapsed < 3.0
    assert len(read_journal(journal.directory).records) == 20_000


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from trackcfg.tracking.journal import MetricJournal, journal_dir
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


def test_a_writer_killed_mid_way_loses_nothing_it_journaled(
    tmp_path: Path, store: tuple[str, str]
) -> None:
    uri, run_id = store
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, uri, run_id, str(tmp_path)],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL
    journaled = {r.step for r in read_journal(journal_dir(tmp_path, run_id)).records}
    assert set(range(1, 151)) <= journaled
    report = sync(tmp_path, timeout=60)
    assert report.pending == 0
    delivered = history(uri, run_id, "loss")
    assert [step for step, _ in delivered] == sorted(journaled)
    assert all(value == step * 0.5 for step, value in delivered)


def test_sync_of_a_work_dir_without_journals_does_nothing(tmp_path: Path) -> None:
    report = sync(tmp_path)
    assert (report.journals, report.delivered, report.pending) == (0, 0, 0)


def test_mlflow_sender_delivers_a_batch(store: tuple[str, str]) -> None:
    uri, run_id = store
    mlflow_sender(uri, run_id)([MetricRecord(1, "m", 0.25, 7, int(time.time() * 1000))])
    assert history(uri, run_id, "m") == [(7, 0.25)]


def test_journal_files_are_created_under_the_work_dir(
    tmp_path: Path, store: tuple[str, str]
) -> None:
    uri, run_id = store
    MetricJournal(journal_dir(tmp_path, run_id), run_id, uri).close(timeout=5)
    assert sorted(os.listdir(tmp_path / ".trackcfg" / "journal" / run_id)) == [
        "delivered",
        "meta.json",
        "metrics.jsonl",
    ]


def test_sync_delivers_what_is_pending_and_then_sets_the_recorded_final_status(
    tmp_path: Path, store: tuple[str, str]
) -> None:
    uri, run_id = store
    directory = journal_dir(tmp_path, run_id)
    away = MetricJournal(directory, run_id, uri, send=store_away, max_backoff=0.05)
    for step in range(1, 11):
        away.log("loss", float(step), step)
    away.close(timeout=0.2)
    meta = read_journal(directory).meta
    write_journal_meta(directory, {**meta, "final_status": "FINISHED", "end_time": 1234})
    report = sync(tmp_path, timeout=60)
    assert (report.journals, report.delivered, report.pending, report.statuses) == (1, 10, 0, 1)
    run = MlflowClient(uri).get_run(run_id)
    assert (run.info.status, run.info.end_time) == ("FINISHED", 1234)
    assert history(uri, run_id, "loss") == [(s, float(s)) for s in range(1, 11)]
    assert "final_status" not in read_journal(directory).meta
    assert sync(tmp_path).delivered == 0  # nothing is delivered twice


def test_journals_are_found_in_every_work_dir_below_the_given_one(tmp_path: Path) -> None:
    for name in ("a", "b/c"):
        write_journal_meta(journal_dir(tmp_path / "work_dirs" / name, f"run-{name[0]}"), {})
    found = find_journals(tmp_path / "work_dirs")
    assert [p.relative_to(tmp_path / "work_dirs").parts[0] for p in found] == ["a", "b"]
    assert find_journals(tmp_path / "missing") == []


def test_sync_sets_a_status_even_when_an_earlier_journal_stays_pending(
    tmp_path: Path, store: tuple[str, str]
) -> None:
    uri, run_id = store
    away_dir = journal_dir(tmp_path / "1-away", "run-away")
    away = MetricJournal(away_dir, "run-away", "http://127.0.0.1:9", send=store_away)
    away.log("loss", 1.0, 1)
    away.close(timeout=0.2)
    done_dir = journal_dir(tmp_path / "2-done", run_id)
    write_journal_meta(
        done_dir,
        {"run_id": run_id, "tracking_uri": uri, "final_status": "FINISHED", "end_time": 1234},
    )
    report = sync(tmp_path, timeout=0.5)
    assert (report.journals, report.pending, report.statuses) == (2, 1, 1)
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"
