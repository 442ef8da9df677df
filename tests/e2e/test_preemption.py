"""SIGTERM a tracked run: it checkpoints the next iteration and exits to be requeued.

Through the real CLI, in a git repo with a SQLite store: ``trackcfg run`` gets
SIGTERM after its first periodic checkpoint (mid-run: the fault hook slows every
iteration a little, which changes no number), saves ``iter_<n>.pth`` at the next
iteration boundary, hands it to the tracking agent for upload, ends the run KILLED
with the tag ``trackcfg.preempted`` and exits with the requeue exit code (75).
``trackcfg resume`` then continues from that checkpoint, not from the last periodic
one, and ends bitwise equal to the uninterrupted run (weights and the metric
history in the store, every step once).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.e2e.conftest import E2E_CONFIG_PATH as CONFIG
from tests.e2e.conftest import (
    ITERS_PER_EPOCH,
    ReferenceRun,
    assert_same_weights,
    final_weights,
    metric_history,
    run_id_from,
    wait_for,
)
from tests.e2e.conftest import trackcfg as run_cli

pytestmark = pytest.mark.slow

#: The default requeue exit code (sysexits' EX_TEMPFAIL).
REQUEUE = 75


def test_sigterm_checkpoints_the_next_iteration_and_resume_matches_the_uninterrupted_run(
    git_repo: Path,
    tracking_env: dict[str, str],
    tracking_uri: str,
    reference_run: ReferenceRun,
) -> None:
    work = git_repo / "work_dirs" / "preempted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackcfg", "run", CONFIG, "--work-dir", str(work)],
        cwd=git_repo,
        env=dict(tracking_env, TRACKCFG_E2E_ITER_DELAY="0.01"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # A periodic checkpoint exists.
        wait_for(lambda: (work / "epoch_1.pth").exists(), proc, timeout=180)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == REQUEUE, stderr[-3000:]
    run_id = run_id_from(stderr)
    assert f"exit {REQUEUE} (requeue)" in stderr
    assert f"trackcfg resume {run_id}" in stderr.splitlines()[-1]

    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.info.end_time >= run.info.start_time
    preempted = dict(part.split("=") for part in run.data.tags["trackcfg.preempted"].split())
    reached = int(preempted["iter"])
    assert preempted["signal"] == "SIGTERM"
    assert ITERS_PER_EPOCH < reached < 4 * ITERS_PER_EPOCH  # after epoch_1.pth, before the end
    assert preempted["epoch"] == str((reached - 1) // ITERS_PER_EPOCH)
    # The preemption checkpoint is stored, and the run's pointer names it.
    name = f"checkpoints/iter_{reached}.pth"
    assert name in [a.path for a in client.list_artifacts(run_id, "checkpoints")]
    assert run.data.tags["trackcfg.latest_checkpoint"] == name

    done = run_cli("resume", run_id, cwd=git_repo, env=tracking_env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["trackcfg.resumed_from"] == name  # not the last periodic one
    assert "trackcfg.preempted" not in run.data.tags  # stale once the resume finished it
    assert metric_history(tracking_uri, run_id) == reference_run.history
    assert_same_weights(final_weights(work), reference_run.weights)
