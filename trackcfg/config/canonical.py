"""Canonical bytes of a resolved config: the one input of the content hash.

The canonical form is a versioned, *typed* JSON document, written with sorted keys,
no whitespace and ASCII-only escapes, so the same resolved config gives the same
bytes on every machine, process, Python build and ``PYTHONHASHSEED``::

    {"config":<value>,"format":"trackcfg.canonical","version":1}

Values are encoded like this (``encode_value``; ``decode_value`` is its inverse):

=========================  ==============================================================
Python value               canonical JSON
=========================  ==============================================================
``None``, ``True``         ``null``, ``true`` / ``false``
``int``                    a JSON integer: ``3`` (never has ``.`` or ``e``); beyond 10,000
                           bits ``{"!int":"0x..."}`` (Python will not print longer ints)
finite ``float``           shortest round-trip ``repr``: ``1.0``, ``-0.0``, ``1e+20``
``inf``, ``-inf``, ``nan`` ``{"!float":"inf"}``, ``{"!float":"-inf"}``, ``{"!float":"nan"}``
``str``                    a JSON string
``list``                   a JSON array
``tuple``                  ``{"!tuple":[...]}``
dict / any ``Mapping``     a JSON object when every key is a ``str`` (only a dict of one
                           key that starts with ``!`` is escaped, by one more ``!``, as it
                           would read as a tag); otherwise
                           ``{"!dict":[[key,value],...]}`` sorted by the canonical key
``set`` / ``frozenset``    ``{"!set":[...]}`` / ``{"!frozenset":[...]}``, sorted by the
                           canonical bytes of each element
``bytes``                  ``{"!bytes":"<hex>"}``
class                      ``{"!class":"module:qualname"}``
function (incl. builtins)  ``{"!function":"module:qualname"}``
enum member                ``{"!enum":"module:qualname.MEMBER"}``
``pathlib`` path           ``{"!path":"<posix form>"}``
``datetime.date``          ``{"!date":"2024-01-01"}`` (a YAML ``2024-01-01`` loads as one)
``datetime.datetime``      ``{"!datetime":"2024-01-01T10:00:00+01:00"}`` (``isoformat``)
text in the project root   ``{"!rooted":["", "/configs/data"]}``: only when hashed with a
                           ``root`` (``Config.hash`` of a config that uses
                           ``{{ fileDirname }}`` or ``__file__``), a string holding the
                           root's absolute path, split at each occurrence; see
                           ``RootedText``
=========================  ==============================================================

Rules a reader would not guess:

* ``True``, ``1`` and ``1.0`` encode differently, and so do ``[1]`` and ``(1,)``: a type
  change changes the hash. ``0.0`` and ``-0.0`` differ too; every NaN is the same NaN.
* Subclasses are encoded as their base: a ``ConfigDict`` or ``OrderedDict`` is a dict, a
  named tuple is a tuple, a ``str`` subclass is a string (except ``QualifiedName``, which
  re-encodes as the class/function/enum it names). NumPy scalars are encoded as the
  Python scalar ``.item()`` returns.
* The date, datetime and rooted tags were added after version 1 without a version
  change: they only appear in configs that no earlier trackcfg could hash at all (or,
  for rooted text, hashed as machine-dependent absolute paths), every earlier document
  keeps its bytes, and an earlier reader refuses the new tags as unknown.
* Classes and functions are encoded by name, never imported while decoding:
  ``from_canonical_bytes`` returns them as ``QualifiedName`` strings unless
  ``resolve=True``. Lambdas and local (``<locals>``) objects have no importable name and
  are refused, as is anything else not listed above (``CanonicalizationError`` naming the
  key path).
"""

from __future__ import annotations

import datetime
import enum
import importlib
import json
import math
import pathlib
import re
import types
from collections.abc import Collection, Mapping
from typing import Any, Literal

import xxhash

from trackcfg.config.keypath import KeyPath
from trackcfg.errors import CanonicalizationError, ConfigImportError

__all__ = [
    "CANONICAL_VERSION",
    "QualifiedName",
    "RootedText",
    "decode_value",
    "digest",
    "encode_value",
    "from_canonical_bytes",
    "root_parts",
    "to_canonical_bytes",
]

#: Version of the canonical byte form; bumped whenever any encoding above changes.
CANONICAL_VERSION = 1

_FORMAT = "trackcfg.canonical"
_MAX_PLAIN_INT_BITS = 10_000  # about 3,000 decimal digits, below Python's 4,300 limit

QualifiedKind = Literal["class", "function", "enum"]


class QualifiedName(str):
    """The ``module:qualname`` of a class, function or enum member, not imported.

    ``from_canonical_bytes`` returns these in place of the objects so that reading a
    snapshot never executes code. Encoding a ``QualifiedName`` gives back the tag it
    was decoded from, so the bytes round-trip exactly.

    Example:
        >>> name = QualifiedName("collections:OrderedDict", kind="class")
        >>> name.module, name.qualname
        ('collections', 'OrderedDict')
        >>> name.resolve().__name__
        'OrderedDict'
    """

    __slots__ = ("kind",)
    kind: QualifiedKind

    def __new__(cls, text: str, kind: QualifiedKind = "class") -> QualifiedName:
        if ":" not in text:
            raise ValueError(f"qualified name {text!r} is not of the form 'module:qualname'")
        self = super().__new__(cls, text)
        self.kind = kind
        return self

    @property
    def module(self) -> str:
        """The module that defines the object."""
        return self.partition(":")[0]

    @property
    def qualname(self) -> str:
        """The dotted path of the object inside its module."""
        return self.partition(":")[2]

    def resolve(self) -> object:
        """Import the module and return the object this name points at.

        Raises:
            ConfigImportError: The module cannot be imported or lacks the name.
        """
        try:
            obj: object = importlib.import_module(self.module)
            for attr in self.qualname.split("."):
                obj = getattr(obj, attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigImportError(
                f"cannot import {self.kind} {str(self)!r}: {exc}",
                hint="install or make importable the module that defines it",
            ) from exc
        return obj

    def __repr__(self) -> str:
        return f"QualifiedName({str(self)!r}, kind={self.kind!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (QualifiedName, (str(self), self.kind))


class RootedText(str):
    """Text that holds the project root's absolute path: hashed without it.

    ``{{ fileDirname }}`` (and ``__file__`` in a ``.py`` config) give absolute paths,
    so the same config would hash differently in a checkout at another path. When a
    config uses them, ``to_canonical_bytes(data, root=...)`` encodes every string that
    holds the root (at path boundaries) as the ``parts`` between its occurrences, and
    decoding gives a ``RootedText`` whose text joins the parts with the root the reader
    names (``.`` by default). Encoding a ``RootedText`` gives its parts back, whatever
    its text, so canonical bytes round-trip exactly.

    Example:
        >>> text = RootedText(("", "/configs/data"), "/home/me/project")
        >>> str(text), text.parts
        ('/home/me/project/configs/data', ('', '/configs/data'))
        >>> encode_value(text)
        {'!rooted': ['', '/configs/data']}
    """

    __slots__ = ("parts", "root")
    parts: tuple[str, ...]
    root: str

    def __new__(cls, parts: tuple[str, ...], root: str = ".") -> RootedText:
        if len(parts) < 2 or not all(type(p) is str for p in parts):
            raise ValueError("rooted text is two or more strings (around the root)")
        self = super().__new__(cls, root.join(parts))
        self.parts = tuple(parts)
        self.root = root
        return self

    def __repr__(self) -> str:
        return f"RootedText({self.parts!r}, {self.root!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (RootedText, (self.parts, self.root))


def root_parts(text: str, root: str) -> tuple[str, ...] | None:
    """``text`` split at each occurrence of the absolute path ``root``, else None.

    Only whole-path occurrences count: ``root`` not inside a longer name
    (``/home/me/projector``) nor after another path element (``/x/home/me/project``).

    Example:
        >>> root_parts("/r/p/configs/../data", "/r/p")
        ('', '/configs/../data')
        >>> root_parts("/r/pp/configs", "/r/p") is None
        True
    """
    if root not in text:
        return None
    pattern = _root_pattern(root)
    parts = tuple(pattern.split(text))
    return parts if len(parts) > 1 else None


_ROOT_PATTERNS: dict[str, re.Pattern[str]] = {}


def _root_pattern(root: str) -> re.Pattern[str]:
    pattern = _ROOT_PATTERNS.get(root)
    if pattern is None:
        # Not preceded by a path character, not followed by a name character.
        pattern = re.compile(rf"(?<![\w.\-/]){re.escape(root)}(?![\w.\-])")
        _ROOT_PATTERNS[root] = pattern
    return pattern


class _Unencodable(Exception):
    """Internal: carries the failing value up the tree, collecting its key path."""

    def __init__(self, value: object, reason: str) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.parts: list[str | int] = []


def _key_part(key: object) -> str | int:
    if isinstance(key, str | int) and not isinstance(key, bool):
        return key
    return repr(key)


def _qualified(obj: object, kind: str) -> str:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise _Unencodable(obj, f"{kind} {obj!r} has no importable module and qualified name")
    if "<" in qualname:
        # <lambda>, <locals>: nothing to import by name, so the hash could not tell two apart.
        raise _Unencodable(
            obj, f"{kind} {module}:{qualname} is local or a lambda and has no import path"
        )
    return f"{module}:{qualname}"


def _is_plain_key(key: object) -> bool:
    # A str subclass that encodes as a tag (an enum member, a QualifiedName) is not a plain key.
    return isinstance(key, str) and not isinstance(key, QualifiedName | enum.Enum)


def _sort_token(encoded: object) -> str:
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _encode(value: Any) -> object:
    # ``Any`` (private function): the exact-type checks below narrow nothing for mypy,
    # and ``typing.cast`` is a function call on the hottest path of every config load.
    t = type(value)
    # Exact built-in types first: the overwhelmingly common case, kept cheap.
    if t is str or value is None or t is bool:
        return value
    if t is int:
        # Python refuses to print ints of more than 4300 digits; huge ones go as hex.
        return value if value.bit_length() <= _MAX_PLAIN_INT_BITS else {"!int": hex(value)}
    if t is float:
        if math.isfinite(value):
            return value
        return {"!float": "nan" if value != value else ("inf" if value > 0 else "-inf")}
    if t is dict:
        return _encode_mapping(value)
    if t is list:
        return _encode_items(value)
    if t is tuple:
        return {"!tuple": _encode_items(value)}
    if isinstance(value, Mapping):
        return _encode_mapping(value)
    if isinstance(value, QualifiedName):
        return {"!" + value.kind: str(value)}
    if isinstance(value, RootedText):
        return {"!rooted": list(value.parts)}
    if isinstance(value, enum.Enum):
        if not isinstance(value.name, str):
            raise _Unencodable(value, f"enum value {value!r} has no member name")
        return {"!enum": _qualified(type(value), "enum") + "." + value.name}
    if isinstance(value, type):
        return {"!class": _qualified(value, "class")}
    if isinstance(value, types.FunctionType | types.BuiltinFunctionType):
        return {"!function": _qualified(value, "function")}
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _encode(int(value))
    if isinstance(value, float):
        return _encode(float(value))
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return _encode_items(value)
    if isinstance(value, tuple):
        return {"!tuple": _encode_items(value)}
    if isinstance(value, set | frozenset):
        items = _encode_items(value)
        items.sort(key=_sort_token)
        return {"!set" if isinstance(value, set) else "!frozenset": items}
    if isinstance(value, bytes):
        return {"!bytes": value.hex()}
    if isinstance(value, pathlib.PurePath):
        return {"!path": value.as_posix()}
    # datetime is a subclass of date: it goes first.
    if isinstance(value, datetime.datetime):
        return {"!datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"!date": value.isoformat()}
    if t.__module__ == "numpy" and hasattr(value, "item"):
        # NumPy scalars (np.int64, np.float32, np.bool_) hash as the Python scalar they hold;
        # checked by module name so this file never imports numpy.
        item = value.item()
        if type(item) in (bool, int, float, str, bytes):
            return _encode(item)
    raise _Unencodable(value, f"cannot encode a value of type {t.__qualname__}: {value!r}")


def _encode_items(items: Collection[object]) -> list[object]:
    try:
        return [_encode(item) for item in items]
    except _Unencodable as exc:
        # Error path only: find the failing element's index (sets have no stable index).
        if not isinstance(items, set | frozenset):
            for index, item in enumerate(items):
                try:
                    _encode(item)
                except _Unencodable:
                    exc.parts.append(index)
                    break
        raise


def _encode_mapping(mapping: Mapping[Any, object]) -> object:  # Any: keys are invariant
    plain = True
    for key in mapping:
        if type(key) is not str and not _is_plain_key(key):
            plain = False
            break
    if plain:
        out: dict[str, object] = {}
        for key, item in mapping.items():
            if type(key) is not str:
                key = str(key)  # a str subclass key is written as the plain string it holds
            try:
                out[key] = _encode(item)
            except _Unencodable as exc:
                exc.parts.append(key)
                raise
        if len(out) == 1:
            # Only a one-key dict can look like a tag: escape its "!" key by one more "!".
            ((key, item),) = out.items()
            if key[:1] == "!":
                return {"!" + key: item}
        return out
    pairs: list[tuple[str, list[object]]] = []
    for key, item in mapping.items():
        try:
            encoded_key = _encode(key)
            encoded_item = _encode(item)
        except _Unencodable as exc:
            exc.parts.append(_key_part(key))
            raise
        pairs.append((_sort_token(encoded_key), [encoded_key, encoded_item]))
    pairs.sort(key=lambda pair: pair[0])
    return {"!dict": [pair for _, pair in pairs]}


def _fail(exc: _Unencodable, prefix: tuple[str | int, ...] = ()) -> CanonicalizationError:
    path = KeyPath((*prefix, *reversed(exc.parts)))
    return CanonicalizationError(
        exc.reason,
        key_path=str(path) or None,
        hint="config values must be plain data (None, bool, int, float, str, list, tuple, "
        "dict), or importable classes, functions and enum members",
    )


def encode_value(value: object) -> object:
    """Encode one value into the typed JSON-able form used by the canonical bytes.

    Args:
        value: Any value a resolved config may hold.

    Returns:
        Plain JSON data (dicts with ``str`` keys, lists, str, int, finite float, bool,
        None); tuples, non-finite floats, classes etc. become one-key ``{"!tag": ...}``
        objects.

    Raises:
        CanonicalizationError: Some part of ``value`` cannot be encoded; ``key_path``
            names it relative to ``value``.

    Example:
        >>> encode_value({"size": (224, 224), "lr": float("inf")})
        {'size': {'!tuple': [224, 224]}, 'lr': {'!float': 'inf'}}
    """
    try:
        return _encode(value)
    except _Unencodable as exc:
        raise _fail(exc) from None


def to_canonical_bytes(data: Mapping[str, object], *, root: str | None = None) -> bytes:
    """Return the canonical bytes of a resolved config (what ``Config.hash`` digests).

    Args:
        data: The resolved config: a dict (or ``ConfigDict``) of plain values.
        root: The project root's absolute path (posix form), for a config whose values
            hold it because they come from ``{{ fileDirname }}`` or ``__file__``: string
            values holding it are encoded without it (``RootedText``), so a checkout at
            another path hashes the same. None for every other config.

    Returns:
        ASCII JSON bytes, identical for equal configs whatever their key order.

    Raises:
        CanonicalizationError: A value cannot be encoded; ``key_path`` names it.
    """
    if not isinstance(data, Mapping):
        raise CanonicalizationError(
            f"expected a mapping of config keys to values, got {type(data).__name__}"
        )
    if root is not None:
        data = _rooted(data, root)  # type: ignore[assignment]
    try:
        encoded = _encode_mapping(data)
    except _Unencodable as exc:
        raise _fail(exc) from None
    document = {"config": encoded, "format": _FORMAT, "version": CANONICAL_VERSION}
    # ensure_ascii: bytes never depend on an encoder's handling of odd code points
    # (lone surrogates included); allow_nan=False: non-finite floats are always tagged.
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii")


def _rooted(value: object, root: str) -> object:
    """``value`` with every string value that holds ``root`` as a ``RootedText``."""
    t = type(value)
    if t is str:
        parts = root_parts(value, root)  # type: ignore[arg-type]
        return value if parts is None else RootedText(parts, root)
    if isinstance(value, Mapping):
        return {k: _rooted(v, root) for k, v in value.items()}
    if t is list:
        return [_rooted(v, root) for v in value]  # type: ignore[attr-defined]
    if t is tuple:
        return tuple(_rooted(v, root) for v in value)  # type: ignore[attr-defined]
    return value


def _decode(obj: object, resolve: bool, root: str) -> object:
    t = type(obj)
    if t is str or obj is None or t is bool or t is int or t is float:
        return obj
    if t is list:
        return [_decode(item, resolve, root) for item in obj]  # type: ignore[attr-defined]
    if t is not dict:
        raise ValueError(f"not canonical JSON data: {obj!r}")
    mapping: dict[str, object] = obj  # type: ignore[assignment]
    if len(mapping) == 1:
        ((key, payload),) = mapping.items()
        if key[:1] == "!":
            if key[1:2] == "!":
                return {key[1:]: _decode(payload, resolve, root)}
            return _decode_tagged(key[1:], payload, resolve, root)
    return {key: _decode(item, resolve, root) for key, item in mapping.items()}


def _decode_tagged(tag: str, payload: object, resolve: bool, root: str) -> object:
    if tag == "tuple" and type(payload) is list:
        return tuple(_decode(item, resolve, root) for item in payload)
    if tag == "float" and payload in ("inf", "-inf", "nan"):
        return float(payload)
    if tag == "dict" and type(payload) is list:
        out: dict[object, object] = {}
        for pair in payload:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError(f"not canonical JSON data: '!dict' entry {pair!r}")
            out[_decode(pair[0], resolve, root)] = _decode(pair[1], resolve, root)
        return out
    if tag in ("set", "frozenset") and type(payload) is list:
        items = [_decode(item, resolve, root) for item in payload]
        return set(items) if tag == "set" else frozenset(items)
    if tag == "int" and type(payload) is str:
        return int(payload, 16)
    if tag == "bytes" and type(payload) is str:
        return bytes.fromhex(payload)
    if tag == "path" and type(payload) is str:
        return pathlib.Path(payload)
    if tag == "date" and type(payload) is str:
        return datetime.date.fromisoformat(payload)
    if tag == "datetime" and type(payload) is str:
        return datetime.datetime.fromisoformat(payload)
    if tag == "rooted" and type(payload) is list:
        return RootedText(tuple(payload), root)
    if tag in ("class", "function") and type(payload) is str:
        name = QualifiedName(payload, kind=tag)  # type: ignore[arg-type]
        return name.resolve() if resolve else name
    if tag == "enum" and type(payload) is str:
        name = QualifiedName(payload, kind="enum")
        return name.resolve() if resolve else name
    raise ValueError(f"not canonical JSON data: unknown tag {'!' + tag!r} with {payload!r}")


def decode_value(obj: object, *, resolve: bool = False, root: str = ".") -> object:
    """Invert ``encode_value``.

    Args:
        obj: Data produced by ``encode_value`` (or parsed from canonical JSON).
        resolve: Import classes, functions and enum members instead of returning
            ``QualifiedName`` strings.
        root: The project root to put back into rooted text (``RootedText``).

    Returns:
        The value; ``encode_value(decode_value(obj)) == obj``.

    Raises:
        ValueError: ``obj`` is not in the canonical encoding.
        ConfigImportError: ``resolve=True`` and a named object cannot be imported.
    """
    return _decode(obj, resolve, root)


def from_canonical_bytes(
    data: bytes, *, resolve: bool = False, root: str = "."
) -> dict[str, object]:
    """Read canonical bytes back into the resolved config they encode.

    Args:
        data: Bytes from ``to_canonical_bytes``.
        resolve: Import classes, functions and enum members (by default they come
            back as ``QualifiedName`` strings and nothing is imported).
        root: The project root to put back into rooted text (``RootedText``): the
            checkout the config is used in. Relative paths by default.

    Returns:
        Plain dicts, lists, tuples and scalars; ``to_canonical_bytes`` of the result
        gives ``data`` again.

    Raises:
        ValueError: ``data`` is not canonical bytes of a supported version.
        ConfigImportError: ``resolve=True`` and a named object cannot be imported.
    """
    document = json.loads(data)
    if (
        type(document) is not dict
        or document.get("format") != _FORMAT
        or set(document) != {"config", "format", "version"}
    ):
        raise ValueError("not trackcfg canonical bytes")
    if document["version"] != CANONICAL_VERSION:
        raise ValueError(
            f"canonical bytes of version {document['version']!r}; "
            f"this trackcfg reads version {CANONICAL_VERSION}"
        )
    config = _decode(document["config"], resolve, root)
    if type(config) is not dict:
        raise ValueError("not trackcfg canonical bytes: the config is not a mapping")
    return config


def digest(data: bytes) -> str:
    """The xxh3-128 hex digest (32 lowercase hex chars) of ``data``.

    Used for ``Config.hash`` (over ``to_canonical_bytes``) and lineage file digests.
    """
    return xxhash.xxh3_128_hexdigest(data)
