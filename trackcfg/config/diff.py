"""Structural diff of two resolved configs as plain data (rendering lives in the CLI).

``diff(a, b)`` returns ``Change`` records; ``apply_changes(a, diff(a, b))`` gives ``b``.

Rules a reader would not guess:

* Values are compared by their canonical encoding (``canonical.encode_value``), so the
  diff sees exactly what the hash sees: ``1``, ``1.0`` and ``True`` differ (a
  ``TYPE_CHANGED``), as do ``[1]`` and ``(1,)``, and ``0.0`` and ``-0.0`` (a
  ``CHANGED``); ``nan`` equals ``nan``; a class equals the ``QualifiedName`` read back
  from a snapshot.
* Dicts (any ``Mapping``) are compared key by key, recursively: a key only in ``b`` is
  ``ADDED`` with its whole value, a key only in ``a`` is ``REMOVED``.
* Two lists (or two tuples) *of the same length* are compared element by element
  (``pipeline.2.scale`` changed); lists of different lengths are one ``CHANGED`` of the
  whole value, because an inserted step would otherwise show as every later element
  changing.
* A dict with keys other than ``str``/``int`` is compared as one value (a key path
  cannot name such keys).
* The result is sorted by key path (ints before strs at each level), so it is
  deterministic; no change's key path is a prefix of another's.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from trackcfg.config.canonical import encode_value
from trackcfg.config.keypath import KeyPath
from trackcfg.errors import ConfigKeyError, ConfigMergeError

__all__ = ["ABSENT", "Change", "ChangeKind", "apply_changes", "diff"]


class ChangeKind(enum.Enum):
    """What happened to a key path between two configs."""

    ADDED = "added"  # only in the new config
    REMOVED = "removed"  # only in the old config
    CHANGED = "changed"  # same type, different value
    TYPE_CHANGED = "type_changed"  # different type (int vs float vs bool, list vs tuple, ...)


class _Absent:
    """The type of ``ABSENT``: the old value of an ADDED key, the new of a REMOVED one."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __reduce__(self) -> str:
        return "ABSENT"


#: Marks the missing side of an ADDED or REMOVED change.
ABSENT: Final = _Absent()


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two configs.

    Attributes:
        key_path: Where the values differ.
        kind: What kind of difference.
        old: The value in the old config (``ABSENT`` for ADDED).
        new: The value in the new config (``ABSENT`` for REMOVED).
    """

    key_path: KeyPath
    kind: ChangeKind
    old: object
    new: object


def _category(value: object) -> str:
    """The type as the canonical form sees it: 'dict', 'list', 'int', 'class', ..."""
    if isinstance(value, Mapping):
        return "dict"
    if isinstance(value, list):
        return "list"
    if isinstance(value, tuple):
        return "tuple"
    encoded = encode_value(value)
    if isinstance(encoded, dict):
        (tag,) = encoded
        return str(tag)[1:]  # "!float" (non-finite) -> "float", "!class" -> "class"
    if encoded is None:
        return "none"
    return type(encoded).__name__


def _canonical(value: object) -> str:
    # Text, not the encoded objects: 0.0 == -0.0 in Python but not in the hash.
    return json.dumps(encode_value(value), sort_keys=True, separators=(",", ":"))


def _has_path_keys(mapping: Mapping[object, object]) -> bool:
    return all(isinstance(k, str | int) and not isinstance(k, bool) for k in mapping)


def _walk(a: object, b: object, path: tuple[str | int, ...], out: list[Change]) -> None:
    if (
        isinstance(a, Mapping)
        and isinstance(b, Mapping)
        and _has_path_keys(a)
        and _has_path_keys(b)
    ):
        for key, value in a.items():
            if key not in b:
                out.append(Change(KeyPath((*path, key)), ChangeKind.REMOVED, value, ABSENT))
            else:
                _walk(value, b[key], (*path, key), out)
        for key, value in b.items():
            if key not in a:
                out.append(Change(KeyPath((*path, key)), ChangeKind.ADDED, ABSENT, value))
        return
    kind_a, kind_b = _category(a), _category(b)
    if kind_a != kind_b:
        out.append(Change(KeyPath(path), ChangeKind.TYPE_CHANGED, a, b))
        return
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        for index, (item_a, item_b) in enumerate(zip(a, b, strict=True)):
            _walk(item_a, item_b, (*path, index), out)
        return
    if _canonical(a) != _canonical(b):
        out.append(Change(KeyPath(path), ChangeKind.CHANGED, a, b))


def _sort_key(change: Change) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in change.key_path.parts)


def diff(a: Mapping[str, object], b: Mapping[str, object]) -> list[Change]:
    """Every difference between two resolved configs, sorted by key path.

    Args:
        a: The old config.
        b: The new config.

    Returns:
        The changes; empty when ``a`` and ``b`` hash the same.

    Raises:
        CanonicalizationError: A value cannot be encoded (so it cannot be compared).

    Example:
        >>> for change in diff({"lr": 0.1, "steps": [8, 11]}, {"lr": 0.1, "steps": [8, 12],
        ...                                                   "seed": 0}):
        ...     print(change.key_path, change.kind.name, change.old, change.new)
        seed ADDED ABSENT 0
        steps.1 CHANGED 11 12
    """
    out: list[Change] = []
    _walk(a, b, (), out)
    out.sort(key=_sort_key)
    return out


def _apply_one(node: object, parts: tuple[str | int, ...], change: Change, depth: int) -> object:
    """A copy of ``node`` with ``change`` applied at ``parts[depth:]``."""
    head = parts[depth]
    last = depth == len(parts) - 1
    where = str(KeyPath(parts[: depth + 1]))
    if isinstance(node, Mapping):
        out = dict(node)
        if last:
            if change.kind is ChangeKind.ADDED:
                if head in out:
                    raise ConfigMergeError("cannot add a key that already exists", key_path=where)
                out[head] = change.new
                return out
            if head not in out:
                raise ConfigKeyError(
                    f"cannot apply a {change.kind.value} change: no such key", key_path=where
                )
            _check_old(out[head], change, where)
            if change.kind is ChangeKind.REMOVED:
                del out[head]
            else:
                out[head] = change.new
            return out
        if head not in out:
            raise ConfigKeyError("cannot apply a change below a missing key", key_path=where)
        out[head] = _apply_one(out[head], parts, change, depth + 1)
        return out
    if isinstance(node, list | tuple) and isinstance(head, int) and -len(node) <= head < len(node):
        items = list(node)
        if last:
            if change.kind in (ChangeKind.ADDED, ChangeKind.REMOVED):
                raise ConfigMergeError(
                    f"cannot apply a {change.kind.value} change to a list element",
                    key_path=where,
                )
            _check_old(items[head], change, where)
            items[head] = change.new
        else:
            items[head] = _apply_one(items[head], parts, change, depth + 1)
        return tuple(items) if isinstance(node, tuple) else items
    raise ConfigKeyError(
        f"cannot apply a change below a value of type {type(node).__name__}",
        key_path=str(KeyPath(parts[:depth])),
    )


def _check_old(current: object, change: Change, where: str) -> None:
    if _canonical(current) != _canonical(change.old):
        raise ConfigMergeError(
            f"expected the old value {change.old!r} here, found {current!r}",
            key_path=where,
            hint="the changes were computed against a different config",
        )


def apply_changes(a: Mapping[str, object], changes: list[Change]) -> dict[str, object]:
    """Apply changes (from ``diff(a, b)``) to a copy of ``a``; ``a`` is not modified.

    Args:
        a: The old config.
        changes: Changes whose ``old`` values match ``a``.

    Returns:
        The new config as plain dicts (tuples stay tuples); new values are shared, not
        copied.

    Raises:
        ConfigKeyError: A change's key path does not exist in ``a``.
        ConfigMergeError: A change's ``old`` value is not what ``a`` holds, or an
            ADDED key already exists.
    """
    result: object = dict(a)
    for change in changes:
        parts = change.key_path.parts
        if not parts:
            raise ConfigKeyError("cannot apply a change to the whole config")
        result = _apply_one(result, parts, change, 0)
    return result  # type: ignore[return-value]
