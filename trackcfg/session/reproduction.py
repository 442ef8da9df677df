"""Re-create a tracked run's sources in a new git worktree and prove they hash the same.

Steps, none of which touches the current work tree: ``git worktree add
--detach DIR <recorded commit>``; apply the recorded patch (uncommitted changes
to tracked files); write the snapshot's lineage files byte for byte (covers
config files that were untracked); re-resolve the config there with the
recorded options, without importing ``custom_imports``; compare its hash with
the run's ``trackcfg.config_hash`` tag. A mismatch is an error, not a warning.

The snapshot is verified against the run's tags before anything is written.
Lineage files are written only inside the worktree and never through a
symbolic link (a recorded patch may add links; ``git apply`` itself refuses to
write beyond one). Any failure after ``git worktree add`` removes the worktree
again (``git worktree remove --force``, then ``prune``): a failed reproduce
leaves neither a directory nor a registered worktree behind.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trackcfg.errors import TrackingError

if TYPE_CHECKING:
    from trackcfg.tracking.snapshot import Snapshot

__all__ = [
    "Reproduction",
    "default_directory",
    "remove_worktree",
    "reproduce",
    "rerun",
    "run_command",
]


@dataclass(frozen=True, slots=True)
class Reproduction:
    """A reproduced run's worktree.

    Attributes:
        run_id: The run reproduced.
        directory: The new worktree.
        commit: The commit checked out.
        patch_applied: True when a non-empty recorded patch was applied.
        restored_files: How many lineage files were written from the snapshot.
        config_file: The config, relative to the worktree.
        config_hash: The re-resolved hash (equal to the run's tag).
        command: ``trackcfg run ...`` arguments that re-run the run from ``directory``.
        tracking_uri: The store the run is in, absolute and without credentials
            (printed; the re-run must record into it, not a new ``./mlflow.db`` in
            ``directory``). Credentials come from the environment, as MLflow's do.
    """

    run_id: str
    directory: Path
    commit: str
    patch_applied: bool
    restored_files: int
    config_file: str
    config_hash: str
    command: tuple[str, ...]
    tracking_uri: str = ""

    @property
    def environment(self) -> dict[str, str]:
        """What the re-run's environment must hold besides the user's: the store."""
        return {"MLFLOW_TRACKING_URI": self.tracking_uri} if self.tracking_uri else {}


def _git(args: list[str], cwd: Path, *, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip().splitlines()
        raise TrackingError(
            f"git {' '.join(args[:2])} failed in {cwd}",
            details=[line for line in stderr if line][-5:],
        )
    return proc.stdout.decode(errors="replace")


def _has_commit(root: Path, commit: str) -> bool:
    proc = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=root, capture_output=True
    )
    return proc.returncode == 0


def _repository_root(cwd: Path) -> Path:
    proc = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise TrackingError(
            f"{cwd} is not inside a git repository",
            hint="run `trackcfg reproduce` from a clone of the run's repository",
        )
    return Path(proc.stdout.strip())


def default_directory(run_id: str, cwd: Path | None = None) -> Path:
    """``<repo>-<first 8 of run id>`` beside the current repository (outside its work tree)."""
    root = _repository_root(cwd or Path.cwd())
    return root.parent / f"{root.name}-{run_id[:8]}"


def run_command(config_file: str, cfg_options: Sequence[str]) -> tuple[str, ...]:
    """``trackcfg run`` arguments with the run's ``--cfg-options`` exactly as they were given.

    Example:
        >>> run_command("configs/x.py", ["optimizer.lr=0.1"])
        ('trackcfg', 'run', 'configs/x.py', '--cfg-options', 'optimizer.lr=0.1')
    """
    argv = ["trackcfg", "run", config_file]
    if cfg_options:
        argv += ["--cfg-options", *cfg_options]
    return tuple(argv)


def reproduce(
    run_id: str,
    directory: Path | None = None,
    cwd: Path | None = None,
    *,
    snapshot: Snapshot | None = None,
) -> Reproduction:
    """Re-create run ``run_id``'s sources in a new worktree and verify the config hash.

    Args:
        run_id: The run.
        directory: Where to put the worktree (must not exist, or be empty); default
            `default_directory`.
        cwd: A directory inside the repository the run was made from (default: cwd).
        snapshot: The run's snapshot, when the caller has loaded it already.

    Raises:
        RunNotFoundError: No such run.
        SnapshotError: The run has no snapshot, an altered one, or it records no git
            commit; or a lineage file would be written through a symbolic link.
        TrackingError: ``directory`` is not empty, the commit is not in this
            repository, a lineage file lies outside the project root, the patch
            does not apply, or the hash differs.

    Every failure after the worktree was added removes it again.
    """
    from trackcfg.session.target import load_run_snapshot

    cwd = cwd or Path.cwd()
    snap = snapshot if snapshot is not None else load_run_snapshot(run_id)
    commit = _recorded_commit(snap)
    root = _repository_root(cwd)
    target = (directory or default_directory(run_id, cwd)).absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise TrackingError(
            f"{target}: directory exists and is not empty",
            hint="pass --dir with a new or empty directory",
        )
    if not _has_commit(root, commit):
        raise TrackingError(
            f"run {run_id}: commit {commit} is not in the repository at {root}",
            hint="fetch it (`git fetch`), or run `trackcfg reproduce` in a clone that has it",
        )
    _check_lineage_paths(snap)
    existed = target.exists()
    try:
        _git(["worktree", "add", "--detach", str(target), commit], root)
        patch = snap.patch
        if patch.strip():
            _git(["apply", "--binary", "--whitespace=nowarn", "-"], target, stdin=patch)
        _restore_lineage(target, snap)
        config_hash = snap.load_at(target).hash
        if config_hash != snap.config_hash:
            raise TrackingError(
                f"{snap.config_file}: re-resolved at commit {commit[:12]} with the recorded "
                f"patch and lineage, the config hashes to {config_hash}, the run's tag is "
                f"{snap.config_hash}",
                hint=f"the worktree was removed; `trackcfg diff {run_id} {snap.config_file}` "
                "compares the run with your files",
            )
    except BaseException:
        _remove_worktree(root, target, existed)
        raise
    return Reproduction(
        run_id=run_id,
        directory=target,
        commit=commit,
        patch_applied=bool(patch.strip()),
        restored_files=len(snap.lineage_files),
        config_file=snap.config_file,
        config_hash=config_hash,
        command=run_command(snap.config_file, snap.cfg_options),
        tracking_uri=_printable_store(),
    )


def _printable_store() -> str:
    """The store this process reads, absolute (the re-run starts elsewhere), redacted."""
    from trackcfg.session.catalog import tracking_uri
    from trackcfg.tracking.mlflow_run import local_sqlite_path
    from trackcfg.tracking.redaction import redact_url

    uri = tracking_uri()
    db = local_sqlite_path(uri)
    if db is not None:
        uri = "sqlite:///" + db.absolute().as_posix()
    return redact_url(uri)


def _recorded_commit(snap: Snapshot) -> str:
    from trackcfg.errors import SnapshotError

    commit = snap.git.commit
    if not commit:
        raise SnapshotError(
            f"run {snap.run_id}: the snapshot records no git commit "
            "(the run was made outside a git repository or before the first commit)"
        )
    return commit


def _check_lineage_paths(snap: Snapshot) -> None:
    from trackcfg.tracking.confinement import parse_relative_path

    for rel in snap.lineage_files:
        if parse_relative_path(rel, allow_climb=True)[0] == "..":
            raise TrackingError(
                f"run {snap.run_id}: lineage file {rel} lies outside the project root",
                hint="re-resolve it with `trackcfg blame`/`diff` on the run instead",
            )


def _restore_lineage(root: Path, snap: Snapshot) -> None:
    # Byte-for-byte: covers config files that were untracked when the run started.
    # Never through a link: the recorded patch may have added one (to anywhere).
    from trackcfg.tracking.confinement import write_confined

    for rel, data in snap.lineage_files.items():
        write_confined(root, rel, data)


def _remove_worktree(repository: Path, target: Path, existed: bool) -> None:
    """Undo ``git worktree add``: unregister the worktree and delete what it wrote."""
    for args in (["worktree", "remove", "--force", "--force", str(target)], ["worktree", "prune"]):
        subprocess.run(["git", *args], cwd=repository, capture_output=True, check=False)
    if target.is_dir() and not target.is_symlink():
        if existed:  # the user's empty directory: empty it again, keep it
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        else:
            shutil.rmtree(target)
    elif existed:
        target.mkdir(parents=True, exist_ok=True)


def remove_worktree(rep: Reproduction, cwd: Path | None = None, *, keep_directory: bool) -> None:
    """Remove a reproduction's worktree and everything written in it; unregister it.

    Args:
        rep: What `reproduce` made.
        cwd: A directory of the repository (default: cwd).
        keep_directory: Leave ``rep.directory`` itself, empty (the user gave it).
    """
    _remove_worktree(_repository_root(cwd or Path.cwd()), rep.directory, keep_directory)


def rerun(rep: Reproduction, env: dict[str, str]) -> int:
    """Run the reproduction's command in its worktree; returns the exit status."""
    argv = [sys.executable, "-m", "trackcfg", *rep.command[1:]]
    return subprocess.run(argv, cwd=rep.directory, env=env, check=False).returncode
