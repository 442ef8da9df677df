"""Fixtures for tracking unit tests: fresh SQLite MLflow stores, fast.

Creating an MLflow SQLite store runs every schema migration (1 s idle, several
seconds on a loaded 2-core machine). One store is migrated per session and each
test gets a byte copy of it: a real, empty, fully migrated store.
"""

from __future__ import annotations

import os
import shutil
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
