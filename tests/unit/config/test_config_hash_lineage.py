"""Config.hash, canonical_bytes, lineage (paths, digests, includers, order) and root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import xxhash

from trackcfg.config.canonical import digest, to_canonical_bytes
from trackcfg.config.config import Config
from trackcfg.config.inherit import LineageEntry, hash_lineage

DATA = Path(__file__).parents[2] / "data" / "configs"


def test_hash_is_xxh3_128_of_the_canonical_bytes() -> None:
    cfg = Config.fromfile(DATA / "formats" / "plain.py")
    assert cfg.hash == xxhash.xxh3_128_hexdigest(cfg.canonical_bytes())
    assert len(cfg.hash) == 32


def test_hash_ignores_file_format() -> None:
    hashes = {Config.fromfile(DATA / "formats" / n).hash for n in ("plain.json", "plain.yaml")}
    assert len(hashes) == 1


def test_hash_ignores_key_order_and_formatting() -> None:
    a = Config.fromstring("a = 1\nb = dict(x=1, y=2)\n", ".py")
    b = Config.fromstring("b = {'y': 2,\n     'x': 1}\na = 1  # comment\n", ".py")
    assert a.hash == b.hash


@pytest.mark.parametrize("other", ["a = 2\n", "a = 1.0\n", "a = True\n", "a = '1'\n", "a = [1]\n"])
def test_hash_changes_with_value_or_type(other: str) -> None:
    assert Config.fromstring("a = 1\n", ".py").hash != Config.fromstring(other, ".py").hash


def test_hash_changes_with_options() -> None:
    cfg = Config.fromstring("a = 1\n", ".py")
    before = cfg.hash
    cfg.merge_from_dict({"a": 2})
    assert cfg.hash != before


@pytest.mark.parametrize(
    "name", ["openmmlab/cls/resnet/resnet101_8xb32-coslr-lbs_in1k.py", "hash/unordered.py"]
)
def test_hash_is_the_same_across_processes_and_hash_seeds(name: str) -> None:
    path = DATA / name
    code = f"from trackcfg.config.config import Config; print(Config.fromfile({str(path)!r}).hash)"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("0", "1", "2")
    }
    assert seen == {Config.fromfile(path).hash}


def test_lineage_lists_every_file_in_resolution_order() -> None:
    cfg = Config.fromfile(DATA / "inherit" / "multi.py", root=DATA)
    assert [(e.path, e.included_by, e.order) for e in cfg.lineage] == [
        ("inherit/base_a.py", "inherit/multi.py", 0),
        ("inherit/base_b.yaml", "inherit/multi.py", 1),
        ("inherit/multi.py", None, 2),
    ]


def test_lineage_digest_is_xxh3_of_the_file_bytes() -> None:
    cfg = Config.fromfile(DATA / "inherit" / "multi.py", root=DATA)
    for entry in cfg.lineage:
        assert entry.digest == xxhash.xxh3_128_hexdigest((DATA / entry.path).read_bytes())


def test_lineage_hash_changes_when_a_base_file_changes(tmp_path: Path) -> None:
    (tmp_path / "base.py").write_text("a = 1\n")
    (tmp_path / "top.py").write_text("_base_ = './base.py'\n")
    before = Config.fromfile(tmp_path / "top.py")
    (tmp_path / "base.py").write_text("a = 1  # same value, other bytes\n")
    after = Config.fromfile(tmp_path / "top.py")
    assert before.hash == after.hash
    assert before.lineage_hash != after.lineage_hash


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_repo(path: Path) -> Path:
    """A real git repository with configs/base.py committed."""
    (path / "configs").mkdir(parents=True)
    (path / "configs" / "base.py").write_text("a = 1\n")
    git(path, "init", "-q")
    git(path, "add", "configs")
    git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    return path


def test_root_is_the_git_work_tree_holding_the_config(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    cfg = Config.fromfile(repo / "configs" / "base.py")
    assert cfg.root == repo
    assert cfg.lineage[0].path == "configs/base.py"
    assert cfg.provenance("a")[0].location.file == "configs/base.py"


def test_root_of_a_linked_worktree_is_that_worktree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"))  # its .git is a file
    cfg = Config.fromfile(tmp_path / "wt" / "configs" / "base.py")
    assert (cfg.root, cfg.lineage[0].path) == (tmp_path / "wt", "configs/base.py")


def test_fromstring_paths_are_relative_to_the_git_work_tree_holding_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    cfg = Config.fromstring("_base_ = '../configs/base.py'\n", ".py")
    assert cfg.root == repo
    assert [e.path for e in cfg.lineage] == ["configs/base.py", "<string>"]
    assert str(cfg.provenance("a")[0].location) == "configs/base.py:1"


def test_root_without_git_is_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.py").write_text("a = 1\n")
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile("a.py")
    if cfg.root != tmp_path:  # tmp dirs inside a git work tree have that as root
        pytest.skip("tmp_path is inside a git work tree")
    assert cfg.lineage[0].path == "a.py"


def test_lineage_hash_is_the_digest_of_the_canonical_lineage_rows() -> None:
    # Recorded in every run (tag, snapshot): the formula must never change.
    lineage = [
        LineageEntry("configs/_base_/a.py", "1" * 32, "configs/b.py", 0),
        LineageEntry("configs/b.py", "2" * 32, None, 1),
    ]
    rows = [
        ["configs/_base_/a.py", "1" * 32, "configs/b.py", 0],
        ["configs/b.py", "2" * 32, None, 1],
    ]
    assert hash_lineage(lineage) == digest(to_canonical_bytes({"lineage": rows}))
    assert hash_lineage(lineage) == "1ecd4afa93eeb1393bf9b71df31432f8"
