"""Issue 16 through the real CLI: a portable hash, and blame of a change made through an alias."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

Run = Callable[..., subprocess.CompletedProcess[str]]
DATA = Path(__file__).parents[1] / "data" / "configs"


def project(directory: Path) -> Path:
    """A git work tree holding configs that use `{{ fileDirname }}` and alias edits."""
    directory.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(directory)], check=True)
    shutil.copytree(DATA / "dirname", directory / "configs" / "dirname")
    shutil.copytree(DATA / "alias", directory / "configs" / "alias")
    return directory


def test_hash_is_the_same_from_checkouts_at_two_absolute_paths(
    tmp_path: Path, run_trackcfg: Run
) -> None:
    one = project(tmp_path / "a")
    two = project(tmp_path / "somewhere" / "else" / "b")
    hashes = []
    for root in (one, two):
        done = run_trackcfg("hash", "configs/dirname/child.yaml", env=None, cwd=root)
        assert done.returncode == 0, done.stderr
        hashes.append(done.stdout.strip())
        shown = run_trackcfg("show", "configs/dirname/child.yaml", env=None, cwd=root)
        assert f"{root.as_posix()}/configs/dirname/../data" in shown.stdout  # mmengine's value
    assert hashes[0] == hashes[1] and len(hashes[0]) == 32


def test_blame_names_the_statement_that_changed_the_value_through_an_alias(
    tmp_path: Path, run_trackcfg: Run
) -> None:
    root = project(tmp_path / "p")
    done = run_trackcfg("blame", "configs/alias/grandchild.py", "test_pipeline", env=None, cwd=root)
    assert done.returncode == 0, done.stderr
    rows = [line.split()[:2] for line in done.stdout.splitlines()[1:]]
    assert rows == [
        ["configs/alias/base.py:1", "set"],
        ["configs/alias/child.py:3", "override"],
        ["configs/alias/grandchild.py:4", "override"],
    ]
