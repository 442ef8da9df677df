"""`BaseEditor`: a ``.py`` config's live view of its merged bases, every change recorded.

mmengine hands a ``.py`` config the bases' own objects: ``_base_.x`` *is* the inherited
value, so both ``_base_.model.backbone = X`` and a change through an alias::

    base_test_pipeline = _base_.test_pipeline          # line 2
    base_test_pipeline[-1]['meta_keys'] = ('img_id',)  # line 3

change what the file inherits (mmdet 3.x configs rely on the second form). We do the
same, on a *working copy* of the bases (one per file, made per top-level key on first
use) so that the values the base files themselves produced, and their recorded
history, never change. The file is then merged into the working copy.

Every change gets provenance at the line of the statement that made it:

* explicit edits (``_base_.x.y = v``, ``+=``, ``del _base_.x``, ``_base_.x.update(...)``;
  rewritten into `set` / `delete` / `mutate` calls) record the leaves they changed at
  once;
* any other change is found by `check`, which the loader calls after every statement
  of the file (outside function bodies: a change inside a config's own function is
  recorded at the statement that called it). It compares the ``repr`` of each
  top-level key handed out by a read (a C-speed, type-exact fingerprint: ``1``,
  ``1.0`` and ``True`` differ) with the one it saw last, and only on a difference diffs
  that key's leaves.

Reads of immutable values (numbers, strings, classes...) touch nothing; reads of
containers hand out the working copy's own object, with dicts as ``ConfigDict``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from trackcfg.config.canonical import encode_value
from trackcfg.config.configdict import ConfigDict
from trackcfg.config.keypath import KeyParts, KeyPath
from trackcfg.config.limits import find_overflow, short_key_path
from trackcfg.config.location import Assignment, AssignmentKind, Location
from trackcfg.config.merge import DELETE_KEY, iter_leaves, to_plain
from trackcfg.config.substitute import copy_base, find_base, interpolate
from trackcfg.errors import ConfigError, ConfigLimitError, ConfigSubstitutionError

__all__ = ["BaseEditor"]

_ABSENT = object()
#: Values a config cannot change in place: reading one hands out nothing to watch.
_IMMUTABLE = (str, int, float, bool, bytes, type(None), type)


class _Seen:
    """What `check` last saw of one top-level key: its fingerprint and leaves."""

    __slots__ = ("leaves", "text")

    def __init__(self, text: str, leaves: dict[KeyParts, object]) -> None:
        self.text = text
        self.leaves = leaves


class BaseEditor:
    """One ``.py`` file's view of its merged bases: shared reads, recorded changes.

    Args:
        base: The merged values of the file's bases (never modified).
        file: Display path for locations.
        key_path_at: Maps a line to the key path assigned there (for error messages).
    """

    def __init__(
        self, base: Mapping[str, object], file: str, key_path_at: Callable[[int], str | None]
    ) -> None:
        self._base = base
        # The bases as this file sees them: originals until a key is "owned" (copied).
        self._work: dict[str, object] | None = None
        self._owned: set[str] = set()
        self._seen: dict[str, _Seen] = {}  # owned keys, as last recorded
        self._keys: tuple[str, ...] | None = None  # top-level keys, once `_base_` is handed out
        self._file = file
        self._key_path_at = key_path_at
        self.records: list[tuple[KeyParts, Assignment]] = []

    @property
    def current(self) -> Mapping[str, object]:
        """The bases as this file sees them now (changes applied)."""
        return self._work if self._work is not None else self._base

    @property
    def edited(self) -> Mapping[str, object] | None:
        """The bases with this file's changes (plain dicts), or None when it made none."""
        if not self.records or self._work is None:
            return None
        return {k: to_plain(v) if k in self._owned else v for k, v in self._work.items()}

    # ------------------------------------------------------------------ helpers

    def _location(self, line: int) -> Location:
        return Location(self._file, line)

    def _fail(
        self, exc: ConfigSubstitutionError, line: int, path: KeyParts = ()
    ) -> ConfigSubstitutionError:
        # An edit names the key path it edits; a read, the key it is assigned to.
        exc.key_path = str(KeyPath(path)) if path else self._key_path_at(line)
        return exc

    def _find(self, path: KeyParts, line: int, edited: KeyParts = ()) -> object:
        try:
            return find_base(self.current, path, self._location(line))
        except ConfigSubstitutionError as exc:
            raise self._fail(exc, line, edited) from None

    def _working(self) -> dict[str, object]:
        if self._work is None:
            # A ConfigDict so that a bare `_base_` read keeps attribute access.
            self._work = ConfigDict()
            for k, v in self._base.items():
                dict.__setitem__(self._work, k, v)
        return self._work

    def _own(self, key: str) -> None:
        """Make top-level ``key`` this file's own copy and start watching it."""
        work = self._working()
        if key in self._owned:
            return
        self._owned.add(key)
        if key in work:
            dict.__setitem__(work, key, copy_base(work[key], (key,)))
        self._seen[key] = self._look(key)

    def _look(self, key: str) -> _Seen:
        value = self.current.get(key, _ABSENT)
        return _Seen(repr(value), dict(iter_leaves(_frozen(value), (key,))))

    def _record(self, key: str, line: int) -> None:
        """Record every leaf of top-level ``key`` that changed since last seen, at ``line``."""
        value = self.current.get(key, _ABSENT)
        overflow = find_overflow(value, 1) if value is not _ABSENT else None
        if overflow is not None:
            # Before the diff below walks it recursively (see `limits`).
            raise ConfigLimitError(
                overflow.message,
                location=self._location(line),
                key_path=short_key_path((key, *overflow.parts)),
            )
        before = self._seen[key].leaves
        after = dict(iter_leaves(value, (key,)))
        location = self._location(line)
        for leaf, old in before.items():
            if after.get(leaf, _ABSENT) is _ABSENT and old is not _ABSENT:
                self.records.append((leaf, Assignment(AssignmentKind.DELETE, location, old)))
        for leaf, new in after.items():
            if new is _ABSENT:
                continue
            old = before.get(leaf, _ABSENT)
            if old is _ABSENT or not _same(old, new):
                kind = AssignmentKind.SET if old is _ABSENT else AssignmentKind.OVERRIDE
                self.records.append((leaf, Assignment(kind, location, _frozen(new))))
        self._seen[key] = self._look(key)

    # ------------------------------------------------------------------ reads

    def read(self, path: KeyParts, line: int) -> object:
        """``_base_.<path>``: the inherited value itself (a container is watched)."""
        value = self._find(path, line)
        if isinstance(value, _IMMUTABLE):
            return value
        if not path:
            # The whole of `_base_`: every key, and keys added or removed through it.
            for key in list(self.current):
                self._own(str(key))
            self._keys = tuple(self.current)
            return self._working()
        self._own(str(path[0]))
        return self._find(path, line)

    def format(self, template: str, line: int) -> object:
        """A string with ``{{ _base_.x }}`` placeholders, interpolated (copies)."""
        try:
            return interpolate(template, self.current, self._location(line))
        except ConfigSubstitutionError as exc:
            raise self._fail(exc, line) from None

    def check(self, line: int) -> None:
        """After the statement at ``line``: record what it changed through a read value."""
        if not self._seen:
            return
        current = self.current
        for key, seen in self._seen.items():
            if repr(current.get(key, _ABSENT)) != seen.text:
                self._record(key, line)
        if self._keys is not None and tuple(current) != self._keys:
            # Keys added to (or removed from) a handed-out `_base_` itself.
            for key in current:
                if key not in self._seen:
                    self._seen[str(key)] = _Seen(repr(_ABSENT), {})
                    self._owned.add(str(key))
                    self._record(str(key), line)
            for key in [k for k in self._seen if k not in current]:
                self._record(key, line)
            self._keys = tuple(current)

    # ------------------------------------------------------------------ explicit edits

    def _container(self, path: KeyParts, line: int, edited: KeyParts) -> object:
        self._own(str(edited[0]))
        return self._find(path, line, edited)

    def _check_shape(self, path: KeyParts, line: int, value: object, start: int) -> None:
        # Before the edit walks `value` (at depth `start`, below `path`) recursively.
        overflow = find_overflow(value, start)
        if overflow is not None:
            raise ConfigLimitError(
                overflow.message,
                location=self._location(line),
                key_path=short_key_path((*path, *overflow.parts)),
            )

    def set(self, path: KeyParts, line: int, value: object) -> None:
        """``_base_.<path> = value``: replace (not merge), as attribute assignment does."""
        self._check_shape(path, line, value, len(path))
        container = self._container(path[:-1], line, path)
        key = path[-1]
        # As a read would hand it out: dicts as ConfigDict, nothing shared with `value`.
        clean = copy_base(to_plain(value, drop_key=DELETE_KEY), path)
        # Two branches so that each index is typed for its container.
        if isinstance(container, dict):
            dict.__setitem__(container, key, clean)
        elif isinstance(container, list) and isinstance(key, int) and key < len(container):
            container[key] = clean
        else:
            raise self._fail(
                ConfigSubstitutionError(
                    f"cannot set _base_.{KeyPath(path)}: its parent is a "
                    f"{type(container).__name__}",
                    location=self._location(line),
                ),
                line,
                path,
            )
        self._record(str(path[0]), line)

    def delete(self, path: KeyParts, line: int) -> None:
        """``del _base_.<path>``."""
        container = self._container(path[:-1], line, path)
        self._find(path, line, path)  # the key must exist
        if isinstance(container, dict):
            dict.__delitem__(container, path[-1])
        else:
            del container[path[-1]]  # type: ignore[attr-defined]
        self._record(str(path[0]), line)

    def mutate(
        self, path: KeyParts, line: int, method: str, *args: object, **kwargs: object
    ) -> object:
        """``_base_.<path>.<method>(...)`` for an in-place method (``update``, ``append``...)."""
        target = self._container(path, line, path)
        # `update(d)`/`extend(xs)` put the items of their argument one level down,
        # `append(x)` and the rest put the argument itself there.
        inner = 0 if method in ("update", "extend") else 1
        for arg in args:
            self._check_shape(path, line, arg, len(path) + inner)
        for key, arg in kwargs.items():
            self._check_shape((*path, key), line, arg, len(path) + 1)
        args = tuple(copy_base(to_plain(a), path) for a in args)
        kwargs = {k: copy_base(to_plain(v), (*path, k)) for k, v in kwargs.items()}
        result = getattr(target, method)(*args, **kwargs)
        self._record(str(path[0]), line)
        return result


def _frozen(value: object) -> object:
    """A copy of ``value`` that later changes to it cannot reach (plain containers copied).

    Far cheaper than ``copy.deepcopy`` for config data; other objects are kept as they
    are (classes, functions: a config does not change them in place).
    """
    if isinstance(value, Mapping):
        return {k: _frozen(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_frozen(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, set | frozenset):
        return type(value)(_frozen(v) for v in value)
    return value


def _same(a: object, b: object) -> bool:
    # 1 == 1.0 == True, but an edit from one to the other is still an edit: compare the
    # canonical JSON text (the encoded values themselves would compare 1 == 1.0 again).
    try:
        return _text(encode_value(a)) == _text(encode_value(b))
    except ConfigError:
        return a == b


def _text(encoded: object) -> str:
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"), allow_nan=False)
