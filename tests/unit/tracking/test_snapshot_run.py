"""Forged runs in a real SQLite store: blame, diff, resume and reproduce refuse them.

Each run is made from a real config tree in a real git repository, sealed and
tagged as the tracking agent does (no training); a test then edits the run's
artifacts in place, as someone with access to the artifact store would, and
sometimes re-seals and re-tags them, as someone with access to the whole store
would. Nothing may then be trusted, executed or written outside its directory.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.snapshot_forgery import (
    add_lineage_entry,
    artifact_snapshot,
    replace_lineage_file,
    retag,
    store_snapshot_run,
)
from trackcfg.config.config import Config
from trackcfg.errors import SnapshotError, TrackcfgError
from trackcfg.session import reproduction
from trackcfg.session.runs import resume_run
from trackcfg.session.target import load_view
from trackcfg.tracking import mlflow_run as mr
from trackcfg.tracking.environment import capture_environment
from trackcfg.tracking.gitstate import capture_git_state
from trackcfg.tracking.snapshot import load_snapshot, seal_snapshot, write_snapshot

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}
BASE = "model = dict(type='Net', depth=50)\noptimizer = dict(type='SGD', lr=0.1)\n"
# Never importable: reading or rebuilding the config must not need it.
LEAF = (
    "_base_ = '../base.py'\nmodel = dict(depth=18)\n"
    "custom_imports = dict(imports=['module_that_must_not_be_imported_xyz'])\n"
)


def git(args: list[str], cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=dict(os.environ, **GIT_ENV),
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "exp").mkdir(parents=True)
    (root / "base.py").write_text(BASE)
    (root / "exp" / "leaf.py").write_text(LEAF)
    git(["init", "-q", "-b", "main"], root)
    git(["add", "."], root)
    git(["commit", "-qm", "configs"], root)
    return root


@pytest.fixture
def run_id(repo: Path, sqlite_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A sealed, tagged run of ``exp/leaf.py`` (the store is MLFLOW_TRACKING_URI)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_store)
    cfg = Config.fromfile(repo / "exp" / "leaf.py", import_custom_modules=False, root=repo)
    staged = write_snapshot(
        tmp_path / "staged",
        cfg,
        cfg_options=[],
        git=capture_git_state(repo),
        environment=capture_environment(),
    )
    return store_snapshot_run(sqlite_store, staged)


def worktrees(repo: Path) -> list[str]:
    listing = git(["worktree", "list", "--porcelain"], repo).splitlines()
    return [line for line in listing if line.startswith("worktree ")]


# -- blame and diff -----------------------------------------------------------------------


def test_a_sealed_run_reads_back_verified_against_its_tag(run_id: str, sqlite_store: str) -> None:
    snap = load_snapshot(run_id, tracking_uri=sqlite_store)
    tags = MlflowClient(sqlite_store).get_run(run_id).data.tags
    assert snap.root_digest == tags[mr.TAG_SNAPSHOT_DIGEST]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", tags[mr.TAG_SNAPSHOT_DIGEST])
    assert load_view(run_id).values["model"] == {"type": "Net", "depth": 18}


def _forge_provenance(d: Path) -> None:
    provenance = json.loads((d / "provenance.json").read_text())
    text = json.dumps(provenance).replace("exp/leaf.py", "exp/innocent.py")
    (d / "provenance.json").write_text(text)


def _forge_lineage(d: Path) -> None:
    replace_lineage_file(d, "base.py", BASE.replace("0.1", "0.2").encode())


@pytest.mark.parametrize(
    ("forge", "reseal", "retag_lineage", "message"),
    [
        (
            _forge_provenance,
            False,
            None,
            "snapshot file provenance.json does not match its digest in manifest.json",
        ),
        (_forge_provenance, True, None, "manifest.json hashes to sha256:"),
        (
            _forge_lineage,
            False,
            None,
            "snapshot file lineage.json does not match its digest in manifest.json",
        ),
        (_forge_lineage, True, None, "manifest.json hashes to sha256:"),
        # With the digest tag rewritten too, the lineage hash tag still tells.
        (_forge_lineage, True, False, "the run's trackcfg.lineage_hash tag is"),
    ],
)
def test_a_forged_snapshot_is_refused_by_blame_and_diff(
    run_id: str,
    sqlite_store: str,
    forge: object,
    reseal: bool,
    retag_lineage: bool | None,
    message: str,
) -> None:
    directory = artifact_snapshot(sqlite_store, run_id)
    forge(directory)  # type: ignore[operator]
    if reseal:
        seal_snapshot(directory)
    if retag_lineage is not None:
        retag(sqlite_store, run_id, directory, lineage=retag_lineage)
    with pytest.raises(SnapshotError, match=re.escape(message)):
        load_view(run_id)  # what `blame RUN KEY` and `diff RUN ...` read


def test_diff_refuses_a_forged_run_in_one_message_exit_2_not_1(
    run_id: str, sqlite_store: str, repo: Path
) -> None:
    # One CLI process (blame reads runs through the same `load_view`): a forged run is
    # trouble (2), never reported as merely different (1).
    _forge_provenance(artifact_snapshot(sqlite_store, run_id))
    done = subprocess.run(
        [sys.executable, "-m", "trackcfg", "diff", run_id, "base.py"],
        cwd=repo,
        env=dict(os.environ, MLFLOW_TRACKING_URI=sqlite_store),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[0] == (
        f"error: run {run_id}: snapshot file provenance.json does not match its digest in "
        "manifest.json"
    )
    assert "Traceback" not in done.stderr


# -- runs from before manifests, and stripped ones ----------------------------------------


def test_a_run_from_before_manifests_is_read_with_a_warning(
    run_id: str, sqlite_store: str, caplog: pytest.LogCaptureFixture
) -> None:
    directory = artifact_snapshot(sqlite_store, run_id)
    info = json.loads((directory / "snapshot.json").read_text())
    (directory / "snapshot.json").write_text(json.dumps({**info, "format": 1}))
    (directory / "manifest.json").unlink()
    MlflowClient(sqlite_store).delete_tag(run_id, mr.TAG_SNAPSHOT_DIGEST)
    with caplog.at_level(logging.WARNING, logger="trackcfg"):
        view = load_view(run_id)
    assert view.values["model"] == {"type": "Net", "depth": 18}
    assert f"run {run_id} predates snapshot manifests" in caplog.text


@pytest.mark.parametrize(
    ("strip", "message"),
    [
        (
            lambda uri, run, d: (d / "manifest.json").unlink(),
            "snapshot file manifest.json is missing",
        ),
        (
            lambda uri, run, d: MlflowClient(uri).delete_tag(run, mr.TAG_SNAPSHOT_DIGEST),
            "its snapshot has manifest.json but the run has no trackcfg.snapshot_digest tag",
        ),
    ],
)
def test_a_run_stripped_of_its_manifest_or_its_tag_is_refused(
    run_id: str, sqlite_store: str, strip: object, message: str
) -> None:
    strip(sqlite_store, run_id, artifact_snapshot(sqlite_store, run_id))  # type: ignore[operator]
    with pytest.raises(SnapshotError, match=re.escape(message)):
        load_view(run_id)


# -- resume -------------------------------------------------------------------------------


@pytest.mark.parametrize("traversal", [False, True])
def test_resume_refuses_lineage_paths_outside_its_directory_and_writes_nothing(
    run_id: str, sqlite_store: str, tmp_path: Path, traversal: bool
) -> None:
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir()
    victim.write_bytes(b"precious\n")
    os.utime(victim, ns=(10**9, 10**9))
    if traversal:  # climbs to / from anywhere, then down to the victim
        path, stored = "x/" + "../" * 40 + victim.as_posix().lstrip("/"), "lineage/x/keep"
    else:
        path, stored = victim.as_posix(), None
    directory = artifact_snapshot(sqlite_store, run_id)
    add_lineage_entry(directory, path, victim.read_bytes(), stored)
    retag(sqlite_store, run_id, directory)  # a consistent forgery: only the path is wrong
    with pytest.raises(TrackcfgError) as info:
        resume_run(run_id, work_dir=tmp_path / "work", tracking_uri=sqlite_store)
    assert victim.stat().st_mtime_ns == 10**9, "resume wrote the file outside its directory"
    assert sorted(victim.parent.iterdir()) == [victim]
    assert isinstance(info.value, SnapshotError)
    assert f"lineage path {path!r} is not a normalised relative path" in str(info.value)


# -- reproduce ----------------------------------------------------------------------------


def _symlink_patch(repo: Path, link: str, target: Path) -> bytes:
    """The binary git patch that adds symbolic link ``link`` -> ``target``."""
    (repo / link).symlink_to(target)
    git(["add", link], repo)
    patch = subprocess.run(
        ["git", "diff", "--cached", "--binary"], cwd=repo, check=True, capture_output=True
    ).stdout
    git(["reset", "-q"], repo)
    (repo / link).unlink()
    return patch


def test_reproduce_refuses_to_write_through_a_link_from_the_recorded_patch(
    run_id: str, sqlite_store: str, repo: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    directory = artifact_snapshot(sqlite_store, run_id)
    (directory / "git.patch").write_bytes(_symlink_patch(repo, "exp/evil", outside))
    add_lineage_entry(directory, "exp/evil/x.py", b"a = 1\n", "lineage/exp/evil/x.py")
    retag(sqlite_store, run_id, directory)
    target = tmp_path / "repro"
    with pytest.raises(TrackcfgError) as info:
        reproduction.reproduce(run_id, target, cwd=repo)
    assert list(outside.iterdir()) == [], "reproduce wrote outside the worktree"
    assert worktrees(repo) == [f"worktree {repo}"]
    assert not target.exists()
    assert isinstance(info.value, SnapshotError)
    assert str(info.value) == (
        "exp/evil/x.py: refusing to write through exp/evil, which is a symbolic link "
        f"or not a directory in {target}"
    )


def _unappliable_patch(d: Path) -> None:
    (d / "git.patch").write_bytes(
        b"diff --git a/nope.py b/nope.py\n--- a/nope.py\n+++ b/nope.py\n"
        b"@@ -1 +1 @@\n-a = 1\n+a = 2\n"
    )


def _other_leaf(d: Path) -> None:
    replace_lineage_file(d, "exp/leaf.py", LEAF.replace("18", "34").encode())


@pytest.mark.parametrize("forge", [_unappliable_patch, _other_leaf])
def test_a_failed_reproduce_leaves_no_worktree(
    run_id: str, sqlite_store: str, repo: Path, tmp_path: Path, forge: object
) -> None:
    directory = artifact_snapshot(sqlite_store, run_id)
    forge(directory)  # type: ignore[operator]
    retag(sqlite_store, run_id, directory)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrackcfgError):
        reproduction.reproduce(run_id, empty, cwd=repo)
    assert worktrees(repo) == [f"worktree {repo}"]
    assert empty.is_dir() and list(empty.iterdir()) == []


def test_reproduce_of_a_sealed_run_recreates_its_files(
    run_id: str, repo: Path, tmp_path: Path
) -> None:
    rep = reproduction.reproduce(run_id, tmp_path / "repro", cwd=repo)
    assert (rep.directory / "exp" / "leaf.py").read_text() == LEAF
    git(["worktree", "remove", "--force", str(rep.directory)], repo)
