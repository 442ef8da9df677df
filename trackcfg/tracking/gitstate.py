"""GitState: the git state of the work tree a run was started from.

Captured with gitpython. An odd state is a value, never a guess:

- outside a git repository: ``GitState(repo=None)`` and every other field empty;
- a repository without commits: ``commit=None``; the patch is taken against the
  empty tree, so it recreates every tracked (staged) file;
- a detached HEAD: ``branch=None``.

``patch`` holds the staged and unstaged changes to tracked files as one binary-safe
diff against ``commit`` (``git diff --binary HEAD``), so ``git apply`` of it on a
clean checkout of the commit recreates the work tree's tracked files. Untracked
files are listed by path only (their contents are not recorded, and they do not
make the tree "dirty", so that ``mlflow.db``/``work_dirs`` beside the code do not
mark every run as dirty). Remote URLs are recorded redacted (`redact_url`: user,
password and secret query parameters removed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trackcfg.tracking.redaction import redact_url

if TYPE_CHECKING:
    import git

__all__ = ["GitRemote", "GitState", "capture_git_state"]

# The well-known id of git's empty tree (SHA-1 repositories): what a diff of a
# repository without commits is taken against.
_EMPTY_TREE_SHA1 = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass(frozen=True, slots=True)
class GitRemote:
    """One remote: its name and URL with credentials removed."""

    name: str
    url: str


@dataclass(frozen=True, slots=True)
class GitState:
    """The git state of a work tree.

    Attributes:
        repo: Absolute path of the work tree root, or None outside a git repository.
        commit: The HEAD commit's hex sha, or None (outside a repo, or no commits yet).
        branch: The checked-out branch, or None (outside a repo, or detached HEAD).
            In a repository without commits this is the unborn branch's name.
        dirty: True when tracked files differ from ``commit`` (staged or not).
        patch: ``git diff --binary`` of tracked files against ``commit`` (bytes, empty
            when clean); applies with ``git apply`` on a clean checkout of ``commit``.
        untracked: Paths (relative to ``repo``, posix) of untracked, non-ignored files.
        remotes: Every remote URL, credentials removed.
    """

    repo: str | None
    commit: str | None = None
    branch: str | None = None
    dirty: bool = False
    patch: bytes = b""
    untracked: tuple[str, ...] = ()
    remotes: tuple[GitRemote, ...] = field(default=())

    @property
    def repo_url(self) -> str | None:
        """The URL of ``origin`` (else of the first remote), credentials removed."""
        for remote in self.remotes:
            if remote.name == "origin":
                return remote.url
        return self.remotes[0].url if self.remotes else None

    def to_json(self) -> dict[str, object]:
        """JSON-able form without the patch (the snapshot stores it as ``git.patch``)."""
        return {
            "repo": self.repo,
            "commit": self.commit,
            "branch": self.branch,
            "dirty": self.dirty,
            "has_patch": bool(self.patch),
            "untracked": list(self.untracked),
            "remotes": [{"name": r.name, "url": r.url} for r in self.remotes],
        }

    @classmethod
    def from_json(cls, obj: dict[str, object], patch: bytes = b"") -> GitState:
        """Inverse of `to_json`; ``patch`` comes from the separate patch file."""
        repo = obj.get("repo")
        commit = obj.get("commit")
        branch = obj.get("branch")
        untracked = obj.get("untracked") or []
        remotes = obj.get("remotes") or []
        if not isinstance(untracked, list) or not isinstance(remotes, list):
            raise ValueError("git.json: 'untracked' and 'remotes' must be lists")
        return cls(
            repo=repo if isinstance(repo, str) else None,
            commit=commit if isinstance(commit, str) else None,
            branch=branch if isinstance(branch, str) else None,
            dirty=bool(obj.get("dirty")),
            patch=patch,
            untracked=tuple(str(p) for p in untracked),
            remotes=tuple(GitRemote(name=str(r["name"]), url=str(r["url"])) for r in remotes),
        )


def capture_git_state(path: Path | str) -> GitState:
    """Capture the git state of the repository containing ``path``.

    Args:
        path: A file or directory; the repository is searched upwards from it.

    Returns:
        The state; ``GitState(repo=None)`` when ``path`` is not inside a work tree.

    Example:
        >>> import tempfile
        >>> capture_git_state(tempfile.mkdtemp()).repo is None
        True
    """
    import git  # gitpython: imported here so `import trackcfg` stays light

    start = Path(path).resolve()
    if start.is_file() or not start.exists():
        start = start.parent
    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return GitState(repo=None)
    with repo:
        if repo.bare or repo.working_tree_dir is None:
            return GitState(repo=None)
        has_commit = repo.head.is_valid()
        commit = repo.head.commit.hexsha if has_commit else None
        branch = None if repo.head.is_detached else repo.head.reference.name
        base = "HEAD" if has_commit else _empty_tree(repo)
        # strip_newline_in_stdout=False: gitpython strips the final newline by
        # default, which would corrupt the patch.
        patch = repo.git.diff(
            base,
            "--binary",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--full-index",
            stdout_as_string=False,
            strip_newline_in_stdout=False,
        )
        if not isinstance(patch, bytes):  # stdout_as_string=False gives bytes
            patch = str(patch).encode()
        untracked = tuple(sorted(repo.untracked_files))
        remotes = tuple(
            GitRemote(name=remote.name, url=redact_url(url))
            for remote in repo.remotes
            for url in remote.urls
        )
        return GitState(
            repo=Path(repo.working_tree_dir).as_posix(),
            commit=commit,
            branch=branch,
            dirty=bool(patch),
            patch=patch,
            untracked=untracked,
            remotes=remotes,
        )


def _empty_tree(repo: git.Repo) -> str:
    """The empty tree's id in this repository's hash format (SHA-1 or SHA-256)."""
    with open(os.devnull, "rb") as empty:
        out = repo.git.hash_object("-t", "tree", "--stdin", istream=empty)
    return str(out).strip() or _EMPTY_TREE_SHA1
