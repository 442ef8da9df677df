"""Faults on the team stack mid-run: PostgreSQL restarts, S3 goes away, mlflow server restarts.

One slowed-down run of the e2e config on the session's team stack meets, in turn:

1. a PostgreSQL restart (fast shutdown, start) after its first delivery;
2. the S3 endpoint gone (connections refused and reset, `TcpGate` closed) from just
   before its first checkpoint until the tracking agent reported a failed upload;
3. an ``mlflow server`` restart, during which the trainer SIGKILLs itself.

Throughout, a watcher reads the latest-checkpoint pointer and checks that each
value it takes names an object in the bucket whose bytes have the recorded digest.
Training never waits (the journal's timestamps keep their pace), and after a
`trackcfg resume` the run is FINISHED with the uninterrupted reference run's metric
history (no step lost or twice) and bitwise its final weights.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from examples.team_server.teamstack import BUCKET, TeamStack
from tests.e2e.conftest import (
    E2E_CONFIG_PATH,
    ITERS_PER_EPOCH,
    ReferenceRun,
    assert_same_weights,
    final_weights,
    metric_history,
    run_id_from,
    wait_for,
)

# One worker runs every test of the team stack: the stack (PostgreSQL, S3, mlflow
# server) starts once per worker that needs it, and it is the costliest fixture.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("team_stack")]

ITER_DELAY = 0.05
#: The trainer SIGKILLs itself here: mid-epoch 4, while the server restarts.
KILL_AT = 3 * ITERS_PER_EPOCH + 20
#: Logging every 5 iterations x 50 ms: a training stall would show as seconds.
MAX_GAP_MS = 2500


def journal_records(work: Path) -> list[dict[str, int | float | str]]:
    records: list[dict[str, int | float | str]] = []
    for path in (work / ".trackcfg" / "journal").glob("*/metrics.jsonl"):
        data = path.read_bytes()
        records.extend(json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines())
    return records


def last_step(work: Path) -> int:
    return max((int(r["p"]) for r in journal_records(work)), default=0)


def delivered_any(work: Path) -> bool:
    return any(p.stat().st_size for p in (work / ".trackcfg" / "journal").glob("*/delivered"))


class PointerWatch(threading.Thread):
    """Reads the run's latest-checkpoint pointer while the run goes on; checks every value."""

    def __init__(self, stack: TeamStack, work: Path, scratch: Path) -> None:
        super().__init__(daemon=True)
        self.stack, self.work, self.scratch = stack, work, scratch
        #: pointer -> (complete in S3 with its digest, when first seen, ms since the epoch)
        self.seen: dict[str, tuple[bool, float]] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        from trackcfg.checkpoint_file import content_digest

        assert self.stack.s3 is not None
        s3 = self.stack.s3.client()  # moto itself, not through the gate
        client = MlflowClient()
        while not self.stopping.wait(0.3):
            runs = [p.name for p in (self.work / ".trackcfg" / "journal").glob("*")]
            if len(runs) != 1:
                continue
            with contextlib.suppress(Exception):  # the server may be down right now
                run = client.get_run(runs[0])
                pointer = run.data.tags.get("trackcfg.latest_checkpoint")
                digest = run.data.tags.get("trackcfg.latest_checkpoint_digest")
                if pointer is None or pointer in self.seen:
                    continue
                key = f"{run.info.experiment_id}/{runs[0]}/artifacts/{pointer}"
                copy = self.scratch / Path(pointer).name
                copy.write_bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
                self.seen[pointer] = (content_digest(copy) == digest, time.time() * 1000)


def test_database_restart_object_store_outage_and_server_restart_lose_nothing(
    git_repo: Path,
    tmp_path: Path,
    team_stack: TeamStack,
    team_env: dict[str, str],
    reference_run: ReferenceRun,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert team_stack.postgres and team_stack.gate and team_stack.server
    # The watcher reads on while the server is down: no minutes of client retries.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    work = git_repo / "work_dirs" / "faults"
    err_path = tmp_path / "stderr"
    env = dict(team_env, TRACKCFG_E2E_ITER_DELAY=str(ITER_DELAY), TRACKCFG_E2E_KILL_AT=str(KILL_AT))
    watch = PointerWatch(team_stack, work, tmp_path)
    restarting: threading.Thread | None = None
    windows: dict[str, tuple[float, float]] = {}
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trackcfg", "run", E2E_CONFIG_PATH, "--work-dir", str(work)],
            cwd=git_repo,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    try:
        watch.start()
        # 1. The database restarts under the server.
        wait_for(lambda: delivered_any(work), proc)
        down = time.time() * 1000
        team_stack.postgres.stop()
        time.sleep(1.0)
        team_stack.postgres.start()
        windows["postgres"] = (down, time.time() * 1000)
        # 2. The object store goes away just before the first checkpoint and comes
        # back 3 s after the checkpoint was written: its upload meets the outage.
        wait_for(lambda: last_step(work) >= ITERS_PER_EPOCH - 10, proc)
        down = time.time() * 1000
        team_stack.gate.close()
        wait_for(lambda: (work / "epoch_1.pth").exists(), proc)
        time.sleep(3.0)
        team_stack.gate.open()
        windows["s3"] = (down, time.time() * 1000)
        # 3. The tracking server restarts (tens of seconds on a loaded machine); the
        # trainer goes on, and kills itself meanwhile.
        wait_for(lambda: last_step(work) >= 2 * ITERS_PER_EPOCH + 10, proc)
        team_stack.server.stop()
        restarting = threading.Thread(target=team_stack.server.start)
        restarting.start()
        assert proc.wait(timeout=300) == -signal.SIGKILL, err_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if restarting is not None:
            restarting.join()
    run_id = next(p.name for p in (work / ".trackcfg" / "journal").iterdir() if p.is_dir())

    # Training never waited for the store: log records kept their pace throughout.
    stamps = sorted({int(r["t"]) for r in journal_records(work) if r["k"] == "train/loss"})
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) < MAX_GAP_MS, (gaps, windows)
    for name, (start, end) in windows.items():
        assert any(start <= t <= end for t in stamps), f"nothing logged during the {name} fault"

    resumed = subprocess.run(
        [sys.executable, "-m", "trackcfg", "resume", run_id, "--work-dir", str(work)],
        cwd=git_repo,
        env=team_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    watch.stopping.set()
    watch.join(timeout=10)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert run_id_from(resumed.stdout) == run_id
    assert MlflowClient().get_run(run_id).info.status == "FINISHED"
    assert metric_history(team_stack.uri, run_id) == reference_run.history
    assert_same_weights(final_weights(work), reference_run.weights)
    # The pointer moved several times, and only ever to a checkpoint complete in S3;
    # none before S3 was back (the first checkpoint was written while it was away).
    assert len(watch.seen) >= 3 and all(ok for ok, _ in watch.seen.values()), watch.seen
    assert min(t for _, t in watch.seen.values()) >= windows["s3"][1], (watch.seen, windows)
    print(f"\nfault windows (ms since epoch): {windows}; pointers seen: {sorted(watch.seen)}")
