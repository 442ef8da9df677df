"""cluster: the job key, continuation by it, and rank 0's handoff over a real gloo group."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from trackcfg.errors import DistributedError
from trackcfg.runner.launcher import (
    detect_launcher,
    first_slurm_host,
    launch_info,
    resolve_backend,
)
from trackcfg.session import catalog, cluster
from trackcfg.session.cluster import Continuation, JobIdentity, continuation, job_identity

REPO_ROOT = Path(__file__).resolve().parents[3]
HASH = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, JobIdentity(None, 0)),
        ({"TORCHELASTIC_RUN_ID": "none", "TORCHELASTIC_RESTART_COUNT": "1"}, JobIdentity(None, 1)),
        ({"TORCHELASTIC_RUN_ID": "j7"}, JobIdentity("torchelastic:j7", 0)),
        (
            {"SLURM_JOB_ID": "99", "SLURM_RESTART_COUNT": "2", "TORCHELASTIC_RUN_ID": "x"},
            JobIdentity("slurm:99", 2),
        ),
    ],
)
def test_the_job_key_comes_from_the_launcher(env: dict[str, str], expected: JobIdentity) -> None:
    assert job_identity(env) == expected


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    uri = "sqlite:///" + (tmp_path / "mlflow.db").as_posix()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(uri)


def test_a_job_continues_only_its_own_unfinished_run(store: MlflowClient) -> None:
    def make(job: str | None, status: str) -> str:
        tags = {"trackcfg.config_hash": HASH, **({catalog.TAG_JOB_KEY: job} if job else {})}
        run = store.create_run("0", tags=tags)
        store.set_terminated(run.info.run_id, status)
        return str(run.info.run_id)

    ours = make("torchelastic:a", "KILLED")
    make("torchelastic:a", "FINISHED")  # newer, but done
    other = make("torchelastic:b", "FAILED")  # the newest unfinished run, another job's
    assert catalog.find_resumable(HASH, job_key="torchelastic:a") == ours
    assert catalog.find_resumable(HASH, job_key="torchelastic:c") is None  # start fresh
    assert catalog.find_resumable(HASH) == other  # --resume auto: by hash alone


def test_only_a_restarted_job_continues_its_run(
    store: MlflowClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.py"
    config.write_text("seed = 1\n")
    from trackcfg.session.config_keys import load_config

    config_hash = load_config(config, import_custom_modules=False).hash
    run = store.create_run(
        "0", tags={"trackcfg.config_hash": config_hash, catalog.TAG_JOB_KEY: "slurm:7"}
    )
    store.set_terminated(run.info.run_id, "KILLED")
    for name in ("TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    # A first start in the same allocation: a new run.
    assert continuation(str(config), (), None, None) == Continuation(None, "")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # requeued
    assert continuation(str(config), (), None, None).run_id == run.info.run_id
    monkeypatch.setenv("SLURM_JOB_ID", "8")  # another job restarted: nothing of its own
    assert continuation(str(config), (), None, None) == Continuation(
        None, "job slurm:8 (restart 1) has no run: starting one"
    )


def test_a_restart_waits_for_the_lease_of_a_host_that_is_gone(
    store: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trackcfg.errors import RunLeaseError
    from trackcfg.tracking.agent.lease import TAG_LEASE, Lease, read_lease

    run_id = store.create_run("0").info.run_id
    gone = Lease("t0", "a-host-that-is-gone", (4242,), int(time.time() * 1000), ttl=2.0)
    store.set_tag(run_id, TAG_LEASE, gone.to_tag())
    with pytest.raises(RunLeaseError):
        cluster.acquire_lease_waiting(store, run_id, wait=0.0)
    monkeypatch.setattr(cluster, "LEASE_RETRY", 0.2)
    began = time.monotonic()
    ours = cluster.acquire_lease_waiting(store, run_id, wait=30.0)
    assert time.monotonic() - began < 20
    assert read_lease(store, run_id) == ours


def test_launchers_and_backends_are_checked() -> None:
    assert detect_launcher({"WORLD_SIZE": "2"}) == "pytorch"
    with pytest.raises(DistributedError, match="unknown launcher"):
        detect_launcher({"TRACKCFG_LAUNCHER": "mpirun"})
    with pytest.raises(DistributedError, match="SLURM_NODELIST is not set"):
        launch_info("slurm", {"SLURM_PROCID": "0", "SLURM_NTASKS": "2"})
    assert first_slurm_host("a-b1[3,5-9]") == "a-b13"
    with pytest.raises(DistributedError, match="needs CUDA"):
        resolve_backend("nccl", cuda=False)
    with pytest.raises(DistributedError, match="unknown backend"):
        resolve_backend("ucc", cuda=False)


#: Each rank: join the job (torchrun's variables), rank 0 hands over a config and a
#: checkpoint (or fails first); the other ranks print what they received.
RANK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from trackcfg.config.config import Config
    from trackcfg.runner.checkpoint import write_checkpoint_file
    from trackcfg.session import cluster
    from trackcfg.runner.dist import get_dist_info

    work = Path(sys.argv[1])
    assert cluster.join_job() == 2
    rank = get_dist_info()[0]
    if rank == 0:
        if os.environ.get("FAIL"):
            cluster.send_failure(ValueError("no such run"))
            sys.exit(0)
        cfg = Config({"seed": 3, "dist_params": {"backend": "gloo"}}, filename="x.py")
        path = work / "iter_4.pth"
        write_checkpoint_file({"w": [1, 2, 3]}, path, epoch=0, iter=4)
        handoff = cluster.Handoff(cfg.canonical_bytes(), cfg.hash, "x.py", str(work),
                                  run_id="r1", checkpoint=path.name)
        cluster.send_handoff(handoff, path)
    else:
        try:
            handoff = cluster.receive_handoff()
        except Exception as error:
            print(f"{type(error).__name__}: {error}")
            sys.exit(0)
        received = cluster.receive_checkpoint(handoff, work / "inbox")
        cfg = cluster.config_from_handoff(handoff, received)
        cluster.check_backend(cfg)
        print(handoff.run_id, cfg.to_dict()["seed"], cfg.to_dict()["resume_from"],
              received.read_bytes() == (work / "iter_4.pth").read_bytes())
    """
)


def _two_ranks(tmp_path: Path, *, slurm: bool = False, **extra: str) -> str:
    """Run RANK_SCRIPT as 2 ranks, as torchrun or srun (no torchrun) would start them."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    for rank in (0, 1):
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLURM_", "TORCHELASTIC_", "TRACKCFG_"))
            and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR")
        }
        env.update(PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1", MASTER_PORT=str(port))
        if slurm:
            env.update(
                TRACKCFG_LAUNCHER="slurm",
                SLURM_PROCID=str(rank),
                SLURM_LOCALID=str(rank),
                SLURM_NTASKS="2",
                SLURM_NODELIST="127.0.0.1",
            )
        else:
            env.update(
                RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1"
            )
        env.update(extra)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", RANK_SCRIPT, str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out
    return outputs[1].strip().splitlines()[-1]


def test_rank_0_hands_config_and_checkpoint_bytes_to_the_other_ranks(tmp_path: Path) -> None:
    assert _two_ranks(tmp_path) == f"r1 3 {tmp_path / 'inbox' / 'iter_4.pth'} True"


def test_a_failure_of_rank_0_before_the_handoff_fails_the_other_ranks(tmp_path: Path) -> None:
    # Started as srun starts tasks without torchrun: the ranks come from SLURM_*.
    assert _two_ranks(tmp_path, slurm=True, FAIL="1") == (
        "DistributedError: rank 0 failed: ValueError: no such run"
    )
