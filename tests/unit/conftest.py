"""Fixtures for unit tests of tracking and sessions: fresh SQLite MLflow stores, fast.

Creating an MLflow SQLite store runs every schema migration (1 s idle, several
seconds on a loaded 2-core machine). One store is migrated per session and each
test gets a byte copy of it: a real, empty, fully migrated store.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow SQLite database file (do not write to it)."""
    from mlflow import MlflowClient

    directory = tmp_path_factory.mktemp("template-store")
    previous = Path.cwd()
    os.chdir(directory)  # the default experiment's artifact root is cwd-relative
    try:
        MlflowClient("sqlite:///" + (directory / "mlflow.db").as_posix()).search_experiments()
    finally:
        os.chdir(previous)
    return directory / "mlflow.db"


@pytest.fixture
def sqlite_store(tmp_path: Path, migrated_store: Path) -> str:
    """The URI of a fresh SQLite store in ``tmp_path/store``."""
    store = tmp_path / "store"
    store.mkdir()
    shutil.copyfile(migrated_store, store / "mlflow.db")
    return "sqlite:///" + (store / "mlflow.db").as_posix()


@pytest.fixture
def store_run(sqlite_store: str) -> tuple[str, str]:
    """(tracking URI, run id) of a fresh run in a fresh SQLite store."""
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_store)
    run = client.create_run(client.create_experiment("tracking"))
    return sqlite_store, run.info.run_id


@pytest.fixture
def metric_history() -> Callable[[str, str, str], list[tuple[int, float]]]:
    """``history(uri, run_id, key)``: the (step, value) pairs the store holds, sorted."""
    from mlflow import MlflowClient

    def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))

    return history


@pytest.fixture
def fail_fast_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow HTTP settings that give up on an unreachable store at once.

    Set for this test only (and inherited by the processes it starts): the session
    functions fill in `HTTP_DEFAULTS` process-wide where they are unset.
    """
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


@pytest.fixture
def unreachable_uri() -> str:
    """An HTTP tracking URI on a local port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    return f"http://127.0.0.1:{port}"
