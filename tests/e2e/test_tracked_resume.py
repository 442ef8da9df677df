"""SIGKILL a tracked run mid-epoch, `trackcfg resume` it: same weights, same metric history.

Both against the embedded SQLite store and against a real ``mlflow server`` (where
the work dir is deleted before resuming: the tracking store alone must suffice).
The fault hook in the e2e project SIGKILLs the process at a fixed iteration of
the third epoch; everything after that is up to the run's tracking agent, which
outlives the trainer, delivers what it journaled and marks the run KILLED.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.e2e.conftest import (
    E2E_CONFIG_PATH,
    ITERS_PER_EPOCH,
    MlflowServer,
    ReferenceRun,
    assert_same_weights,
    final_weights,
    metric_history,
    run_id_from,
)
from tests.e2e.conftest import trackcfg as run_cli

# The modules using the session's `mlflow_server` run on one xdist worker: each worker
# would otherwise start a server of its own (seconds of CPU, ~1 GB).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mlflow_server")]

#: Iteration (1-based, global) at which the interrupted run SIGKILLs itself: mid-epoch 3.
KILL_AT = 2 * ITERS_PER_EPOCH + 22


def trackcfg(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Training and resume here take longer than the shared helper's default bound.
    return run_cli(*args, cwd=cwd, env=env, timeout=300)


def run_until_killed(repo: Path, env: dict[str, str], work: Path) -> None:
    """Run the e2e config until the fault hook SIGKILLs it."""
    done = trackcfg(
        "run",
        E2E_CONFIG_PATH,
        "--work-dir",
        str(work),
        cwd=repo,
        env=dict(env, TRACKCFG_E2E_KILL_AT=str(KILL_AT)),
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def start_and_kill(repo: Path, env: dict[str, str], work: Path, uri: str) -> str:
    """`run_until_killed` in a fresh store; returns the one run's id."""
    run_until_killed(repo, env, work)
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    # The trainer could not say so; its tracking agent outlived it and did.
    assert runs[0].info.status == "KILLED"
    assert "died without reporting a status" in runs[0].data.tags["trackcfg.error"]
    assert runs[0].info.end_time >= runs[0].info.start_time  # the end the agent set
    return runs[0].info.run_id


def assert_same_as_reference(uri: str, run_id: str, work: Path, reference: ReferenceRun) -> None:
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert metric_history(uri, run_id) == reference.history
    assert_same_weights(final_weights(work), reference.weights)


def test_sigkilled_run_resumed_matches_the_uninterrupted_run(
    git_repo: Path,
    tracking_env: dict[str, str],
    tracking_uri: str,
    reference_run: ReferenceRun,
) -> None:
    work = git_repo / "work_dirs" / "killed"
    run_id = start_and_kill(git_repo, tracking_env, work, tracking_uri)
    synced = trackcfg("sync", "work_dirs", cwd=git_repo, env=tracking_env)
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert "1 journal(s)" in synced.stdout and "0 pending" in synced.stdout
    done = trackcfg("resume", run_id, cwd=git_repo, env=tracking_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert run_id_from(done.stdout) == run_id
    tags = MlflowClient(tracking_uri).get_run(run_id).data.tags
    assert tags["trackcfg.resume_count"] == "1"
    assert tags["trackcfg.resumed_from"].startswith("checkpoints/epoch_")
    assert "trackcfg.error" not in tags  # the kill's error is stale once the resume finished
    assert_same_as_reference(tracking_uri, run_id, work, reference_run)


def test_resume_from_a_real_mlflow_server_alone_matches_the_uninterrupted_run(
    git_repo: Path,
    mlflow_server: MlflowServer,
    server_env: dict[str, str],
    reference_run: ReferenceRun,
    tmp_path: Path,
) -> None:
    uri = mlflow_server.uri
    before = {r.info.run_id for r in _all_runs(uri)}
    work = git_repo / "work_dirs" / "killed"
    run_until_killed(git_repo, server_env, work)
    config_hash = (
        MlflowClient(reference_run.uri)
        .get_run(reference_run.run_id)
        .data.tags["trackcfg.config_hash"]
    )
    client = MlflowClient(uri)
    found = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`trackcfg.config_hash` = '{config_hash}'",
    )
    (run,) = [r for r in found if r.info.run_id not in before]
    shutil.rmtree(work)  # a new machine: only the tracking server is left
    elsewhere = tmp_path / "elsewhere"
    done = trackcfg(
        "resume", run.info.run_id, "--work-dir", str(elsewhere), cwd=git_repo, env=server_env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_as_reference(uri, run.info.run_id, elsewhere, reference_run)


#: Drives `session.resume_run` with a config file and options (`trackcfg run CONFIG
#: --cfg-options ... --resume RUN_ID` semantics), printing errors like the CLI.
RESUME_WITH_CONFIG = """
import sys
from trackcfg.errors import TrackcfgError
from trackcfg.session.runs import resume_run
run_id, config, force, *options = sys.argv[1:]
try:
    resume_run(run_id, config_path=config, options=options, force=force == "1")
except TrackcfgError as error:
    print(error, file=sys.stderr)
    sys.exit(error.exit_code)
"""


def test_resume_with_a_changed_config_is_refused_unless_forced_and_forcing_is_recorded(
    git_repo: Path,
    tracking_env: dict[str, str],
    tracking_uri: str,
    reference_run: ReferenceRun,
) -> None:
    work = git_repo / "work_dirs" / "killed"
    run_id = start_and_kill(git_repo, tracking_env, work, tracking_uri)
    argv = [sys.executable, "-c", RESUME_WITH_CONFIG, run_id, E2E_CONFIG_PATH]
    change = "log_level=DEBUG"
    refused = subprocess.run(
        [*argv, "0", change], cwd=git_repo, env=tracking_env, capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert "log_level: changed 'INFO' -> 'DEBUG'" in refused.stderr
    assert "--force" in refused.stderr
    forced = subprocess.run(
        [*argv, "1", change], cwd=git_repo, env=tracking_env, capture_output=True, text=True
    )
    assert forced.returncode == 0, forced.stderr[-3000:]
    tags = MlflowClient(tracking_uri).get_run(run_id).data.tags
    assert "log_level" in json.loads(tags["trackcfg.forced_changes"])["changes"][0]
    # log_level does not touch numerics: still the uninterrupted run's history and weights.
    assert_same_as_reference(tracking_uri, run_id, work, reference_run)


def _all_runs(uri: str) -> list[object]:
    client = MlflowClient(uri)
    return list(client.search_runs([e.experiment_id for e in client.search_experiments()]))


@pytest.fixture(autouse=True)
def _no_stray_kill_env() -> None:
    assert "TRACKCFG_E2E_KILL_AT" not in os.environ
