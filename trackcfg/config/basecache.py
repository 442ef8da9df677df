"""Resolved base files reused across loads in one process, when provably the same.

In a tree of configs most loads resolve the same few base files again. A base's
resolution (its values, their provenance, the lineage below it) is a function of the
texts, paths and display paths of the files below it, provided that evaluating
them has no other input and no effect. ``inherit`` keeps a ``ResolvedBase`` only when:

* every file below it is pure (``purity``; JSON/YAML always), names no package base
  (``pkg::...`` is found through ``sys.path``), and warns about nothing (a dropped
  function, ``_deprecation_``): a reused base warns no more;
* its values and the values in its provenance are dicts, lists and tuples of
  immutable leaves (``filecache.is_shareable``). Its values are shared by every load
  (loads never change their bases' values, and ``Config`` copies what it hands out);
  each load gets its own copy of every container in its provenance.

and reuses one only when every file below it still has the same bytes (digest) and
the same real path, and when resolving it here could not fail: the chain above plus
its own height stays within ``limits.MAX_BASE_DEPTH`` and the chain above meets none
of its files (else it is resolved again, which raises the error). Lineage orders and
the top file's ``included_by`` are those of the load that reuses it.

Nothing is kept on disk: values can be anything a config computes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from trackcfg.config.canonical import digest
from trackcfg.config.filecache import (
    IMMUTABLE,
    NOT_SHAREABLE,
    fresh_copy,
    shareable_copy,
)
from trackcfg.config.keypath import KeyParts
from trackcfg.config.location import Assignment, Location

__all__ = ["BaseCache", "BaseFile", "ResolvedBase", "keep_base"]


@dataclass(frozen=True, slots=True)
class BaseFile:
    """One file below a kept base, as it was read.

    Attributes:
        path: The path it was read at (absolute, not resolved).
        real: Its real path (symlinks resolved).
        digest: xxh3-128 hex digest of its bytes.
        absolute: Whether its values may hold the project root (``{{ fileDirname }}``).
    """

    path: str
    real: str
    digest: str
    absolute: bool


@dataclass(frozen=True, slots=True)
class ResolvedBase:
    """What resolving one base gave, ready to be handed out again.

    Attributes:
        files: The base and every file below it, in resolution order (the base last).
        data: Its merged values.
        history: Its provenance: every key path's assignments, in order.
        containers: The key paths of ``history`` with a dict, list or tuple value.
        key_locations: Where each top-level key was set.
        lineage: ``(path, digest, included_by, order)`` per file, orders from 0 and the
            base's ``included_by`` None.
        texts: ``(path, text)`` per file.
        height: The longest chain of files from the base down, the base included.
    """

    files: tuple[BaseFile, ...]
    data: dict[str, object]
    history: dict[KeyParts, tuple[Assignment, ...]]
    containers: frozenset[KeyParts]
    key_locations: dict[str, Location]
    lineage: tuple[tuple[str, str, str | None, int], ...]
    texts: tuple[tuple[str, str], ...]
    height: int

    @property
    def absolute(self) -> bool:
        """Whether some file below it uses ``{{ fileDirname }}`` or ``__file__``."""
        return any(f.absolute for f in self.files)

    def fresh_history(self) -> dict[KeyParts, list[Assignment] | tuple[Assignment, ...]]:
        """Its provenance; an assignment holding a container gets its own copy of it.

        The histories are this base's tuples (``ProvenanceBuilder`` copies a tuple
        before appending to it), but for those with a container, copied.
        """
        history: dict[KeyParts, list[Assignment] | tuple[Assignment, ...]] = dict(self.history)
        for parts in self.containers:
            history[parts] = tuple(_fresh(a) for a in history[parts])
        return history

    def is_current(self, chain: Iterable[Path], real: Path) -> bool:
        """Whether every file still reads the same, and none is on ``chain`` (real paths).

        Args:
            chain: The real paths of the files including this base, directly or not.
            real: The base's real path now.
        """
        above = {str(p) for p in chain}
        top = self.files[-1]
        if str(real) != top.real:
            return False
        for file in self.files:
            if file.real in above:
                return False
            try:
                if file is not top and os.path.realpath(file.path) != file.real:
                    return False
                with open(file.path, "rb") as stream:
                    raw = stream.read()
            except OSError:
                return False
            if digest(raw) != file.digest:
                return False
        return True


def keep_base(
    files: tuple[BaseFile, ...],
    data: dict[str, object],
    records: Iterable[tuple[KeyParts, Assignment]],
    key_locations: dict[str, Location],
    lineage: tuple[tuple[str, str, str | None, int], ...],
    texts: tuple[tuple[str, str], ...],
    height: int,
) -> ResolvedBase | None:
    """A ``ResolvedBase`` of a resolution, with its own copies of values and provenance.

    Copied, not shared with the load that resolved it: in that load, provenance values
    are the very containers in ``data`` (what a caller may change).

    Returns:
        None when a value is not dicts, lists and tuples of immutable leaves: it could
        not be handed out again safely.
    """
    history: dict[KeyParts, list[Assignment]] = {}
    containers: set[KeyParts] = set()
    kept_data = shareable_copy(data)
    if kept_data is NOT_SHAREABLE:
        return None
    for parts, assignment in records:
        kind = type(assignment.value)
        if kind in _CONTAINERS:
            containers.add(parts)
            value = shareable_copy(assignment.value)
            if value is NOT_SHAREABLE:
                return None
            assignment = Assignment(assignment.kind, assignment.location, value, assignment.source)
        elif kind not in IMMUTABLE:
            return None
        history.setdefault(parts, []).append(assignment)
    return ResolvedBase(
        files=files,
        data=kept_data,  # type: ignore[arg-type]
        history={parts: tuple(h) for parts, h in history.items()},
        containers=frozenset(containers),
        key_locations=dict(key_locations),
        lineage=lineage,
        texts=texts,
        height=height,
    )


_CONTAINERS = (dict, list, tuple)


def _fresh(assignment: Assignment) -> Assignment:
    value = assignment.value
    if type(value) not in _CONTAINERS:
        return assignment
    return Assignment(assignment.kind, assignment.location, fresh_copy(value), assignment.source)


class BaseCache:
    """Resolved bases by (path, project root), least recently used dropped first.

    Args:
        capacity: Most bases kept.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], ResolvedBase] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every base."""
        with self._lock:
            self._entries.clear()

    def get(self, path: Path, root: Path) -> ResolvedBase | None:
        """The base kept for ``path`` under ``root`` (not yet checked: ``is_current``)."""
        key = (str(path), str(root))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, path: Path, root: Path, entry: ResolvedBase) -> None:
        """Keep ``entry`` for ``path`` under ``root``."""
        with self._lock:
            self._entries[(str(path), str(root))] = entry
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
