"""End-to-end fixtures: a real git repo, a real MLflow store, a real ``mlflow server``.

- `git_repo`: a temp git repository holding a copy of ``configs/`` (one commit),
  made the current directory.
- `tracking_uri` / `tracking_env`: a SQLite store in a temp dir, and an environment
  for subprocesses with ``MLFLOW_TRACKING_URI`` pointing at it.
- `mlflow_server`: ONE ``mlflow server`` per test session (the modules using it share
  an xdist group, so one worker starts it) on 127.0.0.1 (a free
  port, one worker, SQLite backend, served artifacts in a temp dir), stopped at
  session end. Tests may `MlflowServer.stop` and `MlflowServer.start` it (the
  outage test); the port and the stores survive a restart.
- `run_trackcfg`: runs ``python -m trackcfg ...`` as a subprocess.
- `team_stack` / `team_env`: ONE team stack per test session (PostgreSQL, moto's S3
  behind a closable gate, ``mlflow server`` with proxied artifacts and basic auth;
  ``examples/team_server/teamstack.py``), started by the first test that asks for it;
  `team_env` restarts any part a fault test stopped and logs in as the admin.
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
from filelock import FileLock

from examples.team_server.teamstack import StackError, TeamStack, postgres_bin_dir

REPO_ROOT = Path(__file__).resolve().parents[2]

#: git identity for commits made by tests (no global config needed).
GIT_ENV = {
    "GIT_AUTHOR_NAME": "trackcfg tests",
    "GIT_AUTHOR_EMAIL": "tests@trackcfg.invalid",
    "GIT_COMMITTER_NAME": "trackcfg tests",
    "GIT_COMMITTER_EMAIL": "tests@trackcfg.invalid",
}


def run_env(tracking_uri: str, **extra: str) -> dict[str, str]:
    """Environment for a tracked subprocess: the store, and one torch intra-op thread.

    One thread: on a shared 2-core machine, torch's OpenMP threads spin-wait against
    every other process and thread, which makes a tiny run's duration swing by 10x;
    the interrupted and the reference runs also need the same thread count to be
    bit-identical.
    """
    return dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri, OMP_NUM_THREADS="1", **extra)


def git(args: list[str], cwd: Path) -> str:
    """Run git in ``cwd``; returns stdout (raises on failure)."""
    env = dict(os.environ, **GIT_ENV)
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


#: A test-only hook module: SIGKILL or raise at a chosen iteration, or slow every
#: iteration down; inert unless the environment variables are set (so the config, and its
#: hash, is the same for the interrupted and the uninterrupted run).
FAULT_HOOKS = '''"""Test-only fault injection for tracked e2e runs."""
import os
import signal
import time

from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.hook import Hook


@HOOKS.register_module()
class E2EFaultHook(Hook):
    def after_train_iter(self, runner):
        kill_at = int(os.environ.get("TRACKCFG_E2E_KILL_AT", "0"))
        if kill_at and runner.iter + 1 == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        delay = float(os.environ.get("TRACKCFG_E2E_ITER_DELAY", "0"))
        if delay:
            time.sleep(delay)
        fail_at = int(os.environ.get("TRACKCFG_E2E_FAIL_AT", "0"))
        if fail_at and runner.iter + 1 == fail_at:
            raise RuntimeError(f"injected failure at iteration {fail_at}")
'''

#: A small tracked experiment: the digits MLP for 4 epochs (45 iterations each),
#: logging every 5 iterations, with the fault hook attached.
E2E_CONFIG = """_base_ = './mlp_sgd_20e.py'
custom_imports = dict(imports=['trackcfg.zoo', 'e2e_hooks'], allow_failed_imports=False)
custom_hooks = [dict(type='E2EFaultHook', priority='HIGHEST')]
runner = dict(max_epochs=4)
log_config = dict(interval=5)
"""

#: The config tests run, relative to the project root.
E2E_CONFIG_PATH = "configs/digits/e2e_mlp.py"
ITERS_PER_EPOCH = 45
MAX_EPOCHS = 4


def make_project(repo: Path) -> Path:
    """Create a git repository at ``repo`` with ``configs/`` and the e2e config, committed."""
    shutil.copytree(REPO_ROOT / "configs", repo / "configs")
    (repo / E2E_CONFIG_PATH).write_text(E2E_CONFIG)
    (repo / "e2e_hooks.py").write_text(FAULT_HOOKS)
    (repo / ".gitignore").write_text("mlflow.db\nmlruns/\nwork_dirs/\n__pycache__/\n")
    git(["init", "-q", "-b", "main"], repo)
    git(["add", "."], repo)
    git(["commit", "-q", "-m", "project"], repo)
    return repo


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with ``configs/`` (+ the e2e config) committed; the current directory."""
    repo = make_project(tmp_path / "project")
    monkeypatch.chdir(repo)
    return repo


def shared_once(tmp_path_factory: pytest.TempPathFactory, name: str) -> tuple[Path, bool]:
    """A directory every pytest-xdist worker of this session shares, and whether it is ready.

    Call under `shared_lock`. Data-only session fixtures (a migrated store, the
    reference run) are made by the first worker that needs them and read by the
    others: each costs seconds of CPU that CI's two cores would otherwise pay twice.
    Without xdist it is this session's own directory.
    """
    directory = _shared_base(tmp_path_factory) / f"shared-{name}"
    return directory, (directory / "READY").exists()


def shared_lock(tmp_path_factory: pytest.TempPathFactory, name: str) -> FileLock:
    """The lock under which one worker makes the shared directory ``name``."""
    return FileLock(str(_shared_base(tmp_path_factory) / f"shared-{name}.lock"))


def _shared_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This session's temp dir, or under xdist popen-gwN's parent: common to all workers."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow SQLite file: stores are byte copies of it.

    Migrating a new store takes 1 s on an idle machine and several on a loaded one;
    one worker does it for all (`shared_once`).
    """
    with shared_lock(tmp_path_factory, "template-store"):
        directory, ready = shared_once(tmp_path_factory, "template-store")
        if not ready:
            directory.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys, mlflow; mlflow.MlflowClient(sys.argv[1]).search_experiments()",
                    "sqlite:///" + (directory / "mlflow.db").as_posix(),
                ],
                cwd=directory,  # the default experiment's artifact root is cwd-relative
                check=True,
                capture_output=True,
                timeout=120,
            )
            (directory / "READY").touch()
    return directory / "mlflow.db"


def sqlite_uri(directory: Path, template: Path) -> str:
    """A fresh store at ``directory/mlflow.db`` (a copy of ``template``); its absolute URI."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, directory / "mlflow.db")
    return "sqlite:///" + (directory / "mlflow.db").as_posix()


@pytest.fixture
def tracking_uri(tmp_path: Path, migrated_store: Path) -> str:
    """A fresh SQLite tracking store in a temp dir (absolute ``sqlite:////...`` URI)."""
    return sqlite_uri(tmp_path / "store", migrated_store)


@pytest.fixture
def tracking_env(tracking_uri: str) -> dict[str, str]:
    """Environment for subprocesses: ``MLFLOW_TRACKING_URI`` = `tracking_uri`."""
    return run_env(tracking_uri)


def trackcfg(
    *args: str, env: dict[str, str] | None, cwd: Path | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m trackcfg *args`` as a subprocess and capture its text output."""
    return subprocess.run(
        [sys.executable, "-m", "trackcfg", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def run_trackcfg() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_trackcfg(*args, env=..., cwd=..., timeout=...)``: `trackcfg` as a fixture."""
    return trackcfg


def wait_for(
    condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 120
) -> None:
    """Poll ``condition`` until it holds; fail if ``proc`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended early"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def agent_pid(trainer: int) -> int | None:
    """The tracking agent that process ``trainer`` started, while it runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == trainer and b"trackcfg.tracking.agent" in cmdline:
            return int(entry.name)
    return None


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
        # MLflow 3.x otherwise spawns about six job-runner (huey) processes per start,
        # for GenAI jobs these tests never use: seconds and hundreds of MB on 2 cores.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
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
    yield run_env(mlflow_server.uri)
    mlflow_server.start()


# -- reading tracked runs back -------------------------------------------------------


def run_id_from(stdout: str) -> str:
    """The run id ``trackcfg run``/``resume`` printed (``run id: <32 hex>``)."""
    for line in stdout.splitlines():
        if line.strip().startswith("run id:"):
            return line.split(":", 1)[1].split()[0]
    raise AssertionError(f"no 'run id:' line in output:\n{stdout}")


def metric_history(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric's full history in the store, sorted by step (duplicates kept)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        for key in sorted(run.data.metrics)
    }


def final_weights(work_dir: Path) -> dict[str, object]:
    """The model state dict of the newest checkpoint in ``work_dir``."""
    from trackcfg.runner.checkpoint import find_latest_checkpoint, load_checkpoint_file

    latest = find_latest_checkpoint(work_dir)
    assert latest is not None, f"no checkpoint in {work_dir}"
    state = load_checkpoint_file(latest)["state_dict"]
    assert isinstance(state, dict)
    return state


class ReferenceRun:
    """The uninterrupted run of the e2e config every interrupted run is compared with."""

    def __init__(self, uri: str, run_id: str, work_dir: Path) -> None:
        self.uri = uri
        self.run_id = run_id
        self.work_dir = work_dir
        self.history = metric_history(uri, run_id)
        self.weights = final_weights(work_dir)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory, migrated_store: Path) -> ReferenceRun:
    """Run the e2e config once, uninterrupted, on its own SQLite store.

    One worker runs it for all (`shared_once`); tests only read its store and files.
    """
    with shared_lock(tmp_path_factory, "reference"):
        root, ready = shared_once(tmp_path_factory, "reference")
        uri = "sqlite:///" + (root / "store" / "mlflow.db").as_posix()
        work = root / "project" / "work_dirs" / "reference"
        if not ready:
            shutil.rmtree(root, ignore_errors=True)  # what a failed attempt left
            repo = make_project(root / "project")
            uri = sqlite_uri(root / "store", migrated_store)
            done = subprocess.run(
                [sys.executable, "-m", "trackcfg", "run", E2E_CONFIG_PATH, "--work-dir", str(work)],
                cwd=repo,
                env=run_env(uri),
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert done.returncode == 0, done.stderr[-3000:]
            (root / "RUN_ID").write_text(run_id_from(done.stdout))
            (root / "READY").touch()
    return ReferenceRun(uri, (root / "RUN_ID").read_text(), work)


def assert_same_weights(a: dict[str, object], b: dict[str, object]) -> None:
    """Bitwise equality of two state dicts."""
    import torch

    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
        assert x.dtype == y.dtype and torch.equal(x, y), f"{key} differs"


# -- the team stack ------------------------------------------------------------------

#: The team server's admin (MLflow basic auth); tests log in as this user.
TEAM_ADMIN = ("admin", "tEam-Adm1n-pw-4217")


@pytest.fixture(scope="session")
def team_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamStack]:
    """ONE team stack for the whole test session; every part stopped at the end.

    Missing PostgreSQL binaries fail the test (CI installs them), never skip it.
    """
    try:
        postgres_bin_dir()
    except StackError as error:
        pytest.fail(f"the team stack needs PostgreSQL: {error}", pytrace=False)
    stack = TeamStack(tmp_path_factory.mktemp("team-stack"), auth=TEAM_ADMIN)
    stack.start()  # stops whatever it started before raising
    print(f"\nteam stack up in {stack.start_seconds:.1f} s")
    try:
        yield stack
    finally:
        stack.stop()


def restore_stack(stack: TeamStack) -> None:
    """Start again whatever part of ``stack`` a fault test stopped."""
    assert stack.postgres is not None and stack.gate is not None and stack.server is not None
    if not stack.postgres.running:
        stack.postgres.start()
    stack.gate.open()
    stack.server.start()


@pytest.fixture
def team_env(team_stack: TeamStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Environment for subprocesses using `team_stack` as the admin; this process too."""
    restore_stack(team_stack)
    for key, value in team_stack.client_env().items():
        monkeypatch.setenv(key, value)  # MlflowClient in the test reads them
    user, password = TEAM_ADMIN
    yield run_env(team_stack.uri, MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
    restore_stack(team_stack)


def bucket_objects(stack: TeamStack, prefix: str = "") -> dict[str, int]:
    """Every object in the stack's bucket under ``prefix``: key -> size."""
    from examples.team_server.teamstack import BUCKET

    assert stack.s3 is not None
    client = stack.s3.client()
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        found.update((o["Key"], o["Size"]) for o in page.get("Contents", []))
    return found


def bucket_object(stack: TeamStack, key: str) -> bytes:
    """The bytes of one object in the stack's bucket."""
    from examples.team_server.teamstack import BUCKET

    assert stack.s3 is not None
    body = stack.s3.client().get_object(Bucket=BUCKET, Key=key)["Body"]
    return bytes(body.read())
