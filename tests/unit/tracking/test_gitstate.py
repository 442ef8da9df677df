"""GitState in real temporary repositories: odd states are values, patches apply."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from trackcfg.tracking.gitstate import GitState, capture_git_state

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t.invalid",
}


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        env=dict(os.environ, **GIT_ENV),
        input=stdin,
        capture_output=True,
        check=True,
    )
    return done.stdout.decode()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "a.py").write_text("x = 1\n")
    (path / "data.bin").write_bytes(bytes(range(256)))
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    return path


def test_outside_a_repository_is_recorded_as_no_repo(tmp_path: Path) -> None:
    assert capture_git_state(tmp_path) == GitState(repo=None)


def test_repository_without_commits_has_no_commit_and_a_patch_of_staged_files(
    tmp_path: Path,
) -> None:
    git(tmp_path, "init", "-q", "-b", "trunk")
    (tmp_path / "new.py").write_text("y = 2\n")
    git(tmp_path, "add", "new.py")
    state = capture_git_state(tmp_path)
    assert (state.commit, state.branch, state.dirty) == (None, "trunk", True)
    assert b"+y = 2" in state.patch


def test_clean_checkout_has_commit_branch_and_no_patch(repo: Path) -> None:
    state = capture_git_state(repo / "a.py")
    assert state.commit == git(repo, "rev-parse", "HEAD").strip()
    assert (state.branch, state.dirty, state.patch, state.untracked) == ("main", False, b"", ())


def test_detached_head_has_no_branch(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    state = capture_git_state(repo)
    assert state.branch is None
    assert state.commit is not None


def test_untracked_files_are_listed_but_do_not_make_the_tree_dirty(repo: Path) -> None:
    (repo / "notes.txt").write_text("scratch\n")
    state = capture_git_state(repo)
    assert state.untracked == ("notes.txt",)
    assert state.dirty is False


def test_patch_of_staged_and_unstaged_binary_changes_applies_to_a_clean_checkout(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "a.py").write_text("x = 2\n")  # unstaged
    (repo / "data.bin").write_bytes(bytes(reversed(range(256))) + b"\x00\n")
    git(repo, "add", "data.bin")  # staged binary change
    (repo / "b.py").write_text("z = 3\n")
    git(repo, "add", "b.py")  # staged new file
    state = capture_git_state(repo)
    assert state.dirty
    clean = tmp_path / "clean"
    git(repo, "worktree", "add", "-q", "--detach", str(clean), state.commit or "")
    git(clean, "apply", "--check", "-", stdin=state.patch)
    git(clean, "apply", "-", stdin=state.patch)
    for name in ("a.py", "data.bin", "b.py"):
        assert (clean / name).read_bytes() == (repo / name).read_bytes()


def test_remote_urls_are_recorded_without_credentials(repo: Path) -> None:
    git(repo, "remote", "add", "origin", "https://alice:s3cret@example.com/org/repo.git")
    git(repo, "remote", "add", "backup", "ssh://bob@backup.example.com:2222/repo.git")
    state = capture_git_state(repo)
    urls = {r.name: r.url for r in state.remotes}
    assert urls == {
        "origin": "https://example.com/org/repo.git",
        "backup": "ssh://backup.example.com:2222/repo.git",
    }
    assert state.repo_url == "https://example.com/org/repo.git"


def test_git_state_json_round_trips_with_the_patch(repo: Path) -> None:
    (repo / "a.py").write_text("x = 5\n")
    git(repo, "remote", "add", "origin", "https://u:p@h.example/r.git")
    (repo / "u.txt").write_text("u")
    state = capture_git_state(repo)
    assert GitState.from_json(state.to_json(), state.patch) == state
