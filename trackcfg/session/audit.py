"""Answers to "where did this value come from?" and "why do these two configs differ?".

``blame`` and ``compare`` work on `ConfigView`s, so a run's snapshot and the
config files it was made from give the same answers. Results are plain records;
``trackcfg.cli.render`` turns them into text or JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from trackcfg.config.keypath import KeyPath, suggest

if TYPE_CHECKING:
    from trackcfg.config.location import Assignment, Location
    from trackcfg.config.provenance import Provenance
    from trackcfg.session.target import ConfigView

__all__ = [
    "MISSING",
    "BlameReport",
    "Comparison",
    "FileDifference",
    "KeyDifference",
    "KeyHistory",
    "SideLocation",
    "blame",
    "compare",
    "lookup",
]


class _Missing:
    """The value of a key path that is not in the resolved config (e.g. deleted)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def lookup(values: Mapping[str, object], key_path: KeyPath) -> object:
    """The value at ``key_path`` in a resolved config, or `MISSING`."""
    node: object = values
    for part in key_path.parts:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, Mapping) and str(part) in node:
            node = node[str(part)]
        elif (
            isinstance(node, list | tuple)
            and isinstance(part, int)
            and -len(node) <= part < len(node)
        ):
            node = node[part]
        else:
            return MISSING
    return node


def _all_key_paths(
    values: Mapping[str, object], prefix: KeyPath | None = None
) -> Iterable[KeyPath]:
    prefix = KeyPath() if prefix is None else prefix
    for key, value in values.items():
        path = prefix / key
        yield path
        if isinstance(value, Mapping):
            yield from _all_key_paths(value, path)


@dataclass(frozen=True, slots=True)
class KeyHistory:
    """One key path: its resolved value (or `MISSING`) and its assignments, oldest first."""

    key_path: KeyPath
    value: object
    assignments: tuple[Assignment, ...]

    @property
    def key_path_text(self) -> str:
        """The key path as users type it."""
        return str(self.key_path)


@dataclass(frozen=True, slots=True)
class BlameReport:
    """``blame`` for a key path: its value and the history of it and every key below it."""

    target: str
    key_path: KeyPath
    value: object
    entries: tuple[KeyHistory, ...]

    @property
    def key_path_text(self) -> str:
        """The blamed key path as users type it."""
        return str(self.key_path)


def blame(view: ConfigView, key: str) -> BlameReport:
    """The history of ``key`` and of every key path below it.

    Args:
        view: The config (file or run snapshot).
        key: A key path (``optimizer.lr``) or a prefix of some (``optimizer``).

    Raises:
        ConfigKeyError: Nothing in the config or its history has that key path; the
            hint lists close matches.
    """
    from trackcfg.errors import ConfigKeyError

    try:
        key_path = KeyPath.parse(key)
    except ValueError as exc:
        raise ConfigKeyError(str(exc), key_path=key) from exc
    value = lookup(view.values, key_path)
    entries = tuple(
        KeyHistory(path, lookup(view.values, path), assignments)
        for path, assignments in view.provenance.under(key_path)
        if assignments
    )
    if not entries and value is MISSING:
        known = set(_all_key_paths(view.values)) | set(view.provenance)
        # Siblings first (a typo in the last element), then any key path.
        siblings = sorted(str(p) for p in known if p.parent == key_path.parent)
        matches = suggest(key, siblings) or suggest(key, sorted(str(p) for p in known))
        raise ConfigKeyError(
            f"no such key in {view.label}",
            key_path=key,
            hint=f"did you mean {', '.join(repr(m) for m in matches)}?" if matches else None,
        )
    return BlameReport(view.label, key_path, value, entries)


@dataclass(frozen=True, slots=True)
class SideLocation:
    """Where one side of a diff got its value: the last assignment at or above the key."""

    location: Location
    kind: str


@dataclass(frozen=True, slots=True)
class KeyDifference:
    """One differing key path; ``kind`` is added/removed/changed/type_changed."""

    key_path: KeyPath
    kind: str
    old: object
    new: object
    a: SideLocation | None
    b: SideLocation | None

    @property
    def key_path_text(self) -> str:
        """The key path as users type it."""
        return str(self.key_path)


@dataclass(frozen=True, slots=True)
class FileDifference:
    """A lineage file that differs: its digest on each side (None where it took no part)."""

    path: str
    a_digest: str | None
    b_digest: str | None


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two configs, every key path in which they differ, and the lineage files that differ.

    A file edited between two runs (same path, another digest) is the usual answer to
    "why do these runs differ" when both sides name the same file:line.
    """

    a: ConfigView
    b: ConfigView
    differences: tuple[KeyDifference, ...]
    files: tuple[FileDifference, ...] = ()


def _side(provenance: Provenance, key_path: KeyPath) -> SideLocation | None:
    # Provenance records leaves. A differing leaf has its own history (or, when a
    # dict was replaced by a plain value, its ancestor has); a differing dict is
    # answered by the first leaf under it.
    path = key_path
    while not (assignments := provenance.history(path)) and path.parts:
        path = path.parent
    if not assignments:
        assignments = next((history for _, history in provenance.under(key_path) if history), ())
    if not assignments:
        return None
    return SideLocation(assignments[-1].location, assignments[-1].kind.value)


def compare(a: ConfigView, b: ConfigView) -> Comparison:
    """Every key path that differs between ``a`` and ``b``, with who set it on each side."""
    from trackcfg.config.diff import diff

    differences = []
    for change in diff(dict(a.values), dict(b.values)):
        key_path = change.key_path
        differences.append(
            KeyDifference(
                key_path=key_path,
                kind=change.kind.name.lower(),
                old=change.old,
                new=change.new,
                a=_side(a.provenance, key_path),
                b=_side(b.provenance, key_path),
            )
        )
    return Comparison(a, b, tuple(differences), _file_differences(a, b))


def _file_differences(a: ConfigView, b: ConfigView) -> tuple[FileDifference, ...]:
    digests_a = {e.path: e.digest for e in a.lineage}
    digests_b = {e.path: e.digest for e in b.lineage}
    # Lineage order of a, then files only b has, in b's order.
    paths = [*digests_a, *(p for p in digests_b if p not in digests_a)]
    return tuple(
        FileDifference(p, digests_a.get(p), digests_b.get(p))
        for p in paths
        if digests_a.get(p) != digests_b.get(p)
    )
