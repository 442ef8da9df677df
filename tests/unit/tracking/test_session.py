"""Session entry points: errors that need no training."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from trackcfg.errors import RunNotFoundError, TrackingError
from trackcfg.tracking.session import HTTP_DEFAULTS, SyncReport, resume_run, start_run


@pytest.fixture(autouse=True)
def _restore_http_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # The session sets these process-wide when unset; keep that inside the test.
    for name, value in HTTP_DEFAULTS.items():
        monkeypatch.setenv(name, value)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_start_run_against_an_unreachable_server_is_one_tracking_error(tmp_path: Path) -> None:
    config = tmp_path / "c.py"
    config.write_text("model = dict(type='M')\n")
    uri = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(TrackingError, match=rf"tracking store {uri}: ") as caught:
        start_run(config, work_dir=tmp_path / "work", tracking_uri=uri)
    assert "server is running" in str(caught.value)


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
