"""Every example under examples/ runs and shows what it promises (few iterations each)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.e2e.conftest import git, run_id_from

REPO_ROOT = Path(__file__).resolve().parents[2]
Run = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.slow


def test_custom_model_registers_through_custom_imports(
    git_repo: Path, tracking_env: dict[str, str], tracking_uri: str, run_trackcfg: Run
) -> None:
    shutil.copytree(REPO_ROOT / "examples/custom_model", git_repo / "examples/custom_model")
    env = dict(tracking_env, PYTHONPATH="examples/custom_model")
    config = "examples/custom_model/configs/iris_mlp.py"
    done = run_trackcfg(
        "run", config, "--cfg-options", "runner.max_epochs=2", env=env, cwd=git_repo
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = run_id_from(done.stdout)
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.type"] == "IrisNet"
    assert "val/accuracy" in run.data.metrics
    # The snapshot holds the shared bases the example inherits from the main tree.
    blame = run_trackcfg("blame", run_id, "custom_imports.imports", env=env, cwd=git_repo)
    assert "examples/custom_model/configs/iris_mlp.py:" in blame.stdout


def _example(script: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / script), "--keep", str(tmp_path / "ws"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_preemption_demo_resumes_to_identical_weights(tmp_path: Path) -> None:
    done = _example("examples/preemption/demo.py", tmp_path, "--epochs", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    reference = next(line.split()[-1] for line in lines if "uninterrupted" in line)
    resumed = next(line.split()[-1] for line in lines if "killed+resumed" in line)
    assert reference == resumed
    assert "  identical" in lines
    # The killed run was resumed in place: one run of that hash left unfinished? none.
    store = "sqlite:///" + (tmp_path / "ws" / "mlflow.db").as_posix()
    client = MlflowClient(store)
    experiments = [e.experiment_id for e in client.search_experiments()]
    statuses = sorted(r.info.status for r in client.search_runs(experiments))
    assert statuses == ["FINISHED", "FINISHED"]


def test_audit_walkthrough_works_after_the_base_file_edit_the_readme_invites(
    git_repo: Path,
) -> None:
    # A checkout of the project whose user already made the walk-through's edit (and
    # one more) in the working tree: the example must show the same thing.
    shutil.copytree(REPO_ROOT / "examples/audit", git_repo / "examples/audit")
    git(["add", "examples"], git_repo)
    git(["commit", "-q", "-m", "examples"], git_repo)
    base = git_repo / "configs/_base_/schedules/sgd_10e.py"
    base.write_text(base.read_text().replace("lr=0.01", "lr=0.02").replace("[7]", "[3]"))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [sys.executable, "examples/audit/walkthrough.py", "--keep", str(git_repo.parent / "ws")],
        cwd=git_repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    ws = git_repo.parent / "ws"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FAILED" not in done.stdout
    assert "b: configs/_base_/schedules/sgd_10e.py:2" in done.stdout
    # The runs' snapshots answered although the base file is gone.
    assert not (ws / "configs/_base_/schedules/sgd_10e.py").exists()
    runs = json.loads(
        subprocess.run(
            [sys.executable, "-m", "trackcfg", "runs", "--json"],
            cwd=ws,
            env=dict(os.environ, MLFLOW_TRACKING_URI="sqlite:///" + (ws / "mlflow.db").as_posix()),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert [r["git_dirty"] for r in runs] == [True, False]
