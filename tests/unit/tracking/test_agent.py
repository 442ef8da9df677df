"""The tracking agent as a real child process against a real SQLite store.

Each test starts an agent (``TrackingAgent.spawn``: a Python process importing
MLflow, about a second idle), so there are few of them, each checking what the
store holds afterwards.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import xxhash
from mlflow import MlflowClient
from mlflow.entities import Run

from trackcfg.errors import TrackingError
from trackcfg.tracking.agent.client import AgentDone, TrackingAgent
from trackcfg.tracking.agent.journal import MetricJournal, MetricRecord, journal_dir
from trackcfg.tracking.agent.lease import Lease, new_lease

History = Callable[[str, str, str], list[tuple[int, float]]]

# The agent inherits the environment: an unreachable store fails at once, and the
# HTTP settings the session code fills in stay inside each test.
pytestmark = pytest.mark.usefixtures("fail_fast_http")

EXPERIMENT = "agent-tests"
NAME = "mlp@01234567"
TAGS = {"trackcfg.config_hash": "0123456789abcdef", "trackcfg.work_dir": "/somewhere"}
PARAMS = {"model.depth": "50", "optimizer.lr": "0.1"}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def snapshot(work: Path) -> Path:
    """A staged snapshot directory, as `start_run` writes it before the run exists."""
    staged = work / ".trackcfg" / "staging" / "snapshot-test" / "trackcfg"
    staged.mkdir(parents=True)
    (staged / "config.json").write_text('{"model": {"depth": 50}}')
    (staged / "lineage").mkdir()
    (staged / "lineage" / "mlp.py").write_text("model = dict(depth=50)\n")
    return staged


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git work tree with one commit and one uncommitted change."""
    root = tmp_path / "project"
    root.mkdir()
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "HOME": str(tmp_path),
        "PATH": os.environ.get("PATH", ""),
    }
    (root / "mlp.py").write_text("model = dict(depth=50)\n")
    for args in (["init", "-q", "-b", "main"], ["add", "mlp.py"], ["commit", "-qm", "c"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)
    (root / "mlp.py").write_text("model = dict(depth=101)\n")
    return root


@pytest.fixture
def spawn_agent(project: Path) -> Iterator[Callable[[str], TrackingAgent]]:
    """``spawn(uri)``: an agent for `project`, told no more is coming at teardown."""
    agents: list[TrackingAgent] = []

    def spawn(uri: str) -> TrackingAgent:
        agent = TrackingAgent.spawn(uri, project=project)
        agents.append(agent)
        return agent

    yield spawn
    for agent in agents:
        agent.abandon()  # a no-op wait for one that already ended


def start(agent: TrackingAgent, snapshot: Path, work: Path) -> None:
    agent.start(
        experiment=EXPERIMENT,
        name=NAME,
        tags=TAGS,
        params=PARAMS,
        truncated=["model.very_long_value"],
        snapshot=snapshot,
        work_dir=work,
        keep_last=None,
        lease=new_lease(),
    )


def wait_for_status(client: MlflowClient, run_id: str, status: str, seconds: float) -> Run:
    deadline = time.monotonic() + seconds
    run = client.get_run(run_id)
    while run.info.status != status and time.monotonic() < deadline:
        time.sleep(0.2)
        run = client.get_run(run_id)
    return run


def test_start_creates_the_run_with_its_tags_params_name_and_snapshot(
    sqlite_store: str, work: Path, snapshot: Path, spawn_agent: Callable[[str], TrackingAgent]
) -> None:
    agent = spawn_agent(sqlite_store)
    start(agent, snapshot, work)
    ready = agent.wait_ready()
    client = MlflowClient(sqlite_store)
    run = client.get_run(ready.run_id)
    assert (run.info.run_name, run.info.status) == (NAME, "RUNNING")
    assert client.get_experiment(ready.experiment_id).name == EXPERIMENT
    assert TAGS.items() <= run.data.tags.items()
    assert run.data.tags["trackcfg.truncated_params"] == '["model.very_long_value"]'
    assert run.data.params == PARAMS
    assert [a.path for a in client.list_artifacts(ready.run_id, "trackcfg")] == [
        "trackcfg/config.json",
        "trackcfg/git.json",
        "trackcfg/git.patch",
        "trackcfg/lineage",
        "trackcfg/manifest.json",
    ]
    # Sealed before the run was created: the manifest's root digest is its tag.
    manifest = client.download_artifacts(ready.run_id, "trackcfg/manifest.json", str(work / "m"))
    root = "sha256:" + hashlib.sha256(Path(manifest).read_bytes()).hexdigest()
    assert run.data.tags["trackcfg.snapshot_digest"] == root
    # The git state the agent captured when it started: tags and snapshot files.
    assert run.data.tags["mlflow.source.git.branch"] == "main"
    assert run.data.tags["trackcfg.git_dirty"] == "true"
    assert re.fullmatch(r"[0-9a-f]{40}", run.data.tags["mlflow.source.git.commit"])
    patch = client.download_artifacts(ready.run_id, "trackcfg/git.patch", str(work / "dl"))
    assert b"+model = dict(depth=101)" in Path(patch).read_bytes()
    assert [a.path for a in client.list_artifacts(ready.run_id, "trackcfg/lineage")] == [
        "trackcfg/lineage/mlp.py"
    ]
    assert not snapshot.parent.exists()  # the staging copy is gone once uploaded
    # The run's lease, held by this trainer and renewed by its agent.
    lease = Lease.from_tag(run.data.tags["trackcfg.lease"])
    assert lease is not None and lease.pids == (os.getpid(), agent.pid)


def test_end_finished_delivers_metrics_uploads_checkpoints_and_sets_the_status(
    sqlite_store: str,
    work: Path,
    snapshot: Path,
    spawn_agent: Callable[[str], TrackingAgent],
    metric_history: History,
) -> None:
    agent = spawn_agent(sqlite_store)
    start(agent, snapshot, work)
    run_id = agent.wait_ready().run_id
    journal = MetricJournal(journal_dir(work, run_id), run_id, sqlite_store)
    for step in range(1, 11):
        journal.log("loss", float(step), step)
    seq = journal.flush(timeout=10)
    assert seq == 10
    data = b"weights" * 1000
    checkpoint = work / "epoch_1.pth"
    checkpoint.write_bytes(data)
    digest = xxhash.xxh3_128_hexdigest(data)
    agent.checkpoint(path=checkpoint, digest=digest, epoch=1, iter=10, seq=seq)
    for step in range(11, 21):
        journal.log("loss", float(step), step)
    final = journal.close()
    done = agent.end(
        "FINISHED", error=None, final_seq=final, delivery_timeout=30, upload_timeout=30
    )
    assert done == AgentDone(pending=0, status_set=True)
    client = MlflowClient(sqlite_store)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "trackcfg.lease" not in run.data.tags  # released once the status was set
    assert metric_history(sqlite_store, run_id, "loss") == [(s, float(s)) for s in range(1, 21)]
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == [
        "checkpoints/epoch_1.pth"
    ]
    assert run.data.tags["trackcfg.latest_checkpoint"] == "checkpoints/epoch_1.pth"
    assert run.data.tags["trackcfg.latest_checkpoint_digest"] == digest
    assert run.data.tags["trackcfg.latest_checkpoint_iter"] == "10"


def test_end_failed_records_the_error_as_a_tag_and_the_runs_note(
    sqlite_store: str, work: Path, snapshot: Path, spawn_agent: Callable[[str], TrackingAgent]
) -> None:
    agent = spawn_agent(sqlite_store)
    start(agent, snapshot, work)
    run_id = agent.wait_ready().run_id
    done = agent.end(
        "FAILED",
        error="RuntimeError: loss is nan",
        final_seq=None,
        delivery_timeout=10,
        upload_timeout=10,
    )
    assert done == AgentDone(pending=0, status_set=True)
    run = MlflowClient(sqlite_store).get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["trackcfg.error"] == "RuntimeError: loss is nan"
    assert run.data.tags["mlflow.note.content"] == "Run failed: RuntimeError: loss is nan"


def test_an_agent_abandoned_before_start_exits_0_and_creates_no_run(sqlite_store: str) -> None:
    # The agent's documented command line (what `spawn` runs), with our own Popen
    # to read the exit status.
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackcfg.tracking.agent"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=dict(os.environ, MLFLOW_TRACKING_URI=sqlite_store),
    )
    TrackingAgent(proc).abandon()
    assert proc.returncode == 0
    client = MlflowClient(sqlite_store)
    experiments = client.search_experiments()
    assert [e.name for e in experiments] == ["Default"]
    assert client.search_runs([e.experiment_id for e in experiments]) == []


def test_the_agent_command_line_holds_no_store_credentials(
    unreachable_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `ps` shows every user a process's arguments: the store travels in the environment.
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    password = "p@ss/w#rd?x@"
    host = unreachable_uri.removeprefix("http://")
    agent = TrackingAgent.spawn(f"http://alice:{password}@{host}")
    try:
        cmdline = Path(f"/proc/{agent.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{agent.pid}/environ").read_bytes().split(b"\0")
    finally:
        agent.abandon()
    assert b"p@ss" not in cmdline and host.encode() not in cmdline
    assert f"MLFLOW_TRACKING_URI={unreachable_uri}".encode() in environ
    assert f"MLFLOW_TRACKING_PASSWORD={password}".encode() in environ


def test_wait_ready_names_an_unreachable_store(
    unreachable_uri: str, work: Path, snapshot: Path, spawn_agent: Callable[[str], TrackingAgent]
) -> None:
    agent = spawn_agent(unreachable_uri)
    start(agent, snapshot, work)
    with pytest.raises(TrackingError, match=re.escape(f"tracking store {unreachable_uri}: ")) as e:
        agent.wait_ready()
    assert "server is running" in str(e.value)


_TRAINER_KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from trackcfg.tracking.agent.client import TrackingAgent
    from trackcfg.tracking.agent.journal import MetricJournal, journal_dir
    from trackcfg.tracking.agent.lease import new_lease

    uri, work, snapshot = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    agent = TrackingAgent.spawn(uri, project=work)  # not a git work tree: recorded so
    agent.start(experiment="agent-tests", name="killed", tags={}, params={}, truncated=[],
                snapshot=snapshot, work_dir=work, keep_last=None, lease=new_lease())
    run_id = agent.wait_ready().run_id
    print(run_id, flush=True)
    journal = MetricJournal(journal_dir(work, run_id), run_id, uri)
    for step in range(1, 21):
        journal.log("loss", float(step), step)
    journal.flush(timeout=30)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_trainer_killed_without_end_has_its_metrics_delivered_and_its_run_killed(
    sqlite_store: str, tmp_path: Path, work: Path, snapshot: Path, metric_history: History
) -> None:
    with open(tmp_path / "trainer.stderr", "wb") as stderr:  # the agent inherits it
        trainer = subprocess.run(
            [sys.executable, "-c", _TRAINER_KILLED, sqlite_store, str(work), str(snapshot)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            timeout=120,
        )
    assert trainer.returncode == -signal.SIGKILL, (tmp_path / "trainer.stderr").read_text()
    run_id = trainer.stdout.decode().strip()
    run = wait_for_status(MlflowClient(sqlite_store), run_id, "KILLED", seconds=60)
    assert run.info.status == "KILLED"
    assert "died without reporting a status" in run.data.tags["trackcfg.error"]
    assert metric_history(sqlite_store, run_id, "loss") == [(s, float(s)) for s in range(1, 21)]


def test_end_delivers_the_records_the_journal_could_not_write(
    sqlite_store: str,
    work: Path,
    snapshot: Path,
    spawn_agent: Callable[[str], TrackingAgent],
    metric_history: History,
) -> None:
    agent = spawn_agent(sqlite_store)
    start(agent, snapshot, work)
    run_id = agent.wait_ready().run_id
    journal = MetricJournal(journal_dir(work, run_id), run_id, sqlite_store)
    for step in range(1, 6):
        journal.log("loss", float(step), step)
    final = journal.close()
    unjournaled = [MetricRecord(final + i, "loss", float(5 + i), 5 + i, 0) for i in (1, 2, 3)]
    done = agent.end(
        "FINISHED",
        error=None,
        final_seq=final + 3,
        delivery_timeout=30,
        upload_timeout=30,
        unjournaled=unjournaled,
    )
    assert done == AgentDone(pending=0, status_set=True)
    assert metric_history(sqlite_store, run_id, "loss") == [(s, float(s)) for s in range(1, 9)]


def test_records_neither_journaled_nor_delivered_are_reported_lost(
    unreachable_uri: str, work: Path, spawn_agent: Callable[[str], TrackingAgent]
) -> None:
    run_id = "0" * 32
    directory = journal_dir(work, run_id)
    directory.mkdir(parents=True)
    (directory / "metrics.jsonl").mkdir()  # a journal nothing can be written to
    agent = spawn_agent(unreachable_uri)
    agent.attach(run_id=run_id, experiment_id="0", work_dir=work, keep_last=None, lease=new_lease())
    agent.wait_ready()
    records = [MetricRecord(seq, "loss", 1.0, seq, 0) for seq in (1, 2)]
    done = agent.end(
        "FINISHED",
        error=None,
        final_seq=2,
        delivery_timeout=1,
        upload_timeout=1,
        unjournaled=records,
    )
    assert done == AgentDone(pending=0, status_set=False, lost=2)


def test_a_run_that_ends_finished_loses_the_error_tag_and_note_of_an_earlier_end(
    sqlite_store: str, work: Path, spawn_agent: Callable[[str], TrackingAgent]
) -> None:
    client = MlflowClient(sqlite_store)
    run = client.create_run(client.create_experiment("resumed"))
    run_id = run.info.run_id
    client.set_tag(run_id, "trackcfg.error", "the training process died without reporting")
    client.set_tag(run_id, "mlflow.note.content", "Run failed: RuntimeError: boom")
    client.set_terminated(run_id, "FAILED")
    agent = spawn_agent(sqlite_store)  # what `resume` does next: attach, train, end
    agent.attach(
        run_id=run_id,
        experiment_id=run.info.experiment_id,
        work_dir=work,
        keep_last=None,
        lease=new_lease(),
    )
    agent.wait_ready()
    done = agent.end("FINISHED", error=None, final_seq=None, delivery_timeout=5, upload_timeout=5)
    assert done == AgentDone(pending=0, status_set=True)
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert "trackcfg.error" not in finished.data.tags
    assert "mlflow.note.content" not in finished.data.tags
