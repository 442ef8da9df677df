"""Canonical bytes: the typed encoding table, the document envelope, errors and speed."""

from __future__ import annotations

import collections
import enum
import json
import math
import os.path
import pathlib
from typing import Any

import pytest

from trackcfg.config.canonical import (
    CANONICAL_VERSION,
    QualifiedName,
    decode_value,
    digest,
    encode_value,
    from_canonical_bytes,
    to_canonical_bytes,
)
from trackcfg.errors import CanonicalizationError, ConfigImportError


class Mode(enum.Enum):
    FAST = "fast"


ENCODINGS: list[tuple[object, object]] = [
    (None, None),
    (True, True),
    (False, False),
    (0, 0),
    (-7, -7),
    (2**80, 2**80),
    (1.0, 1.0),
    (-0.0, -0.0),
    (math.inf, {"!float": "inf"}),
    (-math.inf, {"!float": "-inf"}),
    (math.nan, {"!float": "nan"}),
    ("x", "x"),
    ([1, "a"], [1, "a"]),
    ((1, 2), {"!tuple": [1, 2]}),
    ((), {"!tuple": []}),
    ({"a": 1}, {"a": 1}),
    ({"!a": 1}, {"!!a": 1}),
    ({"!!tuple": 1}, {"!!!tuple": 1}),
    ({"!a": 1, "b": 2}, {"!a": 1, "b": 2}),
    ({1: "a"}, {"!dict": [[1, "a"]]}),
    ({3, 1, 2}, {"!set": [1, 2, 3]}),
    (frozenset({"b", "a"}), {"!frozenset": ["a", "b"]}),
    (b"\x00\xff", {"!bytes": "00ff"}),
    (pathlib.PurePosixPath("a/b"), {"!path": "a/b"}),
    (collections.OrderedDict, {"!class": "collections:OrderedDict"}),
    (math.sqrt, {"!function": "math:sqrt"}),
    (os.path.join, {"!function": "posixpath:join"}),
    (Mode.FAST, {"!enum": f"{__name__}:Mode.FAST"}),
    (collections.OrderedDict(b=1, a=2), {"b": 1, "a": 2}),
]


# Ids by index and type: a repr may hold an address or a set's hash order, and pytest-xdist
# needs every worker to collect the same ids.
@pytest.mark.parametrize(
    ("value", "encoded"),
    ENCODINGS,
    ids=[f"{i}-{type(value).__name__}" for i, (value, _) in enumerate(ENCODINGS)],
)
def test_encode_value_uses_the_documented_typed_form(value: object, encoded: object) -> None:
    assert encode_value(value) == encoded


def test_canonical_bytes_are_sorted_compact_ascii_and_versioned() -> None:
    data = to_canonical_bytes({"b": [1, 2.5], "a": {"é": (True, None)}})
    assert data == (
        b'{"config":{"a":{"\\u00e9":{"!tuple":[true,null]}},"b":[1,2.5]},'
        b'"format":"trackcfg.canonical","version":' + str(CANONICAL_VERSION).encode() + b"}"
    )


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ({"a": 1}, {"a": 1.0}),
        ({"a": 1}, {"a": True}),
        ({"a": 0}, {"a": False}),
        ({"a": [1]}, {"a": (1,)}),
        ({"a": 0.0}, {"a": -0.0}),
        ({"a": "1"}, {"a": 1}),
        ({"a": None}, {"a": "None"}),
        ({"a": {"!tuple": [1]}}, {"a": (1,)}),
        ({"a": {1: 2}}, {"a": {"1": 2}}),
        ({"a": math.sqrt}, {"a": "math:sqrt"}),
        ({"a": {1, 2}}, {"a": frozenset({1, 2})}),
        ({"a": {1, 2}}, {"a": [1, 2]}),
    ],
)
def test_canonical_bytes_distinguish_types(left: dict[str, Any], right: dict[str, Any]) -> None:
    assert to_canonical_bytes(left) != to_canonical_bytes(right)


def test_canonical_bytes_ignore_key_order_and_mapping_type() -> None:
    a = {"x": 1, "y": {"p": 1, "q": 2}}
    b = collections.OrderedDict(y=collections.OrderedDict(q=2, p=1), x=1)
    assert to_canonical_bytes(a) == to_canonical_bytes(b)


def test_from_canonical_bytes_returns_qualified_names_without_importing() -> None:
    data = to_canonical_bytes({"cls": collections.OrderedDict, "fn": math.sqrt, "m": Mode.FAST})
    config = from_canonical_bytes(data)
    assert config == {
        "cls": "collections:OrderedDict",
        "fn": "math:sqrt",
        "m": f"{__name__}:Mode.FAST",
    }
    assert [type(v) for v in config.values()] == [QualifiedName] * 3
    assert [v.kind for v in config.values()] == ["class", "function", "enum"]  # type: ignore[attr-defined]
    assert to_canonical_bytes(config) == data


def test_from_canonical_bytes_resolve_imports_the_objects() -> None:
    data = to_canonical_bytes({"cls": collections.OrderedDict, "m": Mode.FAST})
    assert from_canonical_bytes(data, resolve=True) == {
        "cls": collections.OrderedDict,
        "m": Mode.FAST,
    }


def test_resolve_of_a_missing_module_is_an_import_error() -> None:
    data = to_canonical_bytes({"cls": QualifiedName("no_such_module_xyz:Thing")})
    with pytest.raises(ConfigImportError) as info:
        from_canonical_bytes(data, resolve=True)
    assert str(info.value).startswith(
        "cannot import class 'no_such_module_xyz:Thing': No module named 'no_such_module_xyz'"
    )


def test_decode_value_inverts_encode_value_for_every_documented_type() -> None:
    value = [v for v, _ in ENCODINGS if not isinstance(v, type | enum.Enum) and not callable(v)]
    assert encode_value(decode_value(encode_value(value))) == encode_value(value)


def test_huge_ints_round_trip() -> None:
    value = {"n": -(10**5000) - 7}
    assert from_canonical_bytes(to_canonical_bytes(value)) == value


def _make_local_function() -> object:
    def local() -> None: ...

    return local


class _Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"model": {"act": lambda x: x}},
            "model.act: function tests.unit.config.test_canonical:<lambda> is local or a "
            "lambda and has no import path",
        ),
        (
            {"a": [0, {"b": _Opaque()}]},
            "a.1.b: cannot encode a value of type _Opaque: Opaque()",
        ),
        (
            {"fn": _make_local_function()},
            "fn: function tests.unit.config.test_canonical:_make_local_function.<locals>.local "
            "is local or a lambda and has no import path",
        ),
        (
            {"a": {7: [complex(1, 2)]}},
            "a.7.0: cannot encode a value of type complex: (1+2j)",
        ),
        (
            {"x.y": 1j},
            "['x.y']: cannot encode a value of type complex: 1j",
        ),
    ],
)
def test_unencodable_value_names_its_key_path(config: dict[str, Any], message: str) -> None:
    with pytest.raises(CanonicalizationError) as info:
        to_canonical_bytes(config)
    first_line = str(info.value).splitlines()[0]
    assert first_line == message.replace("tests.unit.config.test_canonical", __name__)
    assert info.value.key_path == message.split(": ")[0]
    assert isinstance(info.value, TypeError)


def test_canonical_bytes_of_a_non_mapping_is_an_error() -> None:
    with pytest.raises(CanonicalizationError) as info:
        to_canonical_bytes([1, 2])  # type: ignore[arg-type]
    assert str(info.value) == "expected a mapping of config keys to values, got list"


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b'{"config":{},"format":"other","version":1}',
        b'{"config":[],"format":"trackcfg.canonical","version":1}',
        b'{"config":{"a":{"!nope":1}},"format":"trackcfg.canonical","version":1}',
    ],
)
def test_from_canonical_bytes_rejects_other_documents(data: bytes) -> None:
    with pytest.raises(ValueError):
        from_canonical_bytes(data)


def test_from_canonical_bytes_rejects_another_version() -> None:
    data = json.dumps(
        {"config": {}, "format": "trackcfg.canonical", "version": CANONICAL_VERSION + 1}
    ).encode()
    with pytest.raises(ValueError, match="this trackcfg reads version"):
        from_canonical_bytes(data)


def test_digest_is_xxh3_128_hex() -> None:
    assert digest(b"") == "99aa06d3014798d86001c324468d497f"
    assert len(digest(to_canonical_bytes({"a": 1}))) == 32


def test_numpy_scalars_hash_like_python_scalars() -> None:
    np = pytest.importorskip("numpy")
    assert to_canonical_bytes({"a": np.int64(3), "b": np.float32(0.5)}) == to_canonical_bytes(
        {"a": 3, "b": 0.5}
    )
