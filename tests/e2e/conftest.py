"""End-to-end fixtures: a real git repo, a real MLflow store, a real ``mlflow server``.

- `git_repo`: a temp git repository holding a copy of ``configs/`` (one commit),
  made the current directory.
- `tracking_uri` / `tracking_env`: a SQLite store in a temp dir, and an environment
  for subprocesses with ``MLFLOW_TRACKING_URI`` pointing at it.
- `mlflow_server`: ONE ``mlflow server`` per test session on 127.0.0.1 (a free
  port, one worker, SQLite backend, served artifacts in a temp dir), stopped at
  session end. Tests may `MlflowServer.stop` and `MlflowServer.start` it (the
  outage test); the port and the stores survive a restart.
- `run_trackcfg`: runs ``python -m trackcfg ...`` as a subprocess.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

#: git identity for commits made by tests (no global config needed).
GIT_ENV = {
    "GIT_AUTHOR_NAME": "trackcfg tests",
    "GIT_AUTHOR_EMAIL": "tests@trackcfg.invalid",
    "GIT_COMMITTER_NAME": "trackcfg tests",
    "GIT_COMMITTER_EMAIL": "tests@trackcfg.invalid",
}


def git(args: list[str], cwd: Path) -> str:
    """Run git in ``cwd``; returns stdout (raises on failure)."""
    env = dict(os.environ, **GIT_ENV)
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with ``configs/`` committed once; the current directory."""
    repo = tmp_path / "project"
    shutil.copytree(REPO_ROOT / "configs", repo / "configs")
    git(["init", "-q", "-b", "main"], repo)
    git(["add", "configs"], repo)
    git(["commit", "-q", "-m", "configs"], repo)
    monkeypatch.chdir(repo)
    return repo


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A fresh SQLite tracking store in a temp dir (absolute ``sqlite:////...`` URI)."""
    store = tmp_path / "store"
    store.mkdir()
    return "sqlite:///" + (store / "mlflow.db").as_posix()


@pytest.fixture
def tracking_env(tracking_uri: str) -> dict[str, str]:
    """Environment for subprocesses: ``MLFLOW_TRACKING_URI`` = `tracking_uri`."""
    return dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)


@pytest.fixture
def run_trackcfg() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_trackcfg(*args, env=..., cwd=..., timeout=...)`` runs ``python -m trackcfg``."""

    def run(
        *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trackcfg", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """A real ``mlflow server`` subprocess on 127.0.0.1 (one worker, SQLite, served artifacts).

    The server runs in its own process group, so `stop` ends the uvicorn worker and
    MLflow's job runner with it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.backend = "sqlite:///" + (directory / "server.db").as_posix()
        self.artifacts = directory / "artifacts"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        """Start the server and wait until ``/health`` answers."""
        if self.proc is not None:
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        log = open(self.directory / "server.log", "ab")  # noqa: SIM115 (kept by the child)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                self.backend,
                "--serve-artifacts",
                "--artifacts-destination",
                str(self.artifacts),
            ],
            cwd=self.directory,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = (self.directory / "server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"mlflow server exited early:\n{text}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlflow server did not come up within {timeout} s")

    def stop(self) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        # The job runner may outlive the parent for a moment; end the whole group.
        with _suppress_lookup():
            os.killpg(proc.pid, signal.SIGKILL)

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.proc is not None and self.proc.poll() is None


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is ProcessLookupError or exc[0] is PermissionError


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """ONE real ``mlflow server`` for the whole test session; stopped at the end."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server_env(mlflow_server: MlflowServer) -> Iterator[dict[str, str]]:
    """Environment for subprocesses talking to `mlflow_server` (restarted if a test stopped it)."""
    mlflow_server.start()
    yield dict(os.environ, MLFLOW_TRACKING_URI=mlflow_server.uri)
    mlflow_server.start()
