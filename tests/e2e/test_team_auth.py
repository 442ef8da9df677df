"""MLflow's basic auth on the team stack, and planted secrets that must land nowhere.

Alice (a user the admin creates) runs the e2e config with secrets planted all
around it: her tracking password, AWS keys, a token in the git remote's URL and
secret-looking environment variables. The trainer SIGKILLs itself after the
first checkpoint. Bob, who may read but not write her experiment (the server's
default permission is READ), then tries `trackcfg resume` and `trackcfg sync` on
her run: each ends with one clear line and leaves the run untouched. Alice's
resume finishes it. Finally the whole store (``pg_dump`` of the tracking and the
auth database), every object in the bucket, her work dir and every command's
output are searched for the planted secrets: none is found.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from mlflow import MlflowClient

from examples.team_server.teamstack import TeamStack
from tests.e2e.conftest import (
    E2E_CONFIG_PATH,
    ITERS_PER_EPOCH,
    TEAM_ADMIN,
    bucket_object,
    bucket_objects,
    git,
    run_id_from,
)
from tests.e2e.conftest import trackcfg as run_cli

# One worker runs every test of the team stack: the stack (PostgreSQL, S3, mlflow
# server) starts once per worker that needs it, and it is the costliest fixture.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("team_stack")]

ALICE = ("alice", "al1ce-Tr4cking-pw")
BOB = ("bob", "b0b-Tr4cking-pw")
#: Planted in alice's environment and git remote; none may be stored anywhere.
PLANTED = {
    "AWS_ACCESS_KEY_ID": "AKIAPLANTEDKEY000001",
    "AWS_SECRET_ACCESS_KEY": "planted/aws+secret/key0000000000000000001",
    "AWS_SESSION_TOKEN": "planted-aws-session-token-000001",
    "HF_TOKEN": "hf_plantedHuggingFaceToken000001",
    "WANDB_API_KEY": "planted0wandb0api0key000001",
    "DATABASE_PASSWORD": "planted-db-password-000001",
    "MY_SERVICE_SECRET": "planted-service-secret-000001",
}
GIT_TOKEN = "ghp_plantedGitHubToken0000000000000001"


def needles() -> list[bytes]:
    """Every planted secret, in the forms a leak could take."""
    secrets = [ALICE[1], BOB[1], TEAM_ADMIN[1], GIT_TOKEN, *PLANTED.values()]
    found = [s.encode() for s in secrets]
    found += [quote(s, safe="").encode() for s in secrets]
    found += [base64.b64encode(f"{u}:{p}".encode()) for u, p in (ALICE, BOB, TEAM_ADMIN)]
    return sorted(set(found))


def leaks(data: bytes) -> list[bytes]:
    return [n for n in needles() if n in data]


def create_user(stack: TeamStack, user: tuple[str, str]) -> None:
    response = requests.post(
        f"{stack.uri}/api/2.0/mlflow/users/create",
        json={"username": user[0], "password": user[1]},
        auth=TEAM_ADMIN,
        timeout=60,
    )
    assert response.status_code == 200, response.text


def as_user(env: dict[str, str], user: tuple[str, str]) -> dict[str, str]:
    return dict(env, MLFLOW_TRACKING_USERNAME=user[0], MLFLOW_TRACKING_PASSWORD=user[1])


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1, done.stderr[-3000:]
    return lines[0]


def test_permissions_hold_for_resume_and_sync_and_no_secret_is_stored(
    git_repo: Path, tmp_path: Path, team_stack: TeamStack, team_env: dict[str, str]
) -> None:
    assert team_stack.postgres is not None
    create_user(team_stack, ALICE)
    create_user(team_stack, BOB)
    remote = f"https://x-access-token:{GIT_TOKEN}@github.com/o/r.git"
    git(["remote", "add", "origin", remote], git_repo)
    base = {k: v for k, v in team_env.items() if not k.startswith("MLFLOW_TRACKING_")}
    alice = dict(as_user(base, ALICE), MLFLOW_TRACKING_URI=team_stack.uri, **PLANTED)
    bob = dict(as_user(base, BOB), MLFLOW_TRACKING_URI=team_stack.uri)
    outputs: list[bytes] = []

    def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        done = run_cli(*args, cwd=git_repo, env=env, timeout=300)
        outputs.append((done.stdout + done.stderr).encode())
        return done

    work = git_repo / "work_dirs" / "alice"
    killed = cli(
        "--debug", "run", E2E_CONFIG_PATH, "--experiment", "alice-exp", "--work-dir", str(work),
        "--cfg-options", "runner.max_epochs=2",
        env=dict(alice, TRACKCFG_E2E_KILL_AT=str(ITERS_PER_EPOCH + 10)),
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (run_id,) = [p.name for p in (work / ".trackcfg" / "journal").iterdir()]
    client = MlflowClient()  # the admin
    before = client.get_run(run_id)
    assert before.info.status == "KILLED"

    # Bob may read her run (the default permission) but not continue it.
    assert run_id in cli("runs", "--experiment", "alice-exp", env=bob).stdout
    refused = cli("resume", run_id, "--work-dir", str(tmp_path / "bob-work"), env=bob)
    line = one_line_error(refused)
    assert "403" in line or "permission" in line.lower(), line
    # ... nor deliver metrics into it from a journal he holds (a copy of hers).
    from trackcfg.tracking.agent.journal import MetricJournal, journal_dir

    journal = MetricJournal(journal_dir(tmp_path / "bob-sync", run_id), run_id, team_stack.uri)
    journal.log("bob/injected", 1.0, step=1)
    journal.close()
    synced = cli("sync", str(tmp_path / "bob-sync"), env=bob)
    assert "Traceback" not in synced.stderr, synced.stderr[-3000:]
    assert "1 pending" in synced.stdout or synced.returncode != 0, synced.stdout + synced.stderr
    after = client.get_run(run_id)
    assert after.info.status == "KILLED"
    assert after.data.tags == before.data.tags
    assert "bob/injected" not in after.data.metrics

    # Alice may.
    resumed = cli("--debug", "resume", run_id, "--work-dir", str(work), env=alice)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert run_id_from(resumed.stdout) == run_id
    assert client.get_run(run_id).info.status == "FINISHED"

    # No planted secret anywhere: command output, the work dir, every table of both
    # databases, every object in the bucket (snapshot, checkpoints), run params/tags.
    assert [leaks(o) for o in outputs if leaks(o)] == []
    stored = [p for p in sorted(work.rglob("*")) if p.is_file() and leaks(p.read_bytes())]
    assert stored == []
    for database in ("mlflow", "mlflow_auth"):
        dump = team_stack.postgres.dump(database)
        assert run_id.encode() in dump or database == "mlflow_auth"
        assert leaks(dump) == [], database
    objects = bucket_objects(team_stack)
    prefix = f"{after.info.experiment_id}/{run_id}/"
    assert any(key.startswith(prefix + "artifacts/trackcfg/") for key in objects)
    assert [key for key in objects if leaks(bucket_object(team_stack, key))] == []
    run = client.get_run(run_id)
    assert run.data.tags.get("mlflow.source.git.repoURL", "").endswith("github.com/o/r.git")
    assert os.environ.get("AWS_SECRET_ACCESS_KEY") != PLANTED["AWS_SECRET_ACCESS_KEY"]
