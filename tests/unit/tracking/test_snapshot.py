"""Snapshot write/read/resolve on real config trees: exact bytes, same hash, nothing executed.

A snapshot directory is read back the way a tampered store would hand it over:
edited files, a lineage file edited together with its digest, paths that leave
the directory. Runs in a store are in ``test_snapshot_run.py``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import xxhash

from tests.snapshot_forgery import add_lineage_entry, replace_lineage_file
from trackcfg.config.config import Config
from trackcfg.errors import SnapshotError
from trackcfg.tracking.environment import capture_environment
from trackcfg.tracking.gitstate import capture_git_state
from trackcfg.tracking.snapshot import read_snapshot, seal_snapshot, write_snapshot

BASE = """\
# base settings
model = dict(type='Net', depth=50, act=('relu', 2))
optimizer = dict(type='SGD', lr=0.1)
custom_imports = dict(imports=['module_that_must_not_be_imported_xyz'], allow_failed_imports=False)
"""
DATA = """\
data:
  batch: 32
  root: /data
"""
CHILD = """\
_base_ = ['../base.py', '../data.yaml']
model = dict(depth=18)
lr = {{ _base_.optimizer.lr }}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "exp").mkdir(parents=True)
    (root / "base.py").write_text(BASE)
    (root / "data.yaml").write_text(DATA)
    (root / "exp" / "child.py").write_text(CHILD)
    return root


def load(project: Path) -> Config:
    cfg = Config.fromfile(project / "exp" / "child.py", import_custom_modules=False, root=project)
    cfg.merge_from_dict({"optimizer.lr": 0.01, "data.batch": 64})
    return cfg


def snapshot_of(cfg: Config, directory: Path) -> Path:
    """Write and seal the snapshot of ``cfg``, as `trackcfg run` and its agent do."""
    write_snapshot(
        directory,
        cfg,
        cfg_options=["optimizer.lr=0.01", "data.batch=64"],
        git=capture_git_state(directory.parent),
        environment=capture_environment(),
    )
    seal_snapshot(directory)
    return directory


def test_snapshot_files_hold_the_hashed_bytes_and_every_lineage_file(
    project: Path, tmp_path: Path
) -> None:
    cfg = load(project)
    snap_dir = snapshot_of(cfg, tmp_path / "snap")
    assert (snap_dir / "config.canonical.json").read_bytes() == cfg.canonical_bytes()
    assert xxhash.xxh3_128_hexdigest(cfg.canonical_bytes()) == cfg.hash
    for rel in ("base.py", "data.yaml", "exp/child.py"):
        assert (snap_dir / "lineage" / rel).read_bytes() == (project / rel).read_bytes()
    lineage = json.loads((snap_dir / "lineage.json").read_text())
    assert {e["path"]: e["included_by"] for e in lineage} == {
        "base.py": "exp/child.py",
        "data.yaml": "exp/child.py",
        "exp/child.py": None,
    }
    assert "depth=18" in (snap_dir / "config.py").read_text().replace(" ", "")


def test_read_snapshot_gives_back_config_options_lineage_and_git(
    project: Path, tmp_path: Path
) -> None:
    cfg = load(project)
    snap = read_snapshot(snapshot_of(cfg, tmp_path / "snap"))
    assert snap.config_hash == cfg.hash
    assert snap.lineage_hash == cfg.lineage_hash
    assert snap.config_file == "exp/child.py"
    assert snap.canonical_bytes == cfg.canonical_bytes()
    assert snap.config["model"] == {"type": "Net", "depth": 18, "act": ("relu", 2)}
    assert snap.options == {"optimizer.lr": 0.01, "data.batch": 64}
    assert snap.cfg_options == ("optimizer.lr=0.01", "data.batch=64")
    assert tuple(snap.lineage) == tuple(cfg.lineage)
    assert snap.git.repo is None
    assert snap.environment["packages"]


def test_resolving_a_snapshot_gives_the_same_hash_without_importing_custom_modules(
    project: Path, tmp_path: Path
) -> None:
    cfg = load(project)
    snap = read_snapshot(snapshot_of(cfg, tmp_path / "snap"))
    (project / "base.py").write_text("model = dict(depth=1)\n")  # the original changes later
    resolved = snap.resolve(tmp_path / "restore")
    assert resolved.hash == cfg.hash
    assert resolved.to_dict() == cfg.to_dict()


def test_lineage_paths_that_climb_out_of_the_root_are_restored_inside_the_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "base.py").write_text("a = 1\nb = dict(c=2)\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "leaf.py").write_text("_base_ = '../shared/base.py'\nb = dict(d=3)\n")
    cfg = Config.fromfile(project / "leaf.py", root=project)
    snap = read_snapshot(snapshot_of(cfg, tmp_path / "snap"))
    assert "../shared/base.py" in snap.lineage_files
    restore = tmp_path / "restore"
    assert snap.resolve(restore).hash == cfg.hash
    assert all(restore in p.parents for p in restore.rglob("*.py"))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "git.json").unlink(), "snapshot file git.json is missing"),
        (
            lambda d: (d / "provenance.json").write_text("{}"),
            "snapshot file provenance.json does not match its digest in manifest.json",
        ),
        (
            lambda d: (d / "lineage" / "base.py").write_text("x = 1\n"),
            "snapshot file lineage/base.py does not match its digest in manifest.json",
        ),
        (
            lambda d: (d / "lineage" / "extra.py").write_text("x = 1\n"),
            "snapshot file lineage/extra.py is not listed in manifest.json",
        ),
        (lambda d: (d / "manifest.json").unlink(), "snapshot file manifest.json is missing"),
        (
            lambda d: (d / "lineage" / "link.py").symlink_to(d / "config.py"),
            "lineage/link.py: not a regular file",
        ),
    ],
)
def test_an_edited_snapshot_file_is_refused_naming_it(
    project: Path, tmp_path: Path, damage: object, message: str
) -> None:
    snap_dir = snapshot_of(load(project), tmp_path / "snap")
    damage(snap_dir)  # type: ignore[operator]
    with pytest.raises(SnapshotError, match=re.escape(message)):
        read_snapshot(snap_dir)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "lineage" / "base.py").write_text("x = 1\n"), "does not match its digest"),
        (lambda d: (d / "lineage" / "data.yaml").unlink(), "data.yaml is missing"),
        (lambda d: (d / "config.canonical.json").write_bytes(b"{}"), "hashes to"),
        (lambda d: (d / "options.json").write_text("{"), "unreadable"),
        (
            lambda d: replace_lineage_file(d, "base.py", b"x = 1\n", update_lineage_hash=False),
            "lineage.json hashes to",
        ),
        (
            lambda d: add_lineage_entry(d, "x/../../../../name", b"x", "lineage/x/name"),
            "lineage path 'x/../../../../name' is not a normalised relative path",
        ),
        (
            lambda d: add_lineage_entry(d, "/tmp/name", b"x", None),
            "lineage path '/tmp/name' is not a normalised relative path",
        ),
    ],
)
def test_a_damaged_snapshot_resealed_is_still_refused(
    project: Path, tmp_path: Path, damage: object, message: str
) -> None:
    # The manifest is rewritten over the damage: the checks inside must catch it.
    snap_dir = snapshot_of(load(project), tmp_path / "snap")
    damage(snap_dir)  # type: ignore[operator]
    seal_snapshot(snap_dir)
    with pytest.raises(SnapshotError, match=re.escape(message)):
        read_snapshot(snap_dir)


def test_a_snapshot_rebuilds_its_config_from_the_canonical_bytes_without_running_files(
    project: Path, tmp_path: Path
) -> None:
    cfg = load(project)
    snap_dir = snapshot_of(cfg, tmp_path / "snap")
    marker = tmp_path / "marker"
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('ran')\n"
    replace_lineage_file(snap_dir, "base.py", (project / "base.py").read_bytes() + code.encode())
    seal_snapshot(snap_dir)
    rebuilt = read_snapshot(snap_dir).to_config()
    assert rebuilt.hash == cfg.hash
    assert rebuilt.to_dict() == read_snapshot(snap_dir).config
    assert rebuilt.filename == "exp/child.py"
    assert not marker.exists()


def test_rebuilding_with_custom_imports_imports_the_named_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "installed").mkdir()
    (tmp_path / "installed" / "snapshot_test_plugin.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path / "installed"))
    (tmp_path / "leaf.py").write_text(
        "custom_imports = dict(imports=['snapshot_test_plugin'])\nopt = dict(type=dict)\n"
    )
    cfg = Config.fromfile(tmp_path / "leaf.py", import_custom_modules=False, root=tmp_path)
    snap = read_snapshot(snapshot_of(cfg, tmp_path / "snap"))
    assert "snapshot_test_plugin" not in sys.modules
    assert snap.to_config().opt["type"] == "builtins:dict"  # a QualifiedName, not imported
    rebuilt = snap.to_config(import_custom_modules=True)
    assert "snapshot_test_plugin" in sys.modules
    assert rebuilt.opt["type"] is dict and rebuilt.hash == cfg.hash
    monkeypatch.delitem(sys.modules, "snapshot_test_plugin")


def test_restoring_the_lineage_writes_nothing_through_a_link(project: Path, tmp_path: Path) -> None:
    snap = read_snapshot(snapshot_of(load(project), tmp_path / "snap"))
    restore, outside = tmp_path / "restore", tmp_path / "outside"
    outside.mkdir()
    (restore / "root").mkdir(parents=True)
    (restore / "root" / "exp").symlink_to(outside)
    with pytest.raises(SnapshotError, match="refusing to write through root/exp"):
        snap.restore_lineage(restore)
    assert list(outside.iterdir()) == []


def test_a_config_file_edited_after_loading_is_refused_when_snapshotting(
    project: Path, tmp_path: Path
) -> None:
    cfg = load(project)
    (project / "data.yaml").write_text("data:\n  batch: 1\n")
    with pytest.raises(
        SnapshotError, match=r"data\.yaml: file changed after the config was loaded"
    ):
        snapshot_of(cfg, tmp_path / "snap")
