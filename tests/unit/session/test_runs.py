"""Session entry points: errors that need no training."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.unit.runner.toys import ToyData, ToyNet
from trackcfg.errors import ArgumentValueError, RunNotFoundError, TrackingError, WorkDirError
from trackcfg.registry import DATASETS, MODELS
from trackcfg.session.runs import (
    PREEMPT_SIGNALS_ENV,
    preemption_signals_from_env,
    resume_run,
    start_run,
)
from trackcfg.tracking.sync import HTTP_DEFAULTS, SyncReport


@pytest.fixture(autouse=True)
def _restore_http_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # The session sets these process-wide when unset; keep that inside the test.
    for name, value in HTTP_DEFAULTS.items():
        monkeypatch.setenv(name, value)


MODELS.register_module(name="SessionToyNet", module=ToyNet, force=True)
DATASETS.register_module(name="SessionToyData", module=ToyData, force=True)

#: The least config a run builds (before it asks the store for a run: a config that
#: cannot be built must leave no run).
CONFIG = (
    "model = dict(type='SessionToyNet')\n"
    "data = dict(samples_per_gpu=4, train=dict(type='SessionToyData'))\n"
    "optimizer = dict(type='SGD', lr=0.1)\n"
    "runner = dict(type='EpochBasedRunner', max_epochs=1)\n"
    "log_config = dict(interval=1, hooks=[])\n"
)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_start_run_against_an_unreachable_server_is_one_tracking_error(tmp_path: Path) -> None:
    config = tmp_path / "c.py"
    config.write_text(CONFIG)
    uri = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(TrackingError, match=rf"tracking store {uri}: ") as caught:
        start_run(config, work_dir=tmp_path / "work", tracking_uri=uri)
    assert "server is running" in str(caught.value)


def test_start_run_error_names_the_store_without_its_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "c.py"
    config.write_text(CONFIG)
    port = closed_port()
    uri = f"http://alice:p%40ss%2Fw@127.0.0.1:{port}"
    with pytest.raises(TrackingError) as caught:
        start_run(config, work_dir=tmp_path / "work", tracking_uri=uri)
    assert str(caught.value).startswith(f"tracking store http://127.0.0.1:{port}: ")
    assert "alice" not in str(caught.value) and "p%40ss" not in str(caught.value)


def test_start_run_in_a_work_dir_that_cannot_be_written_creates_no_run(
    tmp_path: Path, sqlite_store: str
) -> None:
    from mlflow import MlflowClient

    config = tmp_path / "c.py"
    config.write_text(CONFIG)
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the work dir's parent should be: writes fail as root too
    with pytest.raises(WorkDirError) as caught:
        start_run(config, work_dir=blocker / "work", tracking_uri=sqlite_store)
    assert str(caught.value).startswith(
        f"work dir {blocker / 'work'}: not writable: Not a directory"
    )
    assert "--work-dir" in str(caught.value)
    client = MlflowClient(sqlite_store)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_resume_of_an_unknown_run_id_is_run_not_found(sqlite_store: str) -> None:
    with pytest.raises(RunNotFoundError):
        resume_run("0" * 32, tracking_uri=sqlite_store)


@pytest.mark.parametrize(
    ("report", "text"),
    [
        (
            SyncReport(1, 5, 0, 1),
            "1 journal(s): 5 metric(s) delivered, 0 pending, 1 run status(es) set",
        ),
        (SyncReport(2, 0, 3, 0), "3 pending"),
    ],
)
def test_sync_report_reads_as_one_line(report: SyncReport, text: str) -> None:
    assert text in str(report)
    assert ("trackcfg sync" in str(report)) == bool(report.pending)


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("", ["SIGTERM"]),
        ("USR1", ["SIGTERM", "SIGUSR1"]),
        ("sigusr2, USR1 TERM", ["SIGTERM", "SIGUSR2", "SIGUSR1"]),
    ],
)
def test_preemption_signals_are_sigterm_and_those_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, value: str, names: list[str]
) -> None:
    monkeypatch.setenv(PREEMPT_SIGNALS_ENV, value)
    assert [s.name for s in preemption_signals_from_env()] == names


def test_a_bad_preemption_signal_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PREEMPT_SIGNALS_ENV, "USR1,HUPP")
    with pytest.raises(ArgumentValueError) as caught:
        preemption_signals_from_env()
    assert str(caught.value).splitlines()[0] == ("TRACKCFG_PREEMPT_SIGNALS: unknown signal 'HUPP'")
