"""Merge a child config into its base, with `_delete_`, emitting one Assignment per leaf.

``merge(base, child, origin)`` never mutates its arguments. Rules (mmengine's):

* a dict merges into a dict key by key, recursively; any other value replaces;
* ``_delete_=True`` in a child dict replaces the base value instead of merging; the
  base's leaves get a DELETE assignment at the line of the dict carrying ``_delete_``;
* a dict merged into a base value that is not a dict is an error (unless
  ``_delete_=True``), as in mmengine;
* with ``list_keys`` (``merge_from_dict``), digit keys index into a base list (or
  tuple: mmengine refuses tuples, we keep the tuple type).

Where we differ from mmengine, on purpose: ``_delete_`` never leaks into the result
(mmengine keeps it when the base has no such key, or inside lists), and a
``_delete_`` whose value is not a bool is an error (mmengine treats it as truthy).

A *leaf* is any value that is not a non-empty dict (lists are leaves: they are
replaced, never merged). Provenance records leaves only, so the last assignment of a
leaf is always its resolved value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from trackcfg.config.keypath import KeyParts, KeyPath
from trackcfg.config.location import Assignment, AssignmentKind, Location
from trackcfg.errors import ConfigMergeError, ConfigOptionError

__all__ = [
    "DELETE_KEY",
    "ChildOrigin",
    "MergeResult",
    "descend",
    "iter_leaves",
    "merge",
    "to_plain",
]

Record = tuple[KeyParts, Assignment]

DELETE_KEY = "_delete_"
_MISSING = object()
_SCALARS = frozenset({str, int, float, bool, type(None)})


class ChildOrigin(Protocol):
    """Tells the merge where each child key path was written and how."""

    def location(self, parts: KeyParts) -> Location:
        """Where ``parts`` (or its nearest written ancestor) is assigned."""
        ...

    def assignment(
        self, parts: KeyParts, existed: bool, value: object
    ) -> tuple[AssignmentKind, Location | None]:
        """The kind of assignment for a leaf and, for a substitution, its source."""
        ...


@dataclass(frozen=True, slots=True)
class MergeResult:
    """The merged config and the assignments the merge made, in order."""

    data: dict[str, object]
    records: list[Record]


def descend(value: object, part: str | int) -> object:
    """``value[part]`` for a mapping key or an in-range list/tuple index.

    Raises:
        KeyError: ``value`` has no such key or index.
    """
    if isinstance(value, Mapping):
        if part in value:
            return value[part]
    elif isinstance(value, list | tuple) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    raise KeyError(part)


def iter_leaves(value: object, parts: KeyParts = ()) -> Iterator[tuple[KeyParts, object]]:
    """Every leaf below ``value`` (itself when it is one), depth first, in key order."""
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from iter_leaves(item, (*parts, key))
    else:
        yield parts, value


def to_plain(value: object, *, drop_key: str | None = None) -> object:
    """``value`` with every mapping (a ``ConfigDict``...) a plain dict, at any depth.

    Lists and tuples are rebuilt with plain items; with ``drop_key``, keys equal to it
    are left out everywhere (``drop_key=DELETE_KEY`` strips ``_delete_``, also inside
    lists). Never mutates ``value``.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value  # before the slower ABC check below
    if kind is dict or isinstance(value, Mapping):
        return {
            k: to_plain(v, drop_key=drop_key)
            for k, v in value.items()  # type: ignore[attr-defined]
            if drop_key is None or k != drop_key
        }
    if type(value) is list:
        return [to_plain(v, drop_key=drop_key) for v in value]
    if type(value) is tuple:
        return tuple(to_plain(v, drop_key=drop_key) for v in value)
    return value


def merge(
    base: Mapping[str, object],
    child: Mapping[str, object],
    origin: ChildOrigin,
    *,
    base_location: Callable[[KeyParts], Location | None] = lambda parts: None,
    list_keys: bool = False,
) -> MergeResult:
    """Merge ``child`` into ``base`` (non-destructively).

    Args:
        base: The merged bases.
        child: The including file's own values (or options).
        origin: Where each child key was written, and how to record it.
        base_location: Where a base key path was last set (for error details).
        list_keys: Let digit keys index into base lists (``merge_from_dict``).

    Returns:
        The merged data and one assignment per changed leaf.

    Raises:
        ConfigMergeError: ``_delete_`` misuse, or a dict merged into a non-dict.
        ConfigOptionError: With ``list_keys``, a bad list index.

    Example:
        >>> class Here:
        ...     def location(self, parts): return Location("c.py", 1)
        ...     def assignment(self, parts, existed, value):
        ...         return (AssignmentKind.OVERRIDE if existed else AssignmentKind.SET, None)
        >>> merge({"m": {"a": 1, "b": 2}}, {"m": {"_delete_": True, "a": 3}}, Here()).data
        {'m': {'a': 3}}
    """
    if DELETE_KEY in child:
        raise ConfigMergeError(
            "_delete_ at the top level of a file has nothing to replace",
            location=origin.location((DELETE_KEY,)),
            key_path=DELETE_KEY,
            hint="put `_delete_=True` inside the dict that should replace its base",
        )
    merger = _Merger(origin, base_location, list_keys)
    data = merger.merge_dict(base, child, ())  # type: ignore[arg-type]
    return MergeResult(data, merger.records)  # type: ignore[arg-type]


class _Merger:
    def __init__(
        self,
        origin: ChildOrigin,
        base_location: Callable[[KeyParts], Location | None],
        list_keys: bool,
    ) -> None:
        self.origin = origin
        self.base_location = base_location
        self.list_keys = list_keys
        self.records: list[Record] = []

    def merge_dict(
        self, base: Mapping[str | int, object], child: Mapping[str, object], prefix: KeyParts
    ) -> dict[str | int, object]:
        out = dict(base)
        for key, value in child.items():
            if key == DELETE_KEY:
                continue
            if self.list_keys and isinstance(key, str) and key.isdigit() and key not in base:
                # Options arrive as text: `a.0` also names an int key 0 of a dict.
                key = int(key) if int(key) in base else key  # type: ignore[assignment]
            parts = (*prefix, key)
            out[key] = self.merge_value(base.get(key, _MISSING), value, parts)
        return out

    def merge_list(
        self, base: list[object], child: Mapping[str, object], prefix: KeyParts
    ) -> list[object]:
        out = list(base)
        for key, value in child.items():
            if key == DELETE_KEY:
                continue
            text = str(key)
            if not text.isdigit():
                raise ConfigOptionError(
                    f"cannot index a list with key {key!r}",
                    location=self.origin.location((*prefix, key)),
                    key_path=str(KeyPath((*prefix, key))),
                )
            index = int(text)
            if index >= len(out):
                raise ConfigOptionError(
                    f"index {index} is out of range for a list of length {len(out)}",
                    location=self.origin.location((*prefix, index)),
                    key_path=str(KeyPath((*prefix, index))),
                )
            out[index] = self.merge_value(out[index], value, (*prefix, index))
        return out

    def merge_value(self, base_value: object, value: object, parts: KeyParts) -> object:
        if isinstance(value, Mapping):
            delete = value.get(DELETE_KEY, False)
            if not isinstance(delete, bool):
                raise ConfigMergeError(
                    f"_delete_ must be True or False, got {delete!r}",
                    location=self.origin.location((*parts, DELETE_KEY)),
                    key_path=str(KeyPath((*parts, DELETE_KEY))),
                )
            if base_value is _MISSING:
                return self.set_new(value, parts)
            if delete:
                self.remove(base_value, parts)
                return self.set_new(value, parts)
            if isinstance(base_value, Mapping):
                return self.merge_dict(base_value, value, parts)
            if self.list_keys and isinstance(base_value, list | tuple):
                # mmengine indexes lists only; a tuple keeps its type here.
                merged = self.merge_list(list(base_value), value, parts)
                return merged if isinstance(base_value, list) else tuple(merged)
            details = []
            where = self.base_location(parts)
            if where is not None:
                details.append(f"base value set at {where}")
            raise ConfigMergeError(
                f"cannot merge a dict into a base value of type {type(base_value).__name__}",
                location=self.origin.location(parts),
                key_path=str(KeyPath(parts)),
                hint="put `_delete_=True` in this dict to replace the base value",
                details=details,
            )
        if isinstance(base_value, Mapping) and base_value:
            # A dict replaced by a plain value: its leaves are gone.
            self.remove(base_value, parts)
            base_value = _MISSING
        return self.set_new(value, parts, existed=base_value is not _MISSING)

    def remove(self, base_value: object, parts: KeyParts) -> None:
        location = self.origin.location(parts)
        for leaf_parts, leaf in iter_leaves(base_value, parts):
            # A copy: the base's values may be shared with other loads (`basecache`),
            # and a caller may change what its provenance holds.
            removed = Assignment(AssignmentKind.DELETE, location, to_plain(leaf))
            self.records.append((leaf_parts, removed))

    def set_new(self, value: object, parts: KeyParts, existed: bool = False) -> object:
        clean = to_plain(value, drop_key=DELETE_KEY)
        for leaf_parts, leaf in iter_leaves(clean, parts):
            kind, source = self.origin.assignment(leaf_parts, existed, leaf)
            location = self.origin.location(leaf_parts)
            self.records.append((leaf_parts, Assignment(kind, location, leaf, source)))
        return clean
