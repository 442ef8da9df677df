"""Snapshot write/read/resolve on real config trees: exact bytes, same hash, nothing executed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xxhash

from trackcfg.config.config import Config
from trackcfg.errors import SnapshotError
from trackcfg.tracking.environment import capture_environment
from trackcfg.tracking.gitstate import capture_git_state
from trackcfg.tracking.snapshot import read_snapshot, write_snapshot

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
    return write_snapshot(
        directory,
        cfg,
        cfg_options=["optimizer.lr=0.01", "data.batch=64"],
        git=capture_git_state(directory.parent),
        environment=capture_environment(),
    )


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
        (lambda d: (d / "git.json").unlink(), "missing git.json"),
        (lambda d: (d / "lineage" / "base.py").write_text("x = 1\n"), "does not match its digest"),
        (lambda d: (d / "lineage" / "data.yaml").unlink(), "data.yaml is missing"),
        (lambda d: (d / "config.canonical.json").write_bytes(b"{}"), "hashes to"),
        (lambda d: (d / "options.json").write_text("{"), "unreadable"),
    ],
)
def test_a_damaged_snapshot_is_refused(
    project: Path, tmp_path: Path, damage: object, message: str
) -> None:
    snap_dir = snapshot_of(load(project), tmp_path / "snap")
    damage(snap_dir)  # type: ignore[operator]
    with pytest.raises(SnapshotError, match=message):
        read_snapshot(snap_dir)


def test_a_config_file_edited_after_loading_is_refused_when_snapshotting(
    project: Path, tmp_path: Path
) -> None:
    cfg = load(project)
    (project / "data.yaml").write_text("data:\n  batch: 1\n")
    with pytest.raises(
        SnapshotError, match=r"data\.yaml: file changed after the config was loaded"
    ):
        snapshot_of(cfg, tmp_path / "snap")
