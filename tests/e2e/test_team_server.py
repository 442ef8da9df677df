"""Every command on the team stack: PostgreSQL runs, S3 artifacts behind ``mlflow server``, auth.

One run of the e2e config is SIGKILLed mid-epoch, synced, and resumed on "another
machine" (an empty directory, the work dir deleted: only the server is left); a
second, shorter run gives `runs`, `blame` and `diff` two runs to tell apart;
`reproduce` rebuilds the first from its snapshot. Checkpoints and the snapshot
must be in the S3 bucket (read there with boto3), the latest-checkpoint pointer
must name an object whose bytes have the recorded digest, and the resumed run
must end bitwise equal to the uninterrupted reference run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from examples.team_server.teamstack import TeamStack
from tests.e2e.conftest import (
    E2E_CONFIG_PATH,
    ITERS_PER_EPOCH,
    ReferenceRun,
    assert_same_weights,
    bucket_object,
    bucket_objects,
    final_weights,
    metric_history,
    run_id_from,
)
from tests.e2e.conftest import trackcfg as run_cli

# One worker runs every test of the team stack: the stack (PostgreSQL, S3, mlflow
# server) starts once per worker that needs it, and it is the costliest fixture.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("team_stack")]

#: Iteration at which the first run SIGKILLs itself: mid-epoch 3, after two checkpoints.
KILL_AT = 2 * ITERS_PER_EPOCH + 22


def trackcfg(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, env=env, timeout=300)


def ok(done: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert done.returncode == code, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def journal_run_id(work: Path) -> str:
    """The one run journaled in ``work`` (a SIGKILLed run's stdout may be lost)."""
    (found,) = [p.name for p in (work / ".trackcfg" / "journal").iterdir() if p.is_dir()]
    return found


def checkpoint_in_bucket_matches_pointer(stack: TeamStack, run_id: str, tmp: Path) -> str:
    """The pointer tag names an object in S3 whose bytes have the pointer's digest."""
    from trackcfg.checkpoint_file import content_digest

    run = MlflowClient().get_run(run_id)
    tags = run.data.tags
    key = f"{run.info.experiment_id}/{run_id}/artifacts/{tags['trackcfg.latest_checkpoint']}"
    copy = tmp / Path(key).name
    copy.write_bytes(bucket_object(stack, key))
    assert content_digest(copy) == tags["trackcfg.latest_checkpoint_digest"]
    return key


def test_run_kill_sync_resume_elsewhere_runs_blame_diff_reproduce_on_the_team_stack(
    git_repo: Path,
    tmp_path: Path,
    team_stack: TeamStack,
    team_env: dict[str, str],
    reference_run: ReferenceRun,
) -> None:
    began = time.monotonic()
    client = MlflowClient()
    work = git_repo / "work_dirs" / "killed"
    killed = trackcfg(
        "run",
        E2E_CONFIG_PATH,
        "--work-dir",
        str(work),
        cwd=git_repo,
        env=dict(team_env, TRACKCFG_E2E_KILL_AT=str(KILL_AT)),
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run_id = journal_run_id(work)
    assert "2 journal" not in ok(trackcfg("sync", str(work), cwd=git_repo, env=team_env))
    run = client.get_run(run_id)
    # The trainer's agent outlived it and said what happened.
    assert run.info.status == "KILLED"

    # Snapshot and checkpoints went through the server into the bucket, nowhere else.
    prefix = f"{run.info.experiment_id}/{run_id}/artifacts/"
    stored = bucket_objects(team_stack, prefix)
    names = {key[len(prefix) :] for key in stored}
    assert any(n.startswith("trackcfg/") for n in names), names
    assert any(n.startswith("checkpoints/") for n in names), names
    checkpoint_in_bucket_matches_pointer(team_stack, run_id, tmp_path)
    assert not [p for p in team_stack.directory.rglob("*") if p.suffix == ".pth"]

    # Another machine: no work dir, no project files, only the server (and the code:
    # trackcfg and the project's hook module, importable as if installed).
    shutil.rmtree(work)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    paths = [p for p in (os.environ.get("PYTHONPATH", ""), str(git_repo)) if p]
    remote_env = dict(team_env, PYTHONPATH=os.pathsep.join(paths))
    resumed = trackcfg(
        "resume", run_id, "--work-dir", str(elsewhere / "work"), cwd=elsewhere, env=remote_env
    )
    assert run_id_from(ok(resumed)) == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    assert metric_history(team_stack.uri, run_id) == reference_run.history
    assert_same_weights(final_weights(elsewhere / "work"), reference_run.weights)
    checkpoint_in_bucket_matches_pointer(team_stack, run_id, tmp_path)

    # A second, shorter run of the same file: another config hash.
    short = trackcfg(
        "run", E2E_CONFIG_PATH, "--cfg-options", "runner.max_epochs=1", cwd=git_repo, env=team_env
    )
    other = run_id_from(ok(short))
    config_hash = client.get_run(run_id).data.tags["trackcfg.config_hash"]
    by_hash = ok(trackcfg("runs", "--hash", config_hash[:8], cwd=elsewhere, env=team_env))
    assert run_id in by_hash and other not in by_hash
    by_config = ok(trackcfg("runs", "--config", E2E_CONFIG_PATH, cwd=git_repo, env=team_env))
    assert run_id in by_config and other not in by_config

    # Audits read the runs' snapshots from the bucket, with no project files around.
    blame = ok(trackcfg("blame", run_id, "runner.max_epochs", cwd=elsewhere, env=team_env))
    assert f"{E2E_CONFIG_PATH}:" in blame
    diff = ok(trackcfg("diff", run_id, other, cwd=elsewhere, env=team_env), 1)
    assert "runner.max_epochs: 4 -> 1" in diff and "<option>" in diff

    rebuilt = ok(
        trackcfg("reproduce", run_id, "--dir", str(tmp_path / "repro"), cwd=git_repo, env=team_env)
    )
    assert f"config hash:  {config_hash}" in rebuilt
    ui = ok(trackcfg("ui", cwd=elsewhere, env=team_env))
    assert f"the store is an MLflow server already: open {team_stack.uri}" in ui
    print(f"\nteam stack e2e: {time.monotonic() - began:.1f} s after the stack was up")
