"""Structural diff: kinds, key paths, ordering, list rules, and apply_changes."""

from __future__ import annotations

import collections
import math
from typing import Any

import pytest

from trackcfg.config.canonical import QualifiedName
from trackcfg.config.diff import ABSENT, Change, ChangeKind, apply_changes, diff
from trackcfg.config.keypath import KeyPath
from trackcfg.errors import ConfigKeyError, ConfigMergeError

K = KeyPath.parse
ADDED, REMOVED, CHANGED, TYPE_CHANGED = (
    ChangeKind.ADDED,
    ChangeKind.REMOVED,
    ChangeKind.CHANGED,
    ChangeKind.TYPE_CHANGED,
)

CASES: list[tuple[dict[str, Any], dict[str, Any], list[Change]]] = [
    ({"a": 1}, {"a": 1}, []),
    ({"a": 1}, {"a": 2}, [Change(K("a"), CHANGED, 1, 2)]),
    ({"a": 1}, {"a": 1.0}, [Change(K("a"), TYPE_CHANGED, 1, 1.0)]),
    ({"a": 1}, {"a": True}, [Change(K("a"), TYPE_CHANGED, 1, True)]),
    ({"a": [1]}, {"a": (1,)}, [Change(K("a"), TYPE_CHANGED, [1], (1,))]),
    ({"a": 0.0}, {"a": -0.0}, [Change(K("a"), CHANGED, 0.0, -0.0)]),
    ({"a": 1.0}, {"a": math.inf}, [Change(K("a"), CHANGED, 1.0, math.inf)]),
    ({"a": {"b": 1}}, {"a": 5}, [Change(K("a"), TYPE_CHANGED, {"b": 1}, 5)]),
    ({"a": {"b": 1}}, {"a": {}}, [Change(K("a.b"), REMOVED, 1, ABSENT)]),
    ({}, {"a": {"b": 1}}, [Change(K("a"), ADDED, ABSENT, {"b": 1})]),
    (
        {"p": [{"t": "A", "s": 1}, {"t": "B"}]},
        {"p": [{"t": "A", "s": 2}, {"t": "C"}]},
        [Change(K("p.0.s"), CHANGED, 1, 2), Change(K("p.1.t"), CHANGED, "B", "C")],
    ),
    ({"p": [1, 2]}, {"p": [1, 2, 3]}, [Change(K("p"), CHANGED, [1, 2], [1, 2, 3])]),
    ({"k": {1: "a"}}, {"k": {1: "b"}}, [Change(KeyPath(("k", 1)), CHANGED, "a", "b")]),
    (
        {"k": {1: "a"}},
        {"k": {"1": "a"}},
        [
            Change(KeyPath(("k", 1)), REMOVED, "a", ABSENT),
            Change(KeyPath(("k", "1")), ADDED, ABSENT, "a"),
        ],
    ),
    (
        {"k": {(1, 2): "a"}},
        {"k": {(1, 2): "b"}},
        [
            Change(K("k"), CHANGED, {(1, 2): "a"}, {(1, 2): "b"}),
        ],
    ),
]


@pytest.mark.parametrize(("a", "b", "changes"), CASES)
def test_diff(a: dict[str, Any], b: dict[str, Any], changes: list[Change]) -> None:
    assert diff(a, b) == changes


@pytest.mark.parametrize(("a", "b", "changes"), CASES)
def test_apply_changes_turns_a_into_b(
    a: dict[str, Any], b: dict[str, Any], changes: list[Change]
) -> None:
    assert apply_changes(a, diff(a, b)) == b


def test_nan_equals_nan_and_a_class_equals_its_qualified_name() -> None:
    a = {"x": math.nan, "cls": collections.OrderedDict}
    b = {"x": math.nan, "cls": QualifiedName("collections:OrderedDict")}
    assert diff(a, b) == []


def test_changes_are_sorted_by_key_path_with_ints_before_strs() -> None:
    a = {"z": 1, "a": {"y": 1, "b": 1}, "l": [0, 0, 0]}
    b = {"z": 2, "a": {"y": 2, "b": 2}, "l": [0, 1, 2]}
    assert [str(c.key_path) for c in diff(a, b)] == ["a.b", "a.y", "l.1", "l.2", "z"]


def test_apply_changes_does_not_mutate_its_input_and_keeps_tuples() -> None:
    a = {"t": (1, {"x": 1}), "d": {"k": 1}}
    b = {"t": (1, {"x": 2}), "d": {"k": 1, "n": 0}}
    result = apply_changes(a, diff(a, b))
    assert result == b and isinstance(result["t"], tuple)
    assert a == {"t": (1, {"x": 1}), "d": {"k": 1}}


@pytest.mark.parametrize(
    ("a", "change", "error", "message"),
    [
        (
            {"a": 1},
            Change(K("b"), CHANGED, 1, 2),
            ConfigKeyError,
            "b: cannot apply a changed change: no such key",
        ),
        (
            {"a": 1},
            Change(K("a"), CHANGED, 5, 2),
            ConfigMergeError,
            "a: expected the old value 5 here, found 1\n"
            "  hint: the changes were computed against a different config",
        ),
        (
            {"a": 1},
            Change(K("a"), ADDED, ABSENT, 2),
            ConfigMergeError,
            "a: cannot add a key that already exists",
        ),
        (
            {"a": [1]},
            Change(K("a.0"), REMOVED, 1, ABSENT),
            ConfigMergeError,
            "a.0: cannot apply a removed change to a list element",
        ),
        (
            {"a": 1},
            Change(K("a.b"), CHANGED, 1, 2),
            ConfigKeyError,
            "a: cannot apply a change below a value of type int",
        ),
        (
            {"a": 1},
            Change(K("x.y"), CHANGED, 1, 2),
            ConfigKeyError,
            "x: cannot apply a change below a missing key",
        ),
    ],
)
def test_apply_changes_errors(
    a: dict[str, Any], change: Change, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        apply_changes(a, [change])
    assert str(info.value) == message


def test_absent_is_a_singleton_with_a_readable_repr() -> None:
    import pickle

    assert repr(ABSENT) == "ABSENT"
    assert pickle.loads(pickle.dumps(ABSENT)) is ABSENT
