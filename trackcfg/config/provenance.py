"""Provenance: the ordered history of assignments of every key path (what `blame` reads).

A key path's history lists, in the order they were applied, the assignments made to
it: SET in the file that first wrote it, OVERRIDE by later files, DELETE by
``_delete_=True`` (or when a dict was replaced by a plain value), SUBSTITUTION from
``{{ _base_.x }}`` / ``_base_.x``, OPTION from ``merge_from_dict`` and PRIVATE for a
top-level ``__name`` a file set (dropped, as mmengine drops it; its value, or its repr
when it is not plain data). An OVERRIDE recorded in a ``.py`` file that includes the
key path's file marks a change of the inherited value (``_base_.x.y = v``, or through a
name bound to ``_base_.x``), at the statement that made it. Histories are kept for
*leaves* (values that are not non-empty dicts), so the last assignment of a leaf that is
still in the config is its resolved value.

``Provenance`` is immutable; ``ProvenanceBuilder`` is what the loader appends to.
``to_json``/``from_json`` use ``canonical.encode_value`` so tuples, classes and
non-finite floats survive the trip (classes come back as ``QualifiedName``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from trackcfg.config.canonical import decode_value, encode_value
from trackcfg.config.keypath import KeyParts, KeyPath
from trackcfg.config.location import Assignment, AssignmentKind, Location

__all__ = ["PROVENANCE_VERSION", "Provenance", "ProvenanceBuilder"]

#: Version of the ``to_json`` layout.
PROVENANCE_VERSION = 1


class ProvenanceBuilder:
    """Mutable per-key-path assignment lists, appended to while a config resolves.

    A history may be a tuple shared with a kept base (``from_histories``): it is
    copied into a list the first time this builder appends to it.
    """

    __slots__ = ("_history",)

    def __init__(self) -> None:
        self._history: dict[KeyParts, list[Assignment] | tuple[Assignment, ...]] = {}

    @classmethod
    def from_histories(
        cls, histories: dict[KeyParts, list[Assignment] | tuple[Assignment, ...]]
    ) -> ProvenanceBuilder:
        """A builder that takes ``histories`` (key path -> assignments) as its own.

        Tuples in it may be shared (they are copied on the first append), the dict not.
        """
        new = cls()
        new._history = histories
        return new

    def _list(self, parts: KeyParts) -> list[Assignment] | None:
        """``parts``' history as a list this builder owns (None when it has none)."""
        history = self._history.get(parts)
        if type(history) is tuple:
            history = self._history[parts] = list(history)
        return history  # type: ignore[return-value]

    def add(self, parts: KeyParts, assignment: Assignment) -> None:
        """Append one assignment to ``parts``' history."""
        history = self._list(parts)
        if history is None:
            self._history[parts] = [assignment]
        else:
            history.append(assignment)

    def extend(self, records: Iterable[tuple[KeyParts, Assignment]]) -> None:
        """Append many ``(parts, assignment)`` records, in order."""
        for parts, assignment in records:
            self.add(parts, assignment)

    def update(self, other: ProvenanceBuilder) -> None:
        """Append every history of ``other`` after this one's."""
        for parts, history in other._history.items():
            mine = self._list(parts)
            if mine is None:
                self._history[parts] = list(history)
            else:
                mine.extend(history)

    def absorb(self, other: ProvenanceBuilder) -> None:
        """``update`` from a builder no one uses after: its histories are taken over.

        What the loader does with each base's builder (made for that one include), so
        that a base's histories are not copied once more per include.
        """
        if not self._history:
            self._history = other._history
        else:
            for parts, history in other._history.items():
                mine = self._list(parts)
                if mine is None:
                    self._history[parts] = history
                else:
                    mine.extend(history)
        other._history = {}

    def records(self) -> Iterator[tuple[KeyParts, Assignment]]:
        """Every ``(parts, assignment)``; ``extend`` of them rebuilds an equal builder."""
        for parts, history in self._history.items():
            for assignment in history:
                yield parts, assignment

    def history(self, parts: KeyParts) -> tuple[Assignment, ...]:
        """The assignments of exactly ``parts`` (empty when none)."""
        return tuple(self._history.get(parts, ()))

    def last(self, parts: KeyParts) -> Assignment | None:
        """The latest assignment of ``parts``, else of its nearest recorded ancestor."""
        history = self._history
        for end in range(len(parts), -1, -1):
            found = history.get(parts[:end])
            if found:
                return found[-1]
        return None

    def last_under(self, parts: KeyParts) -> Assignment | None:
        """The first-recorded leaf's latest assignment at or below ``parts``."""
        n = len(parts)
        for key, history in self._history.items():
            if key[:n] == parts and history:
                return history[-1]
        return None

    def copy(self) -> ProvenanceBuilder:
        """An independent copy (histories are copied, assignments shared: immutable)."""
        new = ProvenanceBuilder()
        new._history = {k: list(v) for k, v in self._history.items()}
        return new

    def freeze(self) -> Provenance:
        """The immutable ``Provenance`` of what was recorded so far."""
        return Provenance({k: tuple(v) for k, v in self._history.items()})


class Provenance(Mapping[KeyPath, tuple[Assignment, ...]]):
    """Immutable map from key path to its ordered assignments.

    Example:
        >>> p = Provenance({("lr",): (Assignment(AssignmentKind.SET, Location("a.py", 3), 0.1),)})
        >>> p["lr"][-1].value
        0.1
        >>> Provenance.from_json(p.to_json()) == p
        True
    """

    __slots__ = ("_history",)

    def __init__(self, history: Mapping[KeyParts, Sequence[Assignment]]) -> None:
        self._history: dict[KeyParts, tuple[Assignment, ...]] = {
            k: tuple(v) for k, v in history.items()
        }

    @staticmethod
    def _parts(key: KeyPath | str | KeyParts) -> KeyParts:
        if isinstance(key, KeyPath):
            return key.parts
        if isinstance(key, str):
            return KeyPath.parse(key).parts
        return tuple(key)

    def __getitem__(self, key: KeyPath | str | KeyParts) -> tuple[Assignment, ...]:
        return self._history[self._parts(key)]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, KeyPath | str | tuple):
            return False
        return self._parts(key) in self._history

    def __iter__(self) -> Iterator[KeyPath]:
        return (KeyPath(parts) for parts in self._history)

    def __len__(self) -> int:
        return len(self._history)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Provenance):
            return NotImplemented
        return self._history == other._history

    def __hash__(self) -> int:
        return hash(tuple(self._history))

    def __repr__(self) -> str:
        return f"Provenance({len(self._history)} key paths)"

    def history(self, key: KeyPath | str | KeyParts) -> tuple[Assignment, ...]:
        """The assignments of ``key``; empty when nothing was recorded for it."""
        return self._history.get(self._parts(key), ())

    def key_paths(self) -> tuple[KeyPath, ...]:
        """Every key path with a history, in order of its first assignment."""
        return tuple(KeyPath(parts) for parts in self._history)

    def under(
        self, prefix: KeyPath | str | KeyParts
    ) -> tuple[tuple[KeyPath, tuple[Assignment, ...]], ...]:
        """Every ``(key path, history)`` at or below ``prefix`` (what a subtree blame shows).

        Histories are kept for leaves only, so blaming a dict means blaming its leaves;
        leaves removed by ``_delete_`` are included (their last assignment is DELETE).
        """
        parts = self._parts(prefix)
        n = len(parts)
        return tuple(
            (KeyPath(key), history) for key, history in self._history.items() if key[:n] == parts
        )

    def to_json(self) -> dict[str, object]:
        """A JSON-able form: ``{"version": 1, "key_paths": [{key_path, assignments}]}``."""
        return {
            "version": PROVENANCE_VERSION,
            "key_paths": [
                {
                    "key_path": str(KeyPath(parts)),
                    "parts": list(parts),
                    "assignments": [_assignment_to_json(a) for a in history],
                }
                for parts, history in self._history.items()
            ],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> Provenance:
        """Invert ``to_json``.

        Raises:
            ValueError: ``obj`` is not a provenance document of a known version.
        """
        if obj.get("version") != PROVENANCE_VERSION or not isinstance(obj.get("key_paths"), list):
            raise ValueError("not a trackcfg provenance document of a supported version")
        history: dict[KeyParts, tuple[Assignment, ...]] = {}
        for entry in obj["key_paths"]:  # type: ignore[attr-defined]
            parts = tuple(entry["parts"])
            history[parts] = tuple(_assignment_from_json(a) for a in entry["assignments"])
        return cls(history)


def _location_to_json(location: Location | None) -> object:
    if location is None:
        return None
    return {"file": location.file, "line": location.line, "col": location.col}


def _location_from_json(obj: object) -> Location | None:
    if obj is None:
        return None
    data: Mapping[str, object] = obj  # type: ignore[assignment]
    return Location(str(data["file"]), int(data["line"]), data.get("col"))  # type: ignore[call-overload,arg-type]


def _assignment_to_json(assignment: Assignment) -> dict[str, object]:
    return {
        "kind": assignment.kind.value,
        "location": _location_to_json(assignment.location),
        "value": encode_value(assignment.value),
        "source": _location_to_json(assignment.source),
    }


def _assignment_from_json(obj: Mapping[str, object]) -> Assignment:
    location = _location_from_json(obj["location"])
    if location is None:
        raise ValueError("an assignment without a location")
    return Assignment(
        AssignmentKind(obj["kind"]),
        location,
        decode_value(obj["value"]),
        _location_from_json(obj.get("source")),
    )
