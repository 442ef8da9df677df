"""`trackcfg resume` trusts nothing from the store: it never executes a lineage file.

One tracked run is SIGKILLed after its first epoch; its snapshot is then forged
consistently (a lineage ``.py`` file gains code with a side effect, its digest,
the lineage hash, the manifest and the run's tags follow), so that only executing
the file could tell. Resume must rebuild the config from the canonical bytes,
never run that code, and still train the run to its end.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.e2e.conftest import (
    E2E_CONFIG_PATH,
    ITERS_PER_EPOCH,
    make_project,
    run_env,
    sqlite_uri,
    trackcfg,
)
from tests.snapshot_forgery import artifact_snapshot, replace_lineage_file, retag

# One short training (2 epochs of the e2e MLP, killed in the second) and its resume.
pytestmark = pytest.mark.slow


def test_resume_never_executes_a_lineage_file_and_trains_from_the_canonical_config(
    tmp_path: Path, migrated_store: Path
) -> None:
    repo = make_project(tmp_path / "project")
    uri = sqlite_uri(tmp_path / "store", migrated_store)
    env = run_env(uri)
    killed = trackcfg(
        *("run", E2E_CONFIG_PATH, "--cfg-options", "runner.max_epochs=2"),
        env=dict(env, TRACKCFG_E2E_KILL_AT=str(ITERS_PER_EPOCH + 5)),
        cwd=repo,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    run_id = run.info.run_id

    marker = tmp_path / "marker"
    directory = artifact_snapshot(uri, run_id)
    leaf = (directory / "lineage" / E2E_CONFIG_PATH).read_bytes()
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('executed')\n"
    replace_lineage_file(directory, E2E_CONFIG_PATH, leaf + code.encode())
    retag(uri, run_id, directory)

    done = trackcfg("resume", run_id, env=env, cwd=repo, timeout=300)
    assert not marker.exists(), "resume executed a lineage file from the store"
    assert done.returncode == 0, done.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["trackcfg.resume_count"] == "1"
    # It trained the recorded config (max_epochs=2 from the canonical bytes) to the end.
    steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
    assert max(steps) == 2 * ITERS_PER_EPOCH
