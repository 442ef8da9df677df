"""`{{ fileDirname }}` keeps mmengine's absolute value, and hashes without it (issue 16, 5).

A run's identity must not depend on where the project is checked out: resume and
reproduce re-hash the config in another checkout (or a snapshot's temp dir).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trackcfg.config.canonical import (
    RootedText,
    from_canonical_bytes,
    root_parts,
    to_canonical_bytes,
)
from trackcfg.config.config import Config

DATA = Path(__file__).parents[2] / "data" / "configs"


def checkout(directory: Path) -> Path:
    """A project (a git work tree: it has `.git`) holding the dirname/ configs."""
    (directory / ".git").mkdir(parents=True)
    shutil.copytree(DATA / "dirname", directory / "configs")
    (directory / "configs" / "file.py").write_text("here = __file__\n")
    return directory


@pytest.mark.parametrize("name", ["base.py", "child.yaml", "child.json", "file.py"])
def test_a_checkout_at_another_path_hashes_the_same(tmp_path: Path, name: str) -> None:
    one = checkout(tmp_path / "one")
    two = checkout(tmp_path / "elsewhere" / "deeper" / "two")
    first = Config.fromfile(one / "configs" / name)
    second = Config.fromfile(two / "configs" / name)
    assert first.to_dict() != second.to_dict()  # the values are the absolute paths
    assert first.hash == second.hash


def test_values_keep_the_absolute_path_as_in_mmengine(tmp_path: Path) -> None:
    project = checkout(tmp_path / "p")
    cfg = Config.fromfile(project / "configs" / "child.yaml")
    configs = (project / "configs").as_posix()
    assert cfg.to_dict() == {
        "data_root": f"{configs}/../data",
        "work_dir": f"{configs}/work/base",
        "ann_file": f"{configs}/annotations.json",
    }


def test_the_canonical_form_records_the_paths_relative_to_the_root(tmp_path: Path) -> None:
    project = checkout(tmp_path / "p")
    data = Config.fromfile(project / "configs" / "base.py").canonical_bytes()
    assert b'"data_root":{"!rooted":["","/configs/../data"]}' in data
    assert str(tmp_path).encode() not in data
    back = from_canonical_bytes(data, root="/srv/checkout")
    assert back["data_root"] == "/srv/checkout/configs/../data"
    assert to_canonical_bytes(back) == data


def test_a_changed_path_below_the_root_still_changes_the_hash(tmp_path: Path) -> None:
    one = checkout(tmp_path / "one")
    two = checkout(tmp_path / "two")
    text = (two / "configs" / "base.py").read_text().replace("../data", "../other")
    (two / "configs" / "base.py").write_text(text)
    assert (
        Config.fromfile(one / "configs" / "base.py").hash
        != Config.fromfile(two / "configs" / "base.py").hash
    )


def test_a_config_without_file_dirname_hashes_its_paths_as_written(tmp_path: Path) -> None:
    # Only configs that use the feature hash root-relative: no other hash changes.
    project = checkout(tmp_path / "p")
    (project / "configs" / "plain.py").write_text(f"root = {str(project)!r}\n")
    cfg = Config.fromfile(project / "configs" / "plain.py")
    assert cfg.hash == Config({"root": str(project)}).hash


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("/r/p", ("", "")),
        ("/r/p/configs", ("", "/configs")),
        ("--dir=/r/p/a:/r/p/b", ("--dir=", "/a:", "/b")),
        ("/r/pp/configs", None),  # a longer name
        ("/x/r/p/configs", None),  # inside another path
        ("/r/p.bak", None),
        ("relative/r/p", None),
    ],
)
def test_only_whole_root_paths_are_taken_out(text: str, parts: tuple[str, ...] | None) -> None:
    assert root_parts(text, "/r/p") == parts


def test_rooted_text_round_trips_and_pickles() -> None:
    import pickle

    text = RootedText(("", "/configs"), "/r/p")
    assert pickle.loads(pickle.dumps(text)).parts == ("", "/configs")
    assert str(pickle.loads(pickle.dumps(text))) == "/r/p/configs"


def test_a_snapshot_re_resolves_to_the_hash_of_the_run(tmp_path: Path) -> None:
    # What `resume` checks: the lineage restored in a temp dir hashes like the run.
    from trackcfg.tracking.environment import Environment
    from trackcfg.tracking.gitstate import capture_git_state
    from trackcfg.tracking.snapshot import read_snapshot, seal_snapshot, write_snapshot

    project = checkout(tmp_path / "p")
    cfg = Config.fromfile(project / "configs" / "child.yaml")
    directory = write_snapshot(
        tmp_path / "snapshot",
        cfg,
        cfg_options=[],
        git=capture_git_state(project),
        environment=Environment("3.11", "CPython", "linux", "x86_64"),  # no torch import
    )
    seal_snapshot(directory)
    assert read_snapshot(directory).resolve(tmp_path / "restored").hash == cfg.hash
    assert read_snapshot(directory).to_config().hash == cfg.hash  # what `resume` rebuilds
