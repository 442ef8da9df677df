"""Resume's guards through the real CLI: one trainer per run, damaged stored checkpoints.

Each test SIGKILLs the e2e run in the third epoch (the store then holds
``epoch_1.pth`` and ``epoch_2.pth``, the pointer naming ``epoch_2.pth``) and
compares the resumed run with the uninterrupted reference, bit for bit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from mlflow import MlflowClient

from tests.e2e.conftest import ReferenceRun, run_id_from
from tests.e2e.test_tracked_resume import assert_same_as_reference, start_and_kill, trackcfg

pytestmark = pytest.mark.slow


def stored_checkpoint(uri: str, run_id: str, name: str) -> Path:
    """The file behind a run's ``checkpoints/<name>`` artifact in a local store."""
    artifact_uri = MlflowClient(uri).get_run(run_id).info.artifact_uri
    parts = urlsplit(artifact_uri)
    root = Path(unquote(parts.path)) if parts.scheme in ("file", "") else None
    assert root is not None, artifact_uri
    path = root / "checkpoints" / name
    assert path.is_file(), sorted(p.name for p in (root / "checkpoints").iterdir())
    return path


def test_two_simultaneous_resumes_of_one_run_train_it_once(
    git_repo: Path,
    tracking_env: dict[str, str],
    tracking_uri: str,
    reference_run: ReferenceRun,
) -> None:
    work = git_repo / "work_dirs" / "killed"
    run_id = start_and_kill(git_repo, tracking_env, work, tracking_uri)
    argv = [sys.executable, "-m", "trackcfg", "resume", run_id, "--work-dir", str(work)]
    procs = [
        subprocess.Popen(
            argv, cwd=git_repo, env=tracking_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        outcomes.append((proc.returncode, out.decode(), err.decode()))
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 2], [(c, e[-2000:]) for c, _, e in outcomes]
    refused = next(err for code, _, err in outcomes if code == 2)
    assert "one trainer at a time" in refused and "Traceback" not in refused
    winner = next(out for code, out, _ in outcomes if code == 0)
    assert run_id_from(winner) == run_id
    tags = MlflowClient(tracking_uri).get_run(run_id).data.tags
    assert tags["trackcfg.resume_count"] == "1"
    assert "trackcfg.lease" not in tags  # released at the end
    assert_same_as_reference(tracking_uri, run_id, work, reference_run)


def test_a_damaged_newest_stored_checkpoint_falls_back_to_the_newest_that_verifies(
    git_repo: Path,
    tracking_env: dict[str, str],
    tracking_uri: str,
    reference_run: ReferenceRun,
) -> None:
    work = git_repo / "work_dirs" / "killed"
    run_id = start_and_kill(git_repo, tracking_env, work, tracking_uri)
    newest = stored_checkpoint(tracking_uri, run_id, "epoch_2.pth")
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    newest.write_bytes(bytes(data))

    chosen = trackcfg(
        "resume", run_id, "--checkpoint", "epoch_2.pth", cwd=git_repo, env=tracking_env
    )
    assert chosen.returncode == 2, chosen.stderr[-2000:]
    assert "checkpoints/epoch_2.pth" in chosen.stderr and "Traceback" not in chosen.stderr
    escaped = trackcfg(
        "resume", run_id, "--checkpoint", "../snapshot/x.pth", cwd=git_repo, env=tracking_env
    )
    assert escaped.returncode == 2 and "not the name of a stored checkpoint" in escaped.stderr

    done = trackcfg("resume", run_id, cwd=git_repo, env=tracking_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipping stored checkpoint checkpoints/epoch_2.pth" in done.stderr
    assert "resumes from the older checkpoint checkpoints/epoch_1.pth" in done.stderr
    tags = MlflowClient(tracking_uri).get_run(run_id).data.tags
    assert tags["trackcfg.resumed_from"] == "checkpoints/epoch_1.pth"
    assert tags["trackcfg.resume_count"] == "1"  # the refused attempts changed nothing
    assert_same_as_reference(tracking_uri, run_id, work, reference_run)
