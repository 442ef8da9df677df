"""Many users at once on the team stack: concurrent runs, resumes and queries.

Eight short runs start together (three configs: four, three and one runs sharing
a config hash), beside two longer ones that SIGKILL themselves after their first
checkpoint and are resumed at once, while ``trackcfg runs --hash`` is asked in
rounds a few seconds apart. Every run must end FINISHED with every metric step
exactly once, and runs of one config hash (deterministic training) with the same
metric history. Delivery lag under this load is measured in
``tests/benchmarks/bench_team_server.py``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient

from examples.team_server.teamstack import TeamStack
from tests.e2e.conftest import E2E_CONFIG_PATH, ITERS_PER_EPOCH, metric_history
from tests.e2e.conftest import trackcfg as run_cli

# One worker runs every test of the team stack: the stack (PostgreSQL, S3, mlflow
# server) starts once per worker that needs it, and it is the costliest fixture.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("team_stack")]

#: Options of the eight short runs: three config hashes.
SHORT = [["runner.max_epochs=1"]] * 4 + [["runner.max_epochs=1", "optimizer.lr=0.02"]] * 3
SHORT += [["runner.max_epochs=1", "optimizer.lr=0.03"]]
#: The two that are killed after their first checkpoint and resumed.
KILLED = ["runner.max_epochs=2"]
KILL_AT = ITERS_PER_EPOCH + 10
#: Rounds of `runs --hash` / `runs --config` queries during the load, and the pause between.
QUERY_ROUNDS = 3
QUERY_PAUSE = 5.0


def start(repo: Path, env: dict[str, str], name: str, options: list[str]) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "trackcfg", "run", E2E_CONFIG_PATH]
    argv += ["--work-dir", str(repo / "work_dirs" / name), "--cfg-options", *options]
    # Output to a file: ten processes' pipes that nobody drains would block them.
    with (repo.parent / f"{name}.err").open("w") as err:
        return subprocess.Popen(
            argv, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True
        )


def finish(repo: Path, name: str, proc: subprocess.Popen[str], expected: int) -> None:
    proc.wait(timeout=900)
    assert proc.returncode == expected, (repo.parent / f"{name}.err").read_text()[-3000:]


def resume(repo: Path, env: dict[str, str], name: str, args: list[str]) -> subprocess.Popen[str]:
    with (repo.parent / f"{name}.err").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "trackcfg", *args],
            cwd=repo,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )


def journal_run(work: Path) -> str:
    (run_id,) = [p.name for p in (work / ".trackcfg" / "journal").iterdir()]
    return run_id


def test_eight_runs_two_resumes_and_queries_at_once_lose_and_duplicate_nothing(
    git_repo: Path, team_stack: TeamStack, team_env: dict[str, str]
) -> None:
    kill_env = dict(team_env, TRACKCFG_E2E_KILL_AT=str(KILL_AT))
    doomed = {f"k{i}": start(git_repo, kill_env, f"k{i}", KILLED) for i in range(2)}
    short = {f"s{i}": start(git_repo, team_env, f"s{i}", opts) for i, opts in enumerate(SHORT)}
    queries: list[subprocess.CompletedProcess[str]] = []
    done = threading.Event()

    def ask() -> None:  # the team's daily question, while all of this runs
        # Three rounds, a few seconds apart: each query is a process importing MLflow,
        # and asking without pause would starve the trainings it asks about.
        for _ in range(QUERY_ROUNDS):
            for args in (["--hash", "0"], ["--config", E2E_CONFIG_PATH]):
                # A starved machine takes minutes to import MLflow with ten trainings.
                queries.append(run_cli("runs", *args, env=team_env, cwd=git_repo, timeout=900))
            if done.wait(QUERY_PAUSE):
                return

    asker = threading.Thread(target=ask)
    asker.start()
    resumes: dict[str, subprocess.Popen[str]] = {}
    try:
        for name, proc in doomed.items():
            finish(git_repo, name, proc, -signal.SIGKILL)
            work = git_repo / "work_dirs" / name
            argv = ["resume", journal_run(work), "--work-dir", str(work)]
            resumes[name] = resume(git_repo, team_env, f"{name}-resume", argv)
        for name, proc in short.items():
            finish(git_repo, name, proc, 0)
        for name, proc in resumes.items():
            finish(git_repo, f"{name}-resume", proc, 0)
    finally:
        done.set()
        asker.join(timeout=900)
        for proc in [*doomed.values(), *short.values(), *resumes.values()]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert queries and all(q.returncode == 0 for q in queries), [q.stderr for q in queries]
    client = MlflowClient()
    by_hash: dict[str, list[dict[str, list[tuple[int, float]]]]] = {}
    for name in [*short, *resumes]:
        run_id = journal_run(git_repo / "work_dirs" / name)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED", name
        history = metric_history(team_stack.uri, run_id)
        for key, points in history.items():
            steps = Counter(step for step, _ in points)
            assert max(steps.values()) == 1, f"{name}: {key} has a step twice"
        assert len(history["train/loss"]) == 9 * (2 if name in resumes else 1), name
        by_hash.setdefault(run.data.tags["trackcfg.config_hash"], []).append(history)
    assert sorted(len(group) for group in by_hash.values()) == [1, 2, 3, 4]
    for group in by_hash.values():
        assert all(h == group[0] for h in group)  # deterministic: same config, same history
