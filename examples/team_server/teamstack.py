"""A team tracking stack on loopback: PostgreSQL, an S3 endpoint (moto) and ``mlflow server``.

What a team runs on a shared host, in miniature and throwaway: MLflow's tracking
server with its runs in PostgreSQL, its artifacts (snapshots, checkpoints) in an
S3 bucket that only the server talks to (proxied artifacts), and optionally
MLflow's basic-auth app in front. Clients need only ``MLFLOW_TRACKING_URI`` (and
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` with auth).

Everything listens on 127.0.0.1 on free ports and lives in temporary
directories; `TeamStack.stop` ends every process it started (each server in a
process group of its own, PostgreSQL through ``pg_ctl``) and removes the
directories. The S3 endpoint sits behind `TcpGate`, a loopback forwarder that a
fault test can close (connections refused, live ones reset) and open again
without losing the bucket (moto keeps its objects in memory only).

Used by the test suite (``tests/e2e/conftest.py``: the ``team_stack`` fixture)
and by users through ``examples/team_server/start.py``. Needs the PostgreSQL
server binaries (Debian: ``apt-get install postgresql``) and the Python packages
``mlflow``, ``moto[server]``, ``psycopg2-binary`` and ``boto3``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "BUCKET",
    "MlflowTeamServer",
    "MotoS3",
    "Postgres",
    "StackError",
    "TcpGate",
    "TeamStack",
    "free_port",
]

#: The bucket the server's artifacts go to.
BUCKET = "trackcfg-team"
#: Dummy keys for moto (it accepts any); the server alone holds them.
S3_KEY_ID = "moto-team-key-id"
S3_SECRET = "moto-team-secret"


class StackError(RuntimeError):
    """A part of the stack cannot be started (missing binaries, a server that died)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes] | None, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{url}: the server exited early:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as error:
            if error.code < 500:
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise StackError(f"{url} did not answer within {timeout:.0f} s:\n{_tail(log)}")


def _tail(log: Path, size: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM ``proc``'s process group, SIGKILL it after ``grace`` s; never leaves one behind."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    # Children (uvicorn's worker) may outlive the leader for a moment: end the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


# --------------------------------------------------------------------------- PostgreSQL


def postgres_bin_dir() -> Path:
    """The directory of the newest PostgreSQL server's binaries (``initdb``, ``pg_ctl``).

    Raises:
        StackError: No PostgreSQL server is installed.
    """
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for directory in reversed(candidates):
        if (Path(directory) / "pg_ctl").exists() and (Path(directory) / "initdb").exists():
            return Path(directory)
    found = shutil.which("pg_ctl")
    if found and (Path(found).parent / "initdb").exists():
        return Path(found).parent
    raise StackError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
        "(Debian/Ubuntu: apt-get install postgresql) or put them on PATH"
    )


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, no fsync, C locale).

    As root, the cluster belongs to the ``postgres`` user (``initdb`` refuses root)
    and lives in a directory of its own under the system temp dir (pytest's temp
    dirs are private to root).
    """

    def __init__(self) -> None:
        self.bin = postgres_bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="trackcfg-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise StackError("running as root needs `runuser` to start PostgreSQL")
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self._initialized = False

    def _run(self, *argv: str, timeout: float = 120) -> None:
        done = subprocess.run(
            [*self._as, *argv], capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if done.returncode != 0:
            raise StackError(f"{' '.join(argv[:2])} failed:\n{done.stdout}{done.stderr}")

    def uri(self, database: str) -> str:
        """SQLAlchemy URI of ``database`` (psycopg2, user ``postgres``, trust on loopback)."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Create the cluster on first use, then start it and wait until it accepts."""
        if not self._initialized:
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            )
            self._initialized = True
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c synchronous_commit=off -c full_page_writes=off -k {self.root}"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "start",
        )  # fmt: skip

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE name``."""
        self._run(
            str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            name,
        )  # fmt: skip

    @property
    def running(self) -> bool:
        """True while the postmaster runs."""
        return (self.data / "postmaster.pid").exists()

    def stop(self) -> None:
        """Stop the cluster (fast shutdown: open sessions are ended); its data stays."""
        if not self.running:
            return
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def dump(self, database: str) -> bytes:
        """``pg_dump`` of ``database``: every row of every table, as SQL text."""
        done = subprocess.run(
            [str(self.bin / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             database],
            capture_output=True, timeout=300, check=True,
        )  # fmt: skip
        return done.stdout

    def destroy(self) -> None:
        """Stop the cluster and delete it."""
        try:
            self.stop()
        finally:
            pid_file = self.data / "postmaster.pid"
            if pid_file.exists():  # pg_ctl failed: end the postmaster by its pid
                with contextlib.suppress(ValueError, OSError):
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------- S3


class TcpGate:
    """A loopback TCP forwarder that can be closed and opened again on the same port.

    Closed: new connections are refused and live ones reset, as when an object
    store goes away; the upstream (and what it holds) is untouched.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def is_open(self) -> bool:
        """True while the gate accepts connections."""
        return self._listener is not None

    def open(self) -> None:
        """Listen on `port` and forward every connection to the upstream."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening and reset every live connection."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            live, self._live = self._live, set()
        for conn in live:
            with contextlib.suppress(OSError):
                # SO_LINGER 0: close sends RST, as a crashed peer's kernel would.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._live.update((client, upstream))
            ends = [2]  # pumps still running for this pair: the last one closes both
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, ends), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, ends: list[int]) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self._lock:
            ends[0] -= 1
            last = ends[0] == 0
            if last:
                self._live.difference_update((source, sink))
        if last:
            source.close()
            sink.close()


class MotoS3:
    """moto's S3 HTTP endpoint on 127.0.0.1 (objects in memory: a restart loses them)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        """Start the endpoint, wait until it answers, create `BUCKET`."""
        log_path = self.directory / "moto.log"
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.directory,
            )
        _wait_http(f"{self.url}/moto-api/", self.proc, log_path, timeout)
        request = urllib.request.Request(f"{self.url}/{BUCKET}", method="PUT")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        """End the endpoint's process group."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _stop_group(proc)

    def client(self) -> Any:
        """A boto3 S3 client on the endpoint (for tests that look into the bucket)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )


# --------------------------------------------------------------------------- mlflow server


AUTH_INI = """[mlflow]
default_permission = {default_permission}
database_uri = {database_uri}
admin_username = {admin_username}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
grant_default_workspace_access = false
# Every request re-checks the password with PBKDF2 otherwise: a second of CPU per
# few requests on a small machine. One worker, so no staleness across workers.
auth_cache_ttl_seconds = 60
"""


class MlflowTeamServer:
    """``mlflow server`` on 127.0.0.1: PostgreSQL runs, proxied S3 artifacts, optional auth."""

    def __init__(
        self,
        directory: Path,
        backend_uri: str,
        s3_endpoint: str,
        auth_database_uri: str | None = None,
        admin: tuple[str, str] | None = None,
        default_permission: str = "READ",
    ) -> None:
        self.directory = directory
        self.backend_uri = backend_uri
        self.s3_endpoint = s3_endpoint
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.auth_database_uri = auth_database_uri
        self.admin = admin
        self.default_permission = default_permission
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "mlflow-server.log"
        self._flask_key = secrets.token_hex(16)

    def argv(self) -> list[str]:
        """The server's command line (no secret on it: those go by environment)."""
        argv = ["mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--workers", "1", "--backend-store-uri", self.backend_uri]
        argv += ["--serve-artifacts", "--artifacts-destination", f"s3://{BUCKET}/"]
        if self.admin is not None:
            argv += ["--app-name", "basic-auth"]
        return argv

    def environment(self) -> dict[str, str]:
        """The server's environment: S3 keys and endpoint, auth config; no client settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        env.update(
            AWS_ACCESS_KEY_ID=S3_KEY_ID,
            AWS_SECRET_ACCESS_KEY=S3_SECRET,
            AWS_DEFAULT_REGION="us-east-1",
            MLFLOW_S3_ENDPOINT_URL=self.s3_endpoint,
            # GenAI job runners (huey): seconds and ~1 GB more, for nothing trackcfg uses.
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        )
        if self.admin is not None:
            assert self.auth_database_uri is not None
            ini = self.directory / "basic_auth.ini"
            ini.write_text(
                AUTH_INI.format(
                    default_permission=self.default_permission,
                    database_uri=self.auth_database_uri,
                    admin_username=self.admin[0],
                )
            )
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
            env["MLFLOW_AUTH_ADMIN_PASSWORD"] = self.admin[1]
            # Signs the UI's CSRF tokens; kept across restarts so open sessions stay valid.
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = self._flask_key
        return env

    def start(self, timeout: float = 180) -> None:
        """Start the server and wait until ``/health`` answers."""
        if self.running:
            return
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *self.argv()],
                cwd=self.directory,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_http(f"{self.uri}/health", self.proc, self.log, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 5.0) -> None:
        """End the server's process group (SIGTERM; SIGKILL after ``grace`` s)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _stop_group(proc, grace)

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.proc is not None and self.proc.poll() is None


# --------------------------------------------------------------------------- the stack


class TeamStack:
    """PostgreSQL + S3 (behind a `TcpGate`) + ``mlflow server``, started and stopped together.

    Args:
        directory: Where logs and the auth config go (created).
        auth: ``(admin user, admin password)`` to serve MLflow's basic-auth app, or None.
    """

    def __init__(self, directory: Path, auth: tuple[str, str] | None = None) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.auth = auth
        self.postgres: Postgres | None = None
        self.s3: MotoS3 | None = None
        self.gate: TcpGate | None = None
        self.server: MlflowTeamServer | None = None
        self.start_seconds = 0.0

    @property
    def uri(self) -> str:
        """What clients set as ``MLFLOW_TRACKING_URI``."""
        assert self.server is not None
        return self.server.uri

    def client_env(self) -> dict[str, str]:
        """What a client sets: the tracking URI, and the admin's credentials with auth."""
        env = {"MLFLOW_TRACKING_URI": self.uri}
        if self.auth is not None:
            env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = self.auth
        return env

    def start(self) -> None:
        """Start every part, in order; on any failure stop what already runs and raise."""
        began = time.monotonic()
        try:
            self.postgres = Postgres()
            self.postgres.start()
            self.postgres.create_database("mlflow")
            auth_db = None
            if self.auth is not None:
                self.postgres.create_database("mlflow_auth")
                auth_db = self.postgres.uri("mlflow_auth")
            self.s3 = MotoS3(self.directory)
            self.s3.start()
            self.gate = TcpGate(self.s3.port)
            self.gate.open()
            self.server = MlflowTeamServer(
                self.directory,
                self.postgres.uri("mlflow"),
                f"http://127.0.0.1:{self.gate.port}",
                auth_database_uri=auth_db,
                admin=self.auth,
            )
            self.server.start()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop everything this stack started (each step even if an earlier one failed)."""
        errors: list[BaseException] = []
        for step in (
            self.server.stop if self.server else None,
            self.gate.close if self.gate else None,
            self.s3.stop if self.s3 else None,
            self.postgres.destroy if self.postgres else None,
        ):
            if step is None:
                continue
            try:
                step()
            except Exception as error:  # one failed step must not leave the others running
                errors.append(error)
        if errors:
            raise StackError(f"stopping the stack: {errors}")

    def __enter__(self) -> TeamStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def team_stack(directory: Path, auth: tuple[str, str] | None = None) -> Iterator[TeamStack]:
    """`TeamStack` as a context manager: started on entry, stopped on exit (also on error)."""
    stack = TeamStack(directory, auth)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
