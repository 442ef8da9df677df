"""blame/compare records and their rendering, on small configs written to a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from trackcfg.cli import render
from trackcfg.cli.main import cli
from trackcfg.errors import ConfigKeyError
from trackcfg.session import audit
from trackcfg.session.target import load_view


@pytest.fixture
def configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "base.py").write_text("opt = dict(type='SGD', lr=0.1, momentum=0.9)\nseed = 1\n")
    (tmp_path / "child.py").write_text(
        "_base_ = './base.py'\nopt = dict(_delete_=True, type='Adam', lr=0.01)\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_blame_of_a_prefix_lists_every_leaf_below_it(configs: Path) -> None:
    report = audit.blame(load_view("child.py"), "opt")
    assert [e.key_path_text for e in report.entries] == ["opt.type", "opt.lr", "opt.momentum"]
    assert report.entries[2].value is audit.MISSING
    assert [a.kind.value for a in report.entries[2].assignments] == ["set", "delete"]


def test_blame_of_an_unknown_key_suggests_close_matches(configs: Path) -> None:
    with pytest.raises(ConfigKeyError) as info:
        audit.blame(load_view("child.py"), "opt.lrr")
    assert info.value.key_path == "opt.lrr"
    assert info.value.hint == "did you mean 'opt.lr'?"


def test_compare_names_the_location_on_each_side(configs: Path) -> None:
    comparison = audit.compare(load_view("base.py"), load_view("child.py"))
    kinds = {d.key_path_text: (d.kind, d.a, d.b) for d in comparison.differences}
    kind, a, b = kinds["opt.momentum"]
    assert kind == "removed"
    assert a is not None and (str(a.location), a.kind) == ("base.py:1", "set")
    assert b is not None and (str(b.location), b.kind) == ("child.py:2", "delete")


def test_compare_locates_a_dict_replaced_by_a_value_on_both_sides(configs: Path) -> None:
    # Side a has no history for the dict itself (leaves only): its first leaf answers;
    # side b set the value at that key path.
    (configs / "flat.py").write_text("seed = 1\n\nopt = 'SGD'\n")
    comparison = audit.compare(load_view("base.py"), load_view("flat.py"))
    (difference,) = (d for d in comparison.differences if d.key_path_text == "opt")
    assert difference.a is not None and str(difference.a.location) == "base.py:1"
    assert difference.b is not None and str(difference.b.location) == "flat.py:3"


def test_rendered_blame_aligns_locations_and_kinds(configs: Path) -> None:
    text = render.render_blame(audit.blame(load_view("child.py"), "opt.lr"))
    assert text.splitlines() == [
        "opt.lr = 0.01",
        "  base.py:1   set     0.1",
        "  child.py:2  delete",
        "  child.py:2  set     0.01",
    ]


@pytest.mark.parametrize(
    ("a", "b", "status"), [("child.py", "child.py", 0), ("base.py", "child.py", 1)]
)
def test_diff_exit_status_through_click(configs: Path, a: str, b: str, status: int) -> None:
    result = CliRunner().invoke(cli, ["diff", a, b])
    assert result.exit_code == status


def test_compare_lists_lineage_files_that_differ(configs: Path) -> None:
    before = load_view("child.py")
    (configs / "base.py").write_text("opt = dict(type='SGD', lr=0.2, momentum=0.9)\nseed = 1\n")
    comparison = audit.compare(before, load_view("child.py"))
    assert comparison.differences == ()  # child.py deletes opt: the edit is invisible
    assert [f.path for f in comparison.files] == ["base.py"]
    lines = render.render_comparison(comparison).splitlines()
    assert lines[-3:-1] == ["no differences", "lineage files that differ:"]
    assert lines[-1].split()[0] == "base.py"
