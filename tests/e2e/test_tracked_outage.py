"""A tracking server that goes away mid-run: training never stalls, every metric arrives once.

The test stops the session's real ``mlflow server`` while a (slowed-down) run is
training and starts it again later. Throughout, the run keeps logging at its
normal pace (read from the journal's per-record timestamps); at the end the run
is FINISHED and its metric history equals the uninterrupted reference run's.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.e2e.conftest import (
    E2E_CONFIG_PATH,
    MlflowServer,
    ReferenceRun,
    metric_history,
    run_id_from,
    wait_for,
)

# The modules using the session's `mlflow_server` run on one xdist worker: each worker
# would otherwise start a server of its own (seconds of CPU, ~1 GB).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mlflow_server")]

#: Seconds slept per training iteration, so the run outlasts the outage.
ITER_DELAY = 0.04


def journal_records(work: Path) -> list[dict[str, object]]:
    """Every complete record in the run's journal (there is one run in ``work``)."""
    records: list[dict[str, object]] = []
    for path in (work / ".trackcfg" / "journal").glob("*/metrics.jsonl"):
        data = path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        records.extend(json.loads(line) for line in complete.splitlines())
    return records


def delivered_any(work: Path) -> bool:
    return any(p.stat().st_size for p in (work / ".trackcfg" / "journal").glob("*/delivered"))


def test_server_outage_mid_run_loses_nothing_and_never_stalls_training(
    git_repo: Path,
    mlflow_server: MlflowServer,
    server_env: dict[str, str],
    reference_run: ReferenceRun,
) -> None:
    work = git_repo / "work_dirs" / "outage"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackcfg", "run", E2E_CONFIG_PATH, "--work-dir", str(work)],
        cwd=git_repo,
        env=dict(server_env, TRACKCFG_E2E_ITER_DELAY=str(ITER_DELAY)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: delivered_any(work), proc)
        mlflow_server.stop()
        down_at = time.time() * 1000
        logged_before = len(journal_records(work))
        # Training goes on while the store is away: the journal keeps growing.
        wait_for(lambda: len(journal_records(work)) >= logged_before + 12, proc, timeout=60)
        mlflow_server.start()
        up_at = time.time() * 1000
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        mlflow_server.start()
    assert proc.returncode == 0, stderr[-3000:]
    run_id = run_id_from(stdout)

    steps = sorted({(r["t"], r["p"]) for r in journal_records(work) if r["k"] == "train/loss"})
    during = [t for t, _ in steps if down_at <= t <= up_at]
    assert len(during) >= 2  # logged while the server was down
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(steps)]
    # Normal pace: 5 iterations x 40 ms between logs; a stall would be seconds.
    assert max(gaps) < 2500

    assert MlflowClient(mlflow_server.uri).get_run(run_id).info.status == "FINISHED"
    assert metric_history(mlflow_server.uri, run_id) == reference_run.history
