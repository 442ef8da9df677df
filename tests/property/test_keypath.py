"""KeyPath: printing then parsing gives the same path, for any str/int parts."""

from __future__ import annotations

from hypothesis import given

from tests.strategies import key_paths
from trackcfg.config.keypath import KeyPath


@given(key_paths)
def test_keypath_format_then_parse_is_the_identity(path: KeyPath) -> None:
    assert KeyPath.parse(str(path)) == path


@given(key_paths)
def test_keypath_prints_like_the_cfg_options_form_when_parts_are_plain(path: KeyPath) -> None:
    text = str(path)
    if all(isinstance(p, int) or (p.isidentifier()) for p in path.parts):
        assert text == ".".join(str(p) for p in path.parts)
