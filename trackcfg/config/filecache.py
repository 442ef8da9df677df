"""Parse results reused by content digest: in memory, and on disk across processes.

``readers.parse_config`` (parse, placeholder transform, ``compile``) is a function of a
file's text, its real path and its display path only (the transform bakes
``{{ fileDirname }}`` into the code, ``compile`` the path). ``ParseCache.parse`` keys
its result by exactly those, with the text's digest standing for the text, so an
edited file is parsed again however its modification time looks.

The disk store keeps, per key, the code object (``marshal``, as Python's own
``__pycache__`` does) and what the parse found (bases, key lines, flags). It is only
ever a shortcut:

* an entry's name is a digest of the whole key, which also holds the Python version
  and bytecode magic, the store's format, and a digest of trackcfg's ``config``
  package sources (any change to the loader is a new key); the entry repeats the key
  and the loader checks it;
* each entry carries a digest of its payload, checked before ``marshal`` reads it: a
  truncated or corrupted file is a miss, never an error;
* entries are written to a temp file and renamed into place (atomic on POSIX and
  Windows), and a store that cannot be written is just not written.

Location: ``config/`` in ``$TRACKCFG_CACHE_DIR``, else in
``$XDG_CACHE_HOME/trackcfg``, else in ``~/.cache/trackcfg``. ``TRACKCFG_CACHE=memory``
keeps nothing on disk; ``TRACKCFG_CACHE=off`` turns every loader cache off (this one
and ``basecache``): each load then parses and resolves every file afresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.util
import marshal
import os
import sys
import threading
import types
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import xxhash

from trackcfg.config.keypath import KeyParts
from trackcfg.config.marker import Marker
from trackcfg.config.readers import (
    BaseEntry,
    ConfigSource,
    KeyOrigin,
    ParsedConfig,
    parse_config,
)

__all__ = [
    "CACHE_DIR_VARIABLE",
    "CACHE_VARIABLE",
    "IMMUTABLE",
    "NOT_SHAREABLE",
    "DiskStore",
    "ParseCache",
    "cache_dir",
    "cache_mode",
    "fresh_copy",
    "is_shareable",
    "shareable_copy",
]

#: ``off``: no loader cache at all; ``memory``: nothing on disk; anything else: both.
CACHE_VARIABLE = "TRACKCFG_CACHE"
#: Where the disk store lives (default under ``XDG_CACHE_HOME``).
CACHE_DIR_VARIABLE = "TRACKCFG_CACHE_DIR"
_OFF = frozenset({"off", "0", "false", "no"})

#: Bump when the layout of an entry changes.
STORE_FORMAT = 1
_MAGIC = b"trackcfg-parse\0"


def cache_mode() -> str:
    """``"off"``, ``"memory"`` or ``"disk"``, from ``$TRACKCFG_CACHE`` (read per load)."""
    value = os.environ.get(CACHE_VARIABLE, "").strip().lower()
    if value in _OFF:
        return "off"
    return "memory" if value == "memory" else "disk"


def cache_dir() -> Path:
    """The directory of the disk store (not created here).

    ``$TRACKCFG_CACHE_DIR``; else ``$XDG_CACHE_HOME/trackcfg`` when that is an absolute
    path (the XDG spec ignores relative ones); else ``~/.cache/trackcfg``.
    """
    explicit = os.environ.get(CACHE_DIR_VARIABLE)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "trackcfg"


# ---------------------------------------------------------------------------- values

#: Leaf types that cannot change in place: safe to hand to many loads at once.
IMMUTABLE: frozenset[type] = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        complex,
        datetime.date,
        datetime.datetime,
        datetime.time,
        datetime.timedelta,
    }
)
#: The subset ``marshal`` writes back exactly.
_MARSHALLABLE: frozenset[type] = frozenset({str, int, float, bool, type(None), bytes, complex})


def is_shareable(value: object, leaves: frozenset[type] = IMMUTABLE) -> bool:
    """Whether ``value`` is dicts, lists and tuples (exactly) of immutable leaves.

    Such a value can be kept in a cache and handed out again as ``fresh_copy``: no
    load can reach, through it, anything another load sees.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.keys())  # type: ignore[attr-defined]
            stack.extend(item.values())  # type: ignore[attr-defined]
        elif kind is list or kind is tuple:
            stack.extend(item)  # type: ignore[arg-type]
        elif kind not in leaves:
            return False
    return True


def fresh_copy(value: object) -> object:
    """New dicts and lists all the way down (tuples too, as they may hold lists)."""
    kind = type(value)
    if kind is dict:
        return {k: fresh_copy(v) for k, v in value.items()}  # type: ignore[attr-defined]
    if kind is list:
        return [fresh_copy(v) for v in value]  # type: ignore[attr-defined]
    if kind is tuple:
        return tuple(fresh_copy(v) for v in value)  # type: ignore[attr-defined]
    return value


#: What ``shareable_copy`` returns for a value that is not ``is_shareable``.
NOT_SHAREABLE: object = object()


class _NotShareable(Exception):
    """Raised deep in ``_shareable_copy``'s walk; never leaves ``shareable_copy``."""


def shareable_copy(value: object) -> object:
    """``fresh_copy(value)``, checking ``is_shareable(value)`` in the same walk.

    One walk instead of two where a value is kept (``basecache.keep_base``).

    Returns:
        The copy, or ``NOT_SHAREABLE`` when ``is_shareable(value)`` is False.
    """
    try:
        return _shareable_copy(value)
    except _NotShareable:
        return NOT_SHAREABLE


def _shareable_copy(value: object) -> object:
    kind = type(value)
    if kind is dict:
        out = {}
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) not in IMMUTABLE and not is_shareable(key):
                raise _NotShareable
            out[key] = _shareable_copy(item)
        return out
    if kind is list:
        return [_shareable_copy(v) for v in value]  # type: ignore[attr-defined]
    if kind is tuple:
        return tuple(_shareable_copy(v) for v in value)  # type: ignore[attr-defined]
    if kind not in IMMUTABLE:
        raise _NotShareable
    return value


# ---------------------------------------------------------------------------- disk

#: One parse, as plain values: (bases, origins, code, data, markers, absolute,
#: unused functions, pure).
_Record = tuple[object, ...]


def _to_record(parsed: ParsedConfig) -> _Record:
    return (
        tuple((b.name, b.line) for b in parsed.bases),
        tuple((parts, o.line, o.ref) for parts, o in parsed.origins.items()),
        parsed.code,
        parsed.data,
        tuple((m.token, m.body, m.ref, m.line, m.col) for m in parsed.markers),
        parsed.absolute,
        parsed.unused_functions,
        parsed.pure,
    )


def _from_record(source: ConfigSource, record: _Record) -> ParsedConfig:
    bases, origins, code, data, markers, absolute, unused, pure = record
    origin_map: dict[KeyParts, KeyOrigin] = {
        parts: KeyOrigin(line, ref)
        for parts, line, ref in origins  # type: ignore[attr-defined]
    }
    return ParsedConfig(
        source,
        tuple(BaseEntry(name, line) for name, line in bases),  # type: ignore[attr-defined]
        origin_map,
        code=code,  # type: ignore[arg-type]
        data=data,  # type: ignore[arg-type]
        markers=tuple(Marker(*m) for m in markers),  # type: ignore[attr-defined]
        absolute=bool(absolute),
        unused_functions=unused,  # type: ignore[arg-type]
        pure=bool(pure),
    )


def _loader_fingerprint() -> str:
    """A digest of everything that decides a parse besides the file: this package's code.

    Read once per process, from the ``.py`` sources beside this module (a loader
    change, released or not, makes a new key), plus the interpreter's version and
    bytecode magic (``marshal`` and code objects are per version).
    """
    hasher = xxhash.xxh3_128()
    hasher.update(f"{STORE_FORMAT}\0{sys.version}\0".encode())
    hasher.update(importlib.util.MAGIC_NUMBER)
    for path in sorted(Path(__file__).parent.glob("*.py")):
        hasher.update(path.name.encode() + b"\0")
        hasher.update(path.read_bytes())
    return hasher.hexdigest()


def _has_set_constant(value: object) -> bool:
    """Whether a code object's constants (nested code and tuples too) hold a frozenset."""
    if isinstance(value, frozenset):
        return True
    if isinstance(value, types.CodeType):
        return any(_has_set_constant(c) for c in value.co_consts)
    if isinstance(value, tuple):
        return any(_has_set_constant(c) for c in value)
    return False


class DiskStore:
    """Parse records in one directory, one file per key.

    Args:
        directory: Where the entries live (created on first write).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fingerprint: str | None = None
        self._writable = True

    def _key(self, source: ConfigSource, file_digest: str) -> bytes:
        if self._fingerprint is None:
            self._fingerprint = _loader_fingerprint()
        parts = (self._fingerprint, file_digest, str(source.path), source.display, source.suffix)
        return "\0".join(parts).encode("utf-8", "surrogatepass")

    def _path(self, key: bytes) -> Path:
        return self.directory / f"{xxhash.xxh3_128_hexdigest(key)}.parse"

    def load(self, source: ConfigSource, file_digest: str) -> ParsedConfig | None:
        """The stored parse of ``source``, or None (missing, stale, corrupt: all misses)."""
        key = self._key(source, file_digest)
        try:
            blob = self._path(key).read_bytes()
        except OSError:
            return None
        head = len(_MAGIC) + 16
        payload = blob[head:]
        if blob[: len(_MAGIC)] != _MAGIC or blob[len(_MAGIC) : head] != xxhash.xxh3_128_digest(
            payload
        ):
            return None
        try:
            stored_key, record = marshal.loads(payload)
            if stored_key != key:
                return None
            return _from_record(source, record)
        except (ValueError, TypeError, EOFError):
            return None

    def save(self, source: ConfigSource, file_digest: str, parsed: ParsedConfig) -> None:
        """Store ``parsed``; skipped when its values are not plain or nothing can be written."""
        if not self._writable:
            return
        if parsed.data is not None and not is_shareable(parsed.data, _MARSHALLABLE):
            return  # dates, sets, tagged YAML values: marshal would not give them back
        if parsed.code is not None and _has_set_constant(parsed.code):
            # `{'a', 'b'}` compiles to a frozenset constant; marshal rebuilds it with
            # the same items, but a set made from it may then iterate in another order.
            return
        key = self._key(source, file_digest)
        try:
            payload = marshal.dumps((key, _to_record(parsed)))  # type: ignore[arg-type]
        except ValueError:
            return
        blob = _MAGIC + xxhash.xxh3_128_digest(payload) + payload
        target = self._path(key)
        temp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(temp, "wb") as stream:
                stream.write(blob)
            os.replace(temp, target)
        except OSError:
            # A read-only or full disk: the cache is only a shortcut, loading goes on.
            self._writable = False
            with contextlib.suppress(OSError):
                temp.unlink()


# ---------------------------------------------------------------------------- memory


class ParseCache:
    """``parse_config`` with its results kept in memory, and on disk when given a store.

    Args:
        capacity: Most parses kept in memory (least recently used go first).
        parse: The parser (``readers.parse_config``).
    """

    def __init__(
        self,
        capacity: int = 4096,
        parse: Callable[[ConfigSource], ParsedConfig] = parse_config,
    ) -> None:
        self.capacity = capacity
        self._parse = parse
        self._entries: OrderedDict[tuple[str, str, str, str], ParsedConfig] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every parse kept in memory."""
        with self._lock:
            self._entries.clear()

    def parse(
        self, source: ConfigSource, file_digest: str, store: DiskStore | None = None
    ) -> ParsedConfig:
        """``parse_config(source)``, reused when the same text was parsed at the same path.

        Args:
            source: The file.
            file_digest: The digest of the file's bytes (``source.text`` decodes them).
            store: Where to look next, and keep what is parsed here; None for memory only.

        Raises:
            ConfigError: As ``parse_config`` (errors are never kept).
        """
        if source.path is None:
            # Text from `fromstring`: its placeholders depend on the current directory.
            return self._parse(source)
        key = (file_digest, str(source.path), source.display, source.suffix)
        with self._lock:
            parsed = self._entries.get(key)
            if parsed is not None:
                self._entries.move_to_end(key)
        if parsed is None:
            parsed = store.load(source, file_digest) if store is not None else None
            if parsed is None:
                parsed = self._parse(source)
                if store is not None:
                    store.save(source, file_digest, parsed)
            if parsed.data is not None and not is_shareable(parsed.data):
                return parsed  # its values could be changed through a load: not kept
            with self._lock:
                self._entries[key] = parsed
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
        if parsed.source is not source:
            parsed = dataclasses.replace(parsed, source=source)
        if parsed.data is not None:
            # Loading pops private keys from a file's data: each load gets its own.
            parsed = dataclasses.replace(parsed, data=fresh_copy(parsed.data))  # type: ignore[arg-type]
        return parsed
