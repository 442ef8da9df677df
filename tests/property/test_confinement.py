"""Path confinement accepts exactly the normalised relative paths, which stay inside."""

from __future__ import annotations

import itertools
import os.path
import posixpath
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.property.strategies_paths import path_texts, relative_paths
from trackcfg.errors import SnapshotError
from trackcfg.tracking.confinement import parse_relative_path, write_confined


def _is_name(part: str) -> bool:
    return part not in ("", ".", "..") and "\\" not in part and "\0" not in part


@given(path_texts)
def test_accepts_exactly_paths_whose_every_part_is_a_name(text: str) -> None:
    expected = all(_is_name(part) for part in text.split("/"))
    try:
        parts = parse_relative_path(text)
    except SnapshotError:
        assert not expected
    else:
        assert expected
        assert "/".join(parts) == text == posixpath.normpath(text)


@given(st.integers(min_value=0, max_value=3), path_texts)
def test_climbing_is_accepted_only_as_leading_parts(up: int, text: str) -> None:
    climbed = "../" * up + text
    given_parts = climbed.split("/")
    names = list(itertools.dropwhile(lambda part: part == "..", given_parts))
    expected = bool(names) and all(_is_name(part) for part in names)
    try:
        parts = parse_relative_path(climbed, allow_climb=True)
    except SnapshotError:
        assert not expected
    else:
        assert expected
        assert parts == tuple(given_parts)


@given(relative_paths)
def test_an_accepted_path_stays_inside_its_root(text: str) -> None:
    root = "/srv/root"
    joined = os.path.normpath(os.path.join(root, *parse_relative_path(text)))
    assert joined.startswith(root + "/")


@settings(max_examples=40, deadline=None)
@given(relative_paths)
def test_write_confined_writes_exactly_that_file(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        try:
            written = write_confined(root, text, b"data")
        except OSError as error:  # a name the file system refuses (too long, bad encoding)
            pytest.skip(f"file system refused {text!r}: {error}")
        files = [p for p in Path(tmp).rglob("*") if p.is_file()]
        assert files == [written] == [root.joinpath(*text.split("/"))]
        assert written.read_bytes() == b"data"
