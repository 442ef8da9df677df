"""Nothing lost, nothing forged: a full disk, a work dir shared by two runs.

Each test runs the real CLI on the e2e project for one to three short epochs:

- the journal's disk is full for 1.5 s mid-run, or from late in the run until it
  ends (a small tmpfs mounted on the work dir's journal directory; skipped where
  mounting is not permitted): every metric still reaches the store, and the run
  ends FINISHED without a traceback;
- two runs share one work dir while the first one's agent is stopped (SIGSTOP):
  each run's stored checkpoint is the one its own digest names.

(A SIGKILLed agent's checkpoints, uploaded by ``trackcfg sync``, are checked in
test_tracked_run.py's dead-agent test.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.e2e.conftest import (
    E2E_CONFIG_PATH,
    ITERS_PER_EPOCH,
    agent_pid,
    metric_history,
    run_env,
    run_id_from,
    sqlite_uri,
    wait_for,
)
from tests.e2e.conftest import trackcfg as run_cli
from tests.small_disk import small_disk
from trackcfg.checkpoint_file import content_digest

pytestmark = pytest.mark.slow

#: Seconds slept per training iteration: long enough to act while the run trains.
ITER_DELAY = 0.03
LOG_INTERVAL = 5  # the e2e config's
#: The disk-full tests log every iteration: a tmpfs lets a file fill the rest of its
#: last page even when the disk is full, and the journal must outgrow that slack.
EVERY_ITER = "log_config.interval=1"


def start(
    repo: Path, env: dict[str, str], work: Path, epochs: int, *options: str
) -> subprocess.Popen[str]:
    """``trackcfg run`` of the e2e config in the background; stderr goes to a file."""
    work.parent.mkdir(parents=True, exist_ok=True)
    stderr = open(work.parent / f"{work.name}.stderr", "w")  # noqa: SIM115 (the child's)
    argv = [sys.executable, "-m", "trackcfg", "run", E2E_CONFIG_PATH, "--work-dir", str(work)]
    argv += ["--cfg-options", f"runner.max_epochs={epochs}", *options]
    proc = subprocess.Popen(
        argv,
        cwd=repo,
        env=dict(env, TRACKCFG_E2E_ITER_DELAY=str(ITER_DELAY)),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    stderr.close()
    return proc


def stderr_of(work: Path) -> str:
    return (work.parent / f"{work.name}.stderr").read_text()


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> str:
    """Wait for the run; returns its stdout (the run is killed if it overstays)."""
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return stdout


def logged_steps(work: Path) -> list[int]:
    """Steps of ``train/loss`` in the work dir's journal (complete lines only)."""
    steps = []
    for path in (work / ".trackcfg" / "journal").glob("*/metrics.jsonl"):
        data = path.read_bytes()
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            record = json.loads(line)
            if record["k"] == "train/loss":
                steps.append(record["p"])
    return steps


def train_steps(epochs: int, interval: int = LOG_INTERVAL) -> list[int]:
    return list(range(interval, epochs * ITERS_PER_EPOCH + 1, interval))


def stored_digest(uri: str, run_id: str, artifact: str, into: Path) -> str:
    local = MlflowClient(uri).download_artifacts(run_id, artifact, str(into))
    return content_digest(local)


# -- a full disk ------------------------------------------------------------------------------


def test_a_journal_disk_full_for_1_5_s_loses_no_metric(
    git_repo: Path, tracking_uri: str, tracking_env: dict[str, str]
) -> None:
    work = git_repo / "work_dirs" / "full"
    with small_disk(work / ".trackcfg" / "journal") as disk:
        proc = start(git_repo, tracking_env, work, 2, EVERY_ITER)
        wait_for(lambda: len(logged_steps(work)) >= 5, proc)
        disk.fill()
        time.sleep(1.5)
        disk.free()
        stdout = finish(proc)
        journal = next((work / ".trackcfg" / "journal").glob("*/metrics.jsonl")).read_bytes()
    assert proc.returncode == 0, stderr_of(work)[-3000:]
    run_id = run_id_from(stdout)
    history = metric_history(tracking_uri, run_id)
    assert [step for step, _ in history["train/loss"]] == train_steps(2, 1)
    records = [json.loads(line) for line in journal.splitlines()]
    assert [r["s"] for r in records] == list(range(1, len(records) + 1))
    assert sum(len(values) for values in history.values()) == len(records)
    assert MlflowClient(tracking_uri).get_run(run_id).info.status == "FINISHED"
    assert "cannot write the metric journal" in stderr_of(work)  # it was full, and said so


def test_a_journal_disk_still_full_at_the_end_hands_the_metrics_to_the_agent(
    git_repo: Path, tracking_uri: str, tracking_env: dict[str, str]
) -> None:
    work = git_repo / "work_dirs" / "full"
    with small_disk(work / ".trackcfg" / "journal") as disk:
        proc = start(git_repo, tracking_env, work, 1, EVERY_ITER)
        wait_for(lambda: len(logged_steps(work)) >= 10, proc)
        disk.fill()  # and full it stays until the run has ended
        stdout = finish(proc)
    stderr = stderr_of(work)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "handing them to the tracking agent" in stderr
    run_id = run_id_from(stdout)
    history = metric_history(tracking_uri, run_id)
    assert [step for step, _ in history["train/loss"]] == train_steps(1, 1)
    assert len(history["val/loss"]) == 1
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "trackcfg.error" not in run.data.tags


# -- checkpoints ------------------------------------------------------------------------------


def test_runs_sharing_a_work_dir_each_store_their_own_checkpoint(
    git_repo: Path, tmp_path: Path, migrated_store: Path
) -> None:
    work = git_repo / "work_dirs" / "shared"
    uris = [sqlite_uri(tmp_path / f"store-{name}", migrated_store) for name in "ab"]
    first = start(git_repo, run_env(uris[0]), work, 1)
    wait_for(lambda: "run id:" in stderr_of(work), first)
    agent = agent_pid(first.pid)
    assert agent is not None, "no tracking agent below the first run"
    os.kill(agent, signal.SIGSTOP)  # stalled: its upload of epoch_1.pth waits
    try:
        wait_for(lambda: "Epoch(val)" in stderr_of(work), first)
        time.sleep(1.0)  # the checkpoint is written and handed to the (stopped) agent
        second = run_cli(
            "run",
            E2E_CONFIG_PATH,
            "--work-dir",
            str(work),
            "--cfg-options",
            "runner.max_epochs=1",
            "seed=1",
            cwd=git_repo,
            env=run_env(uris[1]),
            timeout=300,
        )
        assert second.returncode == 0, second.stderr[-3000:]
    finally:
        os.kill(agent, signal.SIGCONT)
    stdout = finish(first)
    assert first.returncode == 0, stderr_of(work)[-3000:]
    digests = []
    for uri, run_id in zip(uris, [run_id_from(stdout), run_id_from(second.stdout)], strict=True):
        tags = MlflowClient(uri).get_run(run_id).data.tags
        assert tags["trackcfg.latest_checkpoint"] == "checkpoints/epoch_1.pth"
        stored = stored_digest(uri, run_id, "checkpoints/epoch_1.pth", tmp_path / run_id)
        assert stored == tags["trackcfg.latest_checkpoint_digest"]
        digests.append(stored)
    assert digests[0] != digests[1]
