"""A work dir that cannot be written: one clear error before any run exists.

The work dir sits on a tmpfs remounted read-only: tests run as root, for whom
file modes (chmod 0o555) stop no write. Skipped where mounting is not permitted.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.e2e.conftest import E2E_CONFIG_PATH, trackcfg


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a small tmpfs mounted read-only, holding an (empty) ``existing/`` dir."""
    mount_point = tmp_path / "ro"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        (mount_point / "existing").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.mark.parametrize("work", ["existing", "new/work"])
def test_a_read_only_work_dir_is_one_error_and_creates_no_run(
    git_repo: Path, read_only_dir: Path, tracking_uri: str, tracking_env: dict[str, str], work: str
) -> None:
    work_dir = read_only_dir / work
    done = trackcfg("run", E2E_CONFIG_PATH, "--work-dir", str(work_dir), env=tracking_env)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    error, hint = done.stderr.strip().splitlines()[-2:]
    assert error.startswith(f"error: work dir {work_dir}: not writable: Read-only file system")
    assert hint.startswith("  hint: pass --work-dir with a writable directory")
    client = MlflowClient(tracking_uri)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
