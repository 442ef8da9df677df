"""Tracked jobs under the REAL torchrun: one MLflow run per job, continued after a restart.

Every case is ``torchrun ... -m trackcfg run CONFIG`` (gloo, ``OMP_NUM_THREADS=1``,
127.0.0.1) with ``--rdzv-id`` (the job key) and ``--max-restarts``; nobody types a
run id. Each interrupted case must end bitwise equal to its uninterrupted twin
(same world size): every tensor of the final checkpoint, and every metric of the
run's history, each step exactly once. The store must hold one run per job,
FINISHED, resumed at least once, with its checkpoints in its artifacts.

- ``faults3``: 3 ranks on one node, two faults in one job (one job's processes
  less on a 2-core CI machine): rank 1 is SIGKILLed at iteration 3; torchrun
  restarts the workers and the new rank 0 continues the job's run; in that
  attempt rank 0 SIGKILLs itself halfway through its 3rd checkpoint write
  (``TRACKCFG_FAILPOINT``), leaving a torn file; the third attempt finishes.
- ``node2x2``: 2 torchrun "nodes" x 2 ranks; at iteration 5 node B stalls, the test
  kills its agent and workers (their process groups) and starts a replacement
  node, which rejoins the rendezvous (``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``).
  Node A's agent restarts its workers; rank 0 may be on either node.

All cases and their twins run concurrently in one module fixture. With 3 or more
ranks, bit-identity needs a gradient reduction that does not depend on DDP's
bucket layout (``trackcfg.runner.parallel``); without it the comparisons of the
interrupted cases fail after the resume, and nothing else.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.e2e.conftest import free_port, make_project, run_env, sqlite_uri
from trackcfg.runner.checkpoint import load_checkpoint_file

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]

#: 12 iterations of a small MLP, a checkpoint and a log record every iteration.
CONFIG = """_base_ = './mlp_sgd_20e.py'
custom_imports = dict(imports=['trackcfg.zoo', 'cluster_hooks'], allow_failed_imports=False)
custom_hooks = [dict(type='ClusterFaultHook', priority='HIGHEST')]
model = dict(hidden_dims=(16,), dropout=0.1)
data = dict(samples_per_gpu=8)
runner = dict(_delete_=True, type='IterBasedRunner', max_iters=12)
workflow = [('train', 1)]
lr_config = dict(policy='step', step=[8], by_epoch=False)
checkpoint_config = dict(interval=1, by_epoch=False, max_keep_ckpts=3)
log_config = dict(interval=1, hooks=[dict(type='TextLoggerHook', by_epoch=False)])
"""
CONFIG_PATH = "configs/digits/cluster_tiny.py"
MAX_ITERS = 12

#: Faults of the first attempt only (torchrun's restart count 0 on the node).
HOOKS = '''"""Test-only faults for torchrun jobs; inert unless the variables are set."""
import os
import signal
import time
from pathlib import Path

from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.hook import Hook

# The checkpoint failpoint of one attempt only (imported before the runner is built).
if "TRACKCFG_E2E_WRITE_ATTEMPT" in os.environ and os.environ.get(
    "TORCHELASTIC_RESTART_COUNT"
) == os.environ["TRACKCFG_E2E_WRITE_ATTEMPT"]:
    os.environ["TRACKCFG_FAILPOINT"] = os.environ["TRACKCFG_E2E_WRITE_FAILPOINT"]


@HOOKS.register_module()
class ClusterFaultHook(Hook):
    def after_train_iter(self, runner):
        term = int(os.environ.get("TRACKCFG_E2E_TERM_AT", "0"))
        if term and runner.iter + 1 == term and os.environ.get("RANK", "0") == "0":
            # Preempted: SIGTERM to the launcher (torchrun forwards it to every worker),
            # or to this process when it is alone.
            launched = "TORCHELASTIC_RESTART_COUNT" in os.environ
            os.kill(os.getppid() if launched else os.getpid(), signal.SIGTERM)
        at = int(os.environ.get("TRACKCFG_E2E_KILL_AT", "0"))
        if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0" or runner.iter + 1 != at:
            return
        if os.environ.get("RANK") == os.environ.get("TRACKCFG_E2E_KILL_RANK"):
            os.kill(os.getpid(), signal.SIGKILL)
        node = os.environ.get("TRACKCFG_E2E_NODE")
        if node and node == os.environ.get("TRACKCFG_E2E_STALL_NODE"):
            Path(os.environ["TRACKCFG_E2E_MARK"]).touch()
            time.sleep(600)  # killed by the test with its node
'''

KILL_AT = 5
JOB_TIMEOUT = 420.0


@dataclass
class Job:
    """One torchrun job: its project, store and the torchrun agents ("nodes") it started."""

    name: str
    root: Path
    uri: str
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)
    seconds: float = 0.0
    #: What a case observed between its steps (exit codes, statuses, log lines).
    seen: dict[str, object] = field(default_factory=dict)

    @property
    def project(self) -> Path:
        return self.root / "project"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def kill_node(agent: subprocess.Popen[bytes]) -> None:
    """SIGKILL a torchrun agent and its workers (each worker has a session of its own)."""
    for worker in _children(agent.pid):
        with _gone():
            os.killpg(worker, signal.SIGKILL)
    with _gone():
        os.killpg(agent.pid, signal.SIGKILL)
    agent.wait(timeout=30)


class _gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: object, tb: object) -> bool:
        return isinstance(error, ProcessLookupError | PermissionError)


def job_env(job: Job, **extra: str) -> dict[str, str]:
    """The environment of one of ``job``'s processes: its store, its project's hooks,
    none of this session's rank variables or failpoint, then ``extra``."""
    env = run_env(
        job.uri,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]), str(job.project)]),
    )
    for name in ("TRACKCFG_FAILPOINT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        env.pop(name, None)
    env.update(extra)
    return env


def start_node(
    job: Job,
    *,
    nnodes: int,
    nproc: int,
    port: int,
    node: str,
    extra: dict[str, str] | None = None,
    args: tuple[str, ...] = ("run", CONFIG_PATH),
    max_restarts: int = 3,
) -> subprocess.Popen[bytes]:
    env = job_env(
        job, TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1", TRACKCFG_E2E_NODE=node, **(extra or {})
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        f"--rdzv-id={job.name}",
        f"--max-restarts={max_restarts}",
        "--monitor-interval=0.2",
        "--local-addr=127.0.0.1",
        "-m",
        "trackcfg",
        *args,
    ]
    log = open(job.root / f"node-{node}.log", "ab")  # noqa: SIM115 (kept by the child)
    agent = subprocess.Popen(
        cmd, cwd=job.project, env=env, stdout=log, stderr=log, start_new_session=True
    )
    job.agents.append(agent)
    return agent


def wait_listening(port: int, agent: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Until the rendezvous store of the first node accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert agent.poll() is None, "the first node ended early"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("the first node never listened")


def finish(job: Job, agents: list[subprocess.Popen[bytes]]) -> None:
    for agent in agents:
        code = agent.wait(timeout=JOB_TIMEOUT)
        if code != 0:
            logs = "\n".join(p.read_text(errors="replace")[-6000:] for p in job.root.glob("*.log"))
            raise AssertionError(f"{job.name}: torchrun exited {code}:\n{logs}")


def one_node(job: Job, nproc: int, extra: dict[str, str] | None = None) -> None:
    finish(job, [start_node(job, nnodes=1, nproc=nproc, port=free_port(), node="A", extra=extra)])


def two_nodes_one_replaced(job: Job) -> None:
    port = free_port()
    mark = job.root / "stalled"
    faults = {
        "TRACKCFG_E2E_KILL_AT": str(KILL_AT),
        "TRACKCFG_E2E_STALL_NODE": "B",
        "TRACKCFG_E2E_MARK": str(mark),
    }
    first = start_node(job, nnodes=2, nproc=2, port=port, node="A", extra=faults)
    wait_listening(port, first)
    second = start_node(job, nnodes=2, nproc=2, port=port, node="B", extra=faults)
    deadline = time.monotonic() + JOB_TIMEOUT
    while not mark.exists():
        assert first.poll() is None and second.poll() is None, "a node ended before the fault"
        assert time.monotonic() < deadline, "node B never reached the fault"
        time.sleep(0.1)
    kill_node(second)
    replacement = start_node(job, nnodes=2, nproc=2, port=port, node="B2", extra=faults)
    finish(job, [first, replacement])


def _logs(job: Job) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(job.root.glob("*.log")))


def _one_run(job: Job) -> tuple[Any, Any]:
    """The job's store client and its one run (a job makes exactly one)."""
    import mlflow

    client = mlflow.MlflowClient(job.uri)
    runs = [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id])
    ]
    assert len(runs) == 1, f"{job.name}: {len(runs)} runs for one job"
    return client, runs[0]


def _only_run(job: Job) -> tuple[str, str, dict[str, str]]:
    """The job's one run: id, status, tags (read by the case between its steps)."""
    run = _one_run(job)[1]
    return run.info.run_id, run.info.status, dict(run.data.tags)


def preempted_refused_continued(job: Job) -> None:
    """SIGTERM to the job; a resume with 2 ranks refused; the same command with --resume auto."""
    first = start_node(
        job, nnodes=1, nproc=3, port=free_port(), node="A", extra={"TRACKCFG_E2E_TERM_AT": "5"}
    )
    job.seen["sigterm_exit"] = first.wait(timeout=JOB_TIMEOUT)
    run_id, status, tags = _only_run(job)
    job.seen["after_sigterm"] = (status, tags.get("trackcfg.preempted"))
    # No restarts: torchrun would only repeat the refusal.
    refused = start_node(
        job,
        nnodes=1,
        nproc=2,
        port=free_port(),
        node="R",
        args=("resume", run_id),
        max_restarts=0,
    )
    job.seen["refused_exit"] = refused.wait(timeout=JOB_TIMEOUT)
    job.seen["after_refusal"] = _only_run(job)[1]
    again = ("run", CONFIG_PATH, "--resume", "auto")
    finish(job, [start_node(job, nnodes=1, nproc=3, port=free_port(), node="C", args=again)])


def alone_then_forced_onto_two(job: Job) -> None:
    """One process, preempted; resumed by 2 ranks with --force-world-size."""
    env = job_env(job, TRACKCFG_E2E_TERM_AT="5")
    with open(job.root / "alone.log", "ab") as log:
        alone = subprocess.run(
            [sys.executable, "-m", "trackcfg", "run", CONFIG_PATH],
            cwd=job.project,
            env=env,
            stdout=log,
            stderr=log,
            timeout=JOB_TIMEOUT,
        )
    job.seen["alone_exit"] = alone.returncode
    run_id = _only_run(job)[0]
    forced = ("resume", run_id, "--force-world-size")
    finish(job, [start_node(job, nnodes=1, nproc=2, port=free_port(), node="F", args=forced)])


CASES: dict[str, tuple[str, Callable[[Job], None]]] = {
    # name: (twin, how to run it)
    "twin3": ("twin3", lambda job: one_node(job, 3)),
    "twin4": ("twin4", lambda job: one_node(job, 4)),
    "faults3": (
        "twin3",
        lambda job: one_node(
            job,
            3,
            {
                "TRACKCFG_E2E_KILL_AT": "3",
                "TRACKCFG_E2E_KILL_RANK": "1",
                "TRACKCFG_E2E_WRITE_ATTEMPT": "1",
                "TRACKCFG_E2E_WRITE_FAILPOINT": "checkpoint-write:3",
            },
        ),
    ),
    "node2x2": ("twin4", two_nodes_one_replaced),
    "sigterm3": ("twin3", preempted_refused_continued),
    "resized": ("twin3", alone_then_forced_onto_two),  # no twin: not bit-identical
}


#: How often each job's run was continued by a restart.
RESUMES = {"twin3": 0, "twin4": 0, "faults3": 2, "node2x2": 1, "sigterm3": 1}


@pytest.fixture(scope="module")
def jobs(
    tmp_path_factory: pytest.TempPathFactory, migrated_store: Path
) -> Iterator[dict[str, Job]]:
    made: dict[str, Job] = {}
    for name in CASES:
        root = tmp_path_factory.mktemp(name)
        make_project(root / "project")
        (root / "project" / CONFIG_PATH).write_text(CONFIG)
        (root / "project" / "cluster_hooks.py").write_text(HOOKS)
        subprocess.run(["git", "add", "."], cwd=root / "project", check=True)
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "c"],
            cwd=root / "project",
            check=True,
        )
        made[name] = Job(name, root, sqlite_uri(root / "store", migrated_store))

    def timed(job: Job) -> None:
        began = time.monotonic()
        CASES[job.name][1](job)
        job.seconds = time.monotonic() - began

    try:
        with ThreadPoolExecutor(len(made)) as pool:
            futures = {name: pool.submit(timed, job) for name, job in made.items()}
            errors = {}
            for name, future in futures.items():
                try:
                    future.result()
                except Exception as error:  # every case is reported by its own test
                    errors[name] = error
        for name, error in errors.items():
            made[name].seconds = -1.0
            (made[name].root / "error.txt").write_text(str(error))
        yield made
    finally:
        for job in made.values():
            for agent in job.agents:
                if agent.poll() is None:
                    kill_node(agent)


def _the_run(job: Job) -> tuple[Any, Any]:
    error = job.root / "error.txt"
    if error.exists():
        pytest.fail(error.read_text())
    return _one_run(job)


def _history(client: object, run: object) -> dict[str, list[tuple[int, float]]]:
    history = {}
    for key in run.data.metrics:  # type: ignore[attr-defined]
        points = client.get_metric_history(run.info.run_id, key)  # type: ignore[attr-defined]
        history[key] = sorted((int(m.step), float(m.value)) for m in points)
    return history


def _final_checkpoint(client: object, run: object, into: Path) -> dict[str, object]:
    path = client.download_artifacts(  # type: ignore[attr-defined]
        run.info.run_id,  # type: ignore[attr-defined]
        f"checkpoints/iter_{MAX_ITERS}.pth",
        str(into),
    )
    return load_checkpoint_file(path)


#: Checkpoint entries that measure time (the log buffer's), not training state.
_TIMINGS = (".log_buffer.val_history.time", ".log_buffer.val_history.data_time")


def _tensors(tree: object, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from _tensors(value, f"{prefix}.{key}")
    elif isinstance(tree, list | tuple):
        for index, value in enumerate(tree):
            yield from _tensors(value, f"{prefix}.{index}")


@pytest.mark.parametrize("name", ["twin3", "twin4", "faults3", "node2x2", "sigterm3"])
def test_one_finished_run_per_job(jobs: dict[str, Job], name: str) -> None:
    job = jobs[name]
    client, run = _the_run(job)
    tags = run.data.tags  # type: ignore[attr-defined]
    assert run.info.status == "FINISHED"  # type: ignore[attr-defined]
    assert tags["trackcfg.job_key"] == f"torchelastic:{name}"
    # Each restart that continued the run: faults3 was restarted twice.
    assert int(tags.get("trackcfg.resume_count", "0")) == RESUMES[name]
    stored = {
        a.path
        for a in client.list_artifacts(run.info.run_id, "checkpoints")  # type: ignore[attr-defined]
    }
    assert f"checkpoints/iter_{MAX_ITERS}.pth" in stored
    history = _history(client, run)
    steps = [step for step, _ in history["train/loss"]]
    assert steps == list(range(1, MAX_ITERS + 1)), "every step exactly once"


@pytest.mark.parametrize("name", ["faults3", "node2x2", "sigterm3"])
def test_bitwise_equal_to_twin(jobs: dict[str, Job], name: str, tmp_path: Path) -> None:
    job, twin = jobs[name], jobs[CASES[name][0]]
    client, run = _the_run(job)
    twin_client, twin_run = _the_run(twin)
    assert _history(client, run) == _history(twin_client, twin_run)
    ours = dict(_tensors(_final_checkpoint(client, run, tmp_path / "ours")))
    theirs = dict(_tensors(_final_checkpoint(twin_client, twin_run, tmp_path / "twin")))
    assert ours.keys() == theirs.keys()
    differ = [
        key
        for key in ours
        if not key.startswith(_TIMINGS) and not torch.equal(ours[key], theirs[key])
    ]
    assert not differ, f"{name}: tensors differ from the twin's: {differ[:5]}"


def test_sigterm_checkpoints_and_exits_to_be_requeued_and_a_resize_is_refused(
    jobs: dict[str, Job],
) -> None:
    job = jobs["sigterm3"]
    _the_run(job)  # the case ran to its end
    logs = _logs(job)
    # Every worker exited with the requeue code; torchrun itself, stopped by the
    # signal it forwarded, exits non-zero (and the job is continued by running again).
    assert job.seen["sigterm_exit"] != 0
    assert logs.count("exit 75 (requeue)") >= 1, logs[-4000:]
    status, preempted = job.seen["after_sigterm"]  # type: ignore[misc]
    assert status == "KILLED" and preempted is not None and "signal=SIGTERM" in preempted
    # 2 ranks cannot continue a 3-rank checkpoint: one line, no traceback, run untouched.
    assert job.seen["refused_exit"] != 0
    assert "saved by a job of 3 rank(s), this job has 2" in logs
    # Tracebacks are torchrun's own (its agent's ChildFailedError), never trackcfg's.
    frames = [line for line in logs.splitlines() if line.startswith('  File "')]
    assert not [f for f in frames if "/trackcfg/" in f], frames
    assert job.seen["after_refusal"] == "KILLED"


def test_a_forced_resize_runs_to_the_end_and_is_recorded(jobs: dict[str, Job]) -> None:
    job = jobs["resized"]
    client, run = _the_run(job)
    assert job.seen["alone_exit"] == 75
    tags = run.data.tags  # type: ignore[attr-defined]
    assert run.info.status == "FINISHED"  # type: ignore[attr-defined]
    assert tags["trackcfg.world_size_change"].startswith("from=1 to=2 checkpoint=checkpoints/iter_")
    assert "no longer bit-identical" in tags["mlflow.note.content"]
    steps = [step for step, _ in _history(client, run)["train/loss"]]
    assert steps == list(range(1, MAX_ITERS + 1)), "every step exactly once"
