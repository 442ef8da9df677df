"""KeyPath: the dotted form users type, brackets for keys it cannot carry, parse errors."""

from __future__ import annotations

import pytest

from trackcfg.config.keypath import KeyPath, suggest

FORMS: list[tuple[tuple[str | int, ...], str]] = [
    ((), ""),
    (("model",), "model"),
    (("data", "train", "pipeline", 0, "type"), "data.train.pipeline.0.type"),
    ((0,), "0"),
    ((-1,), "-1"),
    (("a", "0"), "a['0']"),
    (("a", "-1"), "a['-1']"),
    (("x.y", 2), "['x.y'].2"),
    (("",), "['']"),
    (("it's",), '["it\'s"]'),
    (("a]b",), "['a]b']"),
    (("back\\slash",), "back\\slash"),
    (("a b", "é"), "a b.é"),
]


@pytest.mark.parametrize(("parts", "text"), FORMS)
def test_keypath_prints_and_parses(parts: tuple[str | int, ...], text: str) -> None:
    assert str(KeyPath(parts)) == text
    assert KeyPath.parse(text) == KeyPath(parts)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a[0].b", ("a", 0, "b")),
        ('a["x"]', ("a", "x")),
        ("a[1][2]", ("a", 1, 2)),
        ("007", (7,)),
    ],
)
def test_keypath_parses_alternative_spellings(text: str, parts: tuple[str | int, ...]) -> None:
    assert KeyPath.parse(text).parts == parts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.", "key path 'a.' ends with '.'"),
        ("a..b", "empty element at position 2 in key path 'a..b'"),
        (".a", "empty element at position 0 in key path '.a'"),
        ("a[b]", "bad index [b] in key path 'a[b]'"),
        ("a[0", "unclosed '[' in key path 'a[0'"),
        ("a['x", 'unclosed string at position 2 in key path "a[\'x"'),
        ("a['x'", "expected ']' at position 5 in key path \"a['x'\""),
        ("a]b", "expected '.' or '[' at position 1 in key path 'a]b'"),
        ("a[0]b", "expected '.' or '[' at position 4 in key path 'a[0]b'"),
    ],
)
def test_malformed_keypath_is_a_value_error(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        KeyPath.parse(text)
    assert str(info.value) == message


def test_keypath_helpers() -> None:
    path = KeyPath.parse("a.b") / 0
    assert path.parts == ("a", "b", 0)
    assert path.parent == KeyPath(("a", "b"))
    assert path.startswith(KeyPath(("a",)))
    assert not path.startswith(KeyPath(("b",)))
    assert len(path) == 3 and list(path) == ["a", "b", 0]


def test_suggest_returns_close_matches_best_first() -> None:
    assert suggest("lr", ["lr_config", "l", "momentum", "lr_"]) == ["lr_", "l"]
