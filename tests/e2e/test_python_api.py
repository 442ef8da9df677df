"""The Python API of a user's own ``tools/train.py``: ``trackcfg.run`` as ``trackcfg run``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from tests.e2e.conftest import E2E_CONFIG_PATH
from tests.e2e.conftest import trackcfg as run_cli

TRAIN_PY = """
import sys
import trackcfg

cfg = trackcfg.Config.fromfile(sys.argv[1])
result = trackcfg.run(cfg, ["runner.max_epochs=1"], work_dir="work_dirs/api")
print(result.run_id, result.status, result.config_hash)
"""


def test_trackcfg_run_from_python_tracks_the_run_like_the_command(
    git_repo: Path, tracking_env: dict[str, str], tracking_uri: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_PY, E2E_CONFIG_PATH],
        cwd=git_repo,
        env=tracking_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_id, status, config_hash = done.stdout.split()
    assert status == "FINISHED"
    expected = run_cli(
        "hash",
        E2E_CONFIG_PATH,
        "--cfg-options",
        "runner.max_epochs=1",
        env=tracking_env,
        cwd=git_repo,
    )
    assert config_hash == expected.stdout.strip()
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["trackcfg.config_hash"] == config_hash
    assert "trackcfg.snapshot_digest" in run.data.tags
    assert (git_repo / "work_dirs" / "api" / "epoch_1.pth").is_file()
