"""Bounds that keep hostile or broken config input from exhausting stack, memory or time.

Everything downstream of the readers (merge, provenance, hash, dump, diff) walks a
config as a *tree*, recursively. Three shapes of input would make that walk blow up,
so the readers refuse them early, with a located ``ConfigError``, instead of ending
in a ``RecursionError`` (or a segfault in PyYAML's C composer) minutes later:

* nesting: a value may sit at most ``MAX_DEPTH`` key path elements below the top
  (``a.b.0.c`` is 4). Real configs stay below 15; every walk above is safe at 100
  with Python's default recursion limit, with room to spare for the caller's stack.
  This also bounds ``--cfg-options`` keys and values;
* ``_base_`` chains: at most ``MAX_BASE_DEPTH`` files, each including the next;
* YAML aliases: ``*a`` is read as a shared object, but every walk above expands it
  into a copy, so a few hundred bytes of nested aliases ("billion laughs") would
  expand to gigabytes. Aliases may add at most ``MAX_ALIAS_NODES`` nodes to a
  document, counted as the tree every walk sees.

A ``.py`` config is code and can loop forever; only the shape of the values it
leaves behind is checked (depth, and values that contain themselves).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from trackcfg.config.keypath import KeyParts, KeyPath

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_BASE_DEPTH",
    "MAX_DEPTH",
    "Overflow",
    "find_overflow",
    "short_key_path",
]

#: The most key path elements between the top of a config and any value in it.
MAX_DEPTH = 100
#: The most files in one `_base_` chain (the loaded file included).
MAX_BASE_DEPTH = 64
#: The most nodes that YAML aliases may add to one document, once expanded.
MAX_ALIAS_NODES = 100_000

#: Key path elements shown before an ellipsis in a message about a too-deep key path.
_SHOWN_PARTS = 6


def short_key_path(parts: KeyParts) -> str:
    """``parts`` formatted, cut after a few elements so that a message stays one line.

    Example:
        >>> short_key_path(("a",) * 3)
        'a.a.a'
        >>> short_key_path(("a",) * 20000)
        'a.a.a.a.a.a.…'
    """
    if len(parts) <= _SHOWN_PARTS + 1:
        return str(KeyPath(parts))
    return f"{KeyPath(parts[:_SHOWN_PARTS])}.…"


@dataclass(frozen=True, slots=True)
class Overflow:
    """Where a value breaks a bound.

    Attributes:
        parts: The key path, relative to the value checked, of the first value that
            sits one level too deep, or of the value that contains itself.
        cycle: True when the value contains itself (its depth is unbounded).
    """

    parts: KeyParts
    cycle: bool

    @property
    def message(self) -> str:
        """What is wrong, for an error message."""
        if self.cycle:
            return "the value contains itself; a config value must be a finite tree"
        return f"nested more than {MAX_DEPTH} levels deep"


def _children(value: object) -> list[tuple[str | int, object]] | None:
    """The items below a container, with the key path element of each (None for a leaf)."""
    if isinstance(value, Mapping):
        return [(k if isinstance(k, str | int) else repr(k), v) for k, v in value.items()]
    if isinstance(value, list | tuple | set | frozenset):
        return list(enumerate(value))
    return None


@dataclass(slots=True)
class _Frame:
    node: object
    items: list[tuple[str | int, object]]
    next: int = 0
    height: int = 0  # levels of containers below `node` seen so far


def find_overflow(value: object, start: int = 0) -> Overflow | None:
    """The first place where ``value`` nests deeper than ``MAX_DEPTH`` or contains itself.

    Iterative and linear in the number of *distinct* containers (one shared by many
    parents is walked once), so neither deep, nor cyclic, nor exponentially shared
    values can exhaust the stack or the time.

    Args:
        value: The value to check.
        start: The depth (key path length) ``value`` itself sits at.

    Returns:
        None when every value below sits at most ``MAX_DEPTH`` elements deep and nothing
        contains itself; else where the first problem is.

    Example:
        >>> find_overflow({"a": [1, 2]}) is None
        True
        >>> deep = 1
        >>> for _ in range(MAX_DEPTH):
        ...     deep = [deep]
        >>> overflow = find_overflow({"a": deep})
        >>> len(overflow.parts), overflow.parts[:3]
        (101, ('a', 0, 0))
        >>> loop = []
        >>> loop.append(loop)
        >>> find_overflow({"a": loop})
        Overflow(parts=('a', 0), cycle=True)
    """
    if _fits(value, start):
        return None
    return _locate(value, start)


def _values(value: object) -> Iterable[object] | None:
    # Built-in types first: an ABC check (`Mapping`) costs ten times more.
    if isinstance(value, dict):
        return value.values()
    if isinstance(value, list | tuple | set | frozenset):
        return value
    if isinstance(value, Mapping):
        return value.values()
    return None


def _fits(value: object, start: int) -> bool:
    """Whether nothing below ``value`` sits past ``MAX_DEPTH`` or contains itself.

    The fast pass every loaded file goes through: values only, no key paths.
    """
    values = _values(value)
    if values is None:
        return True
    room = MAX_DEPTH - start  # levels allowed below `value`
    # Every container is reachable from `value`, which is alive: ids are unique here.
    heights: dict[int, int] = {}  # containers walked to the end: levels below them
    open_ = {id(value)}  # containers on the stack: meeting one again is a cycle
    nodes = [value]
    iterators = [iter(values)]
    levels = [0]  # per frame: levels below it seen so far
    if values and room < 1:
        return False
    while iterators:
        depth = len(iterators)  # where the children of the top frame sit, below `value`
        for child in iterators[-1]:
            kind = type(child)
            if kind is str or kind is int or kind is float or kind is bool or child is None:
                levels[-1] = levels[-1] or 1
                continue
            child_values = _values(child)
            if child_values is None:
                levels[-1] = levels[-1] or 1
                continue
            key = id(child)
            if key in open_:
                return False
            height = heights.get(key)
            if height is not None:
                if depth + height > room:
                    return False
                levels[-1] = max(levels[-1], height + 1)
                continue
            if child_values and depth + 1 > room:
                return False
            open_.add(key)
            nodes.append(child)
            iterators.append(iter(child_values))
            levels.append(0)
            break
        else:
            node = nodes.pop()
            iterators.pop()
            height = levels.pop()
            open_.discard(id(node))
            heights[id(node)] = height
            if levels:
                levels[-1] = max(levels[-1], height + 1)
    return True


def _locate(value: object, start: int) -> Overflow | None:
    """The slow pass, after ``_fits`` failed: the same walk, naming key paths."""
    items = _children(value)
    if items is None:
        return None
    # Every container is reachable from `value`, which is alive: ids are unique here.
    heights: dict[int, int] = {}  # containers walked to the end
    open_ = {id(value)}  # containers on the stack: meeting one again is a cycle
    stack = [_Frame(value, items)]
    while stack:
        frame = stack[-1]
        if frame.next == len(frame.items):
            stack.pop()
            open_.discard(id(frame.node))
            heights[id(frame.node)] = frame.height
            if stack:
                stack[-1].height = max(stack[-1].height, frame.height + 1)
            continue
        child = frame.items[frame.next][1]
        frame.next += 1
        depth = start + len(stack)  # the key path length of `child`
        if id(child) in open_:
            return Overflow(_path(stack), cycle=True)
        if depth > MAX_DEPTH:
            return Overflow(_path(stack), cycle=False)
        height = heights.get(id(child))
        if height is not None:
            # Shared, walked already: only its height matters here.
            frame.height = max(frame.height, height + 1)
            if depth + height > MAX_DEPTH:
                below = _deepest(child, heights, MAX_DEPTH + 1 - depth)
                return Overflow(_path(stack) + below, cycle=False)
            continue
        child_items = _children(child)
        frame.height = max(frame.height, 1)
        if child_items is not None:
            open_.add(id(child))
            stack.append(_Frame(child, child_items))
    return None


def _path(stack: list[_Frame]) -> KeyParts:
    """The key path of the item the innermost frame took last."""
    return tuple(frame.items[frame.next - 1][0] for frame in stack)


def _deepest(value: object, heights: Mapping[int, int], steps: int) -> KeyParts:
    """``steps`` elements down the deepest branch below ``value`` (walked already)."""
    path: list[str | int] = []
    for _ in range(steps):
        items = _children(value) or []
        if not items:
            break
        key, value = max(items, key=lambda item: heights.get(id(item[1]), -1))
        path.append(key)
    return tuple(path)
