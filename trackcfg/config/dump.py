"""Write a resolved config as Python (``pretty_text``), YAML or JSON text.

``to_python_text`` is the exact one: reloading its output as a ``.py`` config gives
the same values and the same hash for everything the canonical form encodes. It is
our own small formatter (no yapf), in the ``dict(...)`` style of mmengine's
``pretty_text``:

* key order is kept; a dict whose keys are all identifiers prints as ``dict(a=1)``,
  any other dict as a ``{'a-b': 1, 2: 3}`` literal;
* a value that fits in 79 columns stays on one line, otherwise its items go one per
  line, indented by 4, with a trailing comma;
* ``inf``/``nan`` print as ``float('inf')``/``float('nan')``; tuples, sets,
  frozensets and bytes as Python literals; ``pathlib`` paths as ``pathlib.Path(...)``;
  dates as ``datetime.date.fromisoformat('2024-01-01')`` (and ``datetime.datetime``);
* classes, functions and enum members print as import paths
  (``torch.nn.modules.linear.Linear``) with ``import torch.nn.modules.linear`` at
  the top; a ``QualifiedName`` (from a snapshot) prints as the object it names;
* a top-level key that would shadow a name the text uses (``dict = 1``) makes the
  text use a private alias for that name (``from builtins import dict as
  __trackcfg_dict``); private ``__`` names and imports are not config keys.

``to_yaml_text`` and ``to_json_text`` keep key order and, read back by trackcfg's
readers, give the same hash too; nothing is imported on the way back (classes come
back as ``QualifiedName``, which hashes like the class and which the registry
resolves when building):

=====================  ====================================  ==========================
value                  YAML                                  JSON
=====================  ====================================  ==========================
tuple                  ``!!python/tuple [1, 2]``             ``{"!tuple": [1, 2]}``
inf / nan              ``.inf`` / ``.nan``                   ``{"!float": "inf"}``
non-str dict keys      native keys (``1: a``)                ``{"!dict": [[1, "a"]]}``
set / frozenset        ``!!set`` / ``!frozenset [...]``      ``{"!set": [...]}`` ...
bytes / path           ``!!binary`` / ``!path a/b``          ``{"!bytes": "00ff"}`` ...
date / datetime        ``2024-01-01`` (YAML's own)           ``{"!date": "2024-01-01"}``
class, function, enum  ``!class 'collections:OrderedDict'``  ``{"!class": "..."}``
=====================  ====================================  ==========================

Text holding ``{{`` (a string value or key, a path) is written so that no reader takes
it for a placeholder: split between the braces in Python (``'a{' + '{ x }}'``, an
expression the reader evaluates but never substitutes), escaped in JSON
(``"a{\\u007b x }}"``) and in double-quoted YAML (``"a{\\x7b x }}"``). Readers
substitute placeholders in the raw text, so an escape is enough.

YAML readers need ``register_yaml_tags`` for the local tags; JSON readers apply
``canonical.decode_value`` to the parsed data (JSON uses the canonical typed encoding,
so a one-key dict whose key starts with ``!`` is escaped as ``!!``). Values the
canonical form cannot encode are refused here too (``CanonicalizationError`` naming
the key path).
"""

from __future__ import annotations

import datetime
import enum
import json
import keyword
import math
import pathlib
import re
import types
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from trackcfg.config.canonical import QualifiedKind, QualifiedName, encode_value
from trackcfg.config.keypath import KeyPath
from trackcfg.errors import CanonicalizationError, ConfigError

if TYPE_CHECKING:
    # PyYAML is imported on first YAML use: pretty_text of a .py config never needs it.
    import yaml

__all__ = [
    "YAML_TAGS",
    "register_yaml_tags",
    "to_json_text",
    "to_python_text",
    "to_text",
    "to_yaml_text",
]

_WIDTH = 79
_INDENT = "    "
_ALIAS_PREFIX = "__trackcfg_"

#: Every point between two opening braces: where ``{{`` is split or escaped.
_BETWEEN_BRACES = re.compile(r"(?<=\{)(?=\{)")


def _python_str(text: str) -> str:
    """A Python expression for ``text`` in which no reader sees a ``{{`` placeholder."""
    if "{{" not in text:
        return repr(text)
    return " + ".join(repr(piece) for piece in _BETWEEN_BRACES.split(text))


class _Unwritable(Exception):
    """Internal: carries the failing value up the tree, collecting its key path."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.parts: list[str | int] = []


def _fail(exc: _Unwritable) -> CanonicalizationError:
    path = KeyPath(tuple(reversed(exc.parts)))
    return CanonicalizationError(
        exc.reason,
        key_path=str(path) or None,
        hint="config values must be plain data, or importable classes, functions and enums",
    )


def _is_name(key: object) -> bool:
    # Python NFKC-normalises identifiers (``ﬁ`` reads back as ``fi``): such keys need quotes.
    return (
        type(key) is str
        and key.isidentifier()
        and not keyword.iskeyword(key)
        and unicodedata.normalize("NFKC", key) == key
    )


def _qualified_parts(obj: object) -> tuple[str, str]:
    """(module, qualname) of a class/function/enum member, or ``_Unwritable``."""
    if isinstance(obj, QualifiedName):
        return obj.module, obj.qualname
    if isinstance(obj, enum.Enum):
        module, qualname = _qualified_parts(type(obj))
        return module, f"{qualname}.{obj.name}"
    module_name: object = getattr(obj, "__module__", None)
    qualified_name: object = getattr(obj, "__qualname__", None)
    if (
        not isinstance(module_name, str)
        or not isinstance(qualified_name, str)
        or "<" in qualified_name
    ):
        raise _Unwritable(f"{obj!r} has no import path")
    return module_name, qualified_name


class _PythonWriter:
    """Formats values as Python source; collects the imports the text needs."""

    def __init__(self, top_keys: set[str]) -> None:
        self.top_keys = top_keys
        self.imports: dict[str, str] = {}  # import statement -> the name it binds
        self.flat_cache: dict[int, str] = {}

    # -- names ------------------------------------------------------------------------

    def builtin(self, name: str) -> str:
        """``dict``/``float``/...: the bare name unless a top-level key shadows it."""
        if name not in self.top_keys:
            return name
        alias = _ALIAS_PREFIX + name
        self.imports[f"from builtins import {name} as {alias}"] = alias
        return alias

    def module(self, module: str) -> str:
        """An expression naming ``module``, importing it at the top of the text."""
        if module == "builtins":
            return ""
        if not all(part.isidentifier() for part in module.split(".")):
            raise _Unwritable(f"module {module!r} cannot be imported by name")
        root = module.split(".", 1)[0]
        if root in self.top_keys:
            alias = _ALIAS_PREFIX + module.replace(".", "_")
            self.imports[f"import {module} as {alias}"] = alias
            return alias
        self.imports[f"import {module}"] = root
        return module

    def qualified(self, obj: object) -> str:
        module, qualname = _qualified_parts(obj)
        if module == "builtins" and "." not in qualname:
            return self.builtin(qualname)
        if module == "builtins":
            return f"{self.builtin(qualname.split('.', 1)[0])}.{qualname.split('.', 1)[1]}"
        return f"{self.module(module)}.{qualname}"

    # -- one-line form ----------------------------------------------------------------

    def flat(self, value: object) -> str:
        t = type(value)
        if t is str:
            return _python_str(cast(str, value))
        if t is int or t is bool or value is None:
            return repr(value)
        if t is float:
            real = cast(float, value)
            if math.isfinite(real):
                return repr(real)
            text = "nan" if real != real else ("inf" if real > 0 else "-inf")
            return f"{self.builtin('float')}({text!r})"
        cached = self.flat_cache.get(id(value))
        if cached is not None:
            return cached
        text = self._flat_other(value)
        self.flat_cache[id(value)] = text
        return text

    def _flat_other(self, value: object) -> str:
        if isinstance(value, Mapping):
            head, items, tail = self.dict_parts(value)
            return head + ", ".join(k + v for k, v in items) + tail
        if isinstance(value, list):
            return "[" + ", ".join(self._items_flat(value)) + "]"
        if isinstance(value, tuple):
            texts = self._items_flat(value)
            return "(" + ", ".join(texts) + ("," if len(texts) == 1 else "") + ")"
        if isinstance(value, QualifiedName | enum.Enum | type):
            return self.qualified(value)
        if isinstance(value, types.FunctionType | types.BuiltinFunctionType):
            return self.qualified(value)
        # Subclasses of the scalars (enums are handled above) write as their base value.
        if isinstance(value, bool):
            return self.flat(bool(value))
        if isinstance(value, int):
            return self.flat(int(value))
        if isinstance(value, float):
            return self.flat(float(value))
        if isinstance(value, str):
            return self.flat(str(value))
        if isinstance(value, set | frozenset):
            ordered = sorted(value, key=lambda v: json.dumps(encode_value(v), sort_keys=True))
            body = ", ".join(self._items_flat(ordered))
            if isinstance(value, frozenset):
                return (
                    f"{self.builtin('frozenset')}({{{body}}})"
                    if body
                    else f"{self.builtin('frozenset')}()"
                )
            return "{" + body + "}" if body else f"{self.builtin('set')}()"
        if isinstance(value, bytes):
            return repr(bytes(value))
        if isinstance(value, pathlib.PurePath):
            return f"{self.module('pathlib')}.Path({_python_str(value.as_posix())})"
        if isinstance(value, datetime.date):
            # From the text the canonical form holds; a datetime is also a date.
            kind = "datetime" if isinstance(value, datetime.datetime) else "date"
            text = _python_str(value.isoformat())
            return f"{self.module('datetime')}.{kind}.fromisoformat({text})"
        if type(value).__module__ == "numpy" and hasattr(value, "item"):
            return self.flat(value.item())
        raise _Unwritable(f"cannot write a value of type {type(value).__qualname__}: {value!r}")

    def _items_flat(self, items: Sequence[object]) -> list[str]:
        out = []
        for index, item in enumerate(items):
            try:
                out.append(self.flat(item))
            except _Unwritable as exc:
                exc.parts.append(index)
                raise
        return out

    def dict_parts(self, mapping: Mapping[Any, object]) -> tuple[str, list[tuple[str, str]], str]:
        """(opening, [(key prefix, flat value)], closing) for a dict."""
        named = all(_is_name(key) for key in mapping)
        items: list[tuple[str, str]] = []
        for key, item in mapping.items():
            try:
                prefix = f"{key}=" if named else f"{self.flat(key)}: "
                items.append((prefix, self.flat(item)))
            except _Unwritable as exc:
                exc.parts.append(key if isinstance(key, str | int) else repr(key))
                raise
        if named:
            return f"{self.builtin('dict')}(", items, ")"
        return "{", items, "}"

    # -- multi-line layout --------------------------------------------------------------

    def layout(self, value: object, indent: str, used: int) -> str:
        """``value`` starting at column ``used``; broken over lines if it does not fit."""
        flat = self.flat(value)
        if used + len(flat) <= _WIDTH:
            return flat
        inner = indent + _INDENT
        if isinstance(value, Mapping) and value:
            head, items, tail = self.dict_parts(value)
            keys = list(value)
            lines = [
                inner + prefix + self.layout(value[key], inner, len(inner) + len(prefix)) + ","
                for key, (prefix, _) in zip(keys, items, strict=True)
            ]
            return head + "\n" + "\n".join(lines) + "\n" + indent + tail
        if isinstance(value, list | tuple) and value:
            head, tail = ("[", "]") if isinstance(value, list) else ("(", ")")
            lines = [inner + self.layout(item, inner, len(inner)) + "," for item in value]
            return head + "\n" + "\n".join(lines) + "\n" + indent + tail
        return flat


def to_python_text(data: Mapping[str, object]) -> str:
    """Write a resolved config as a Python config file (``Config.pretty_text``).

    Args:
        data: The resolved config; top-level keys must be Python variable names.

    Returns:
        Python source: import lines, a blank line, then ``key = value`` per top-level
        key in order. Executing it as a config gives back ``data`` exactly.

    Raises:
        ConfigError: A top-level key is not a variable name (or is private).
        CanonicalizationError: A value cannot be written; ``key_path`` names it.

    Example:
        >>> print(to_python_text({"model": dict(type="Net", size=(3, 3)), "lr": float("inf")}))
        model = dict(type='Net', size=(3, 3))
        lr = float('inf')
        <BLANKLINE>
    """
    for key in data:
        if not _is_name(key) or key.startswith("__"):
            raise ConfigError(
                "cannot write this top-level key as a Python variable",
                key_path=str(KeyPath((key,))),
                hint="dump to .json or .yaml, or rename the key",
            )
    _check(data)
    writer = _PythonWriter(set(data))
    lines = []
    for key, value in data.items():
        try:
            lines.append(f"{key} = {writer.layout(value, '', len(key) + 3)}")
        except _Unwritable as exc:
            exc.parts.append(key)
            raise _fail(exc) from None
    head = sorted(writer.imports)
    return "\n".join([*head, "", *lines, ""]) if head else "\n".join([*lines, ""])


# ------------------------------------------------------------------------------- YAML

#: YAML tags for values YAML has no type for (the canonical tags, as local YAML tags).
YAML_TAGS = ("!class", "!function", "!enum", "!frozenset", "!path")
_TUPLE_TAG = "tag:yaml.org,2002:python/tuple"


def _represent_tuple(dumper: yaml.SafeDumper, value: tuple[object, ...]) -> yaml.Node:
    return dumper.represent_sequence(_TUPLE_TAG, value, flow_style=True)


def _represent_mapping(dumper: yaml.SafeDumper, value: Mapping[object, object]) -> yaml.Node:
    return dumper.represent_dict(dict(value))


def _name_kind(value: object) -> str:
    if isinstance(value, QualifiedName):
        return value.kind
    if isinstance(value, enum.Enum):
        return "enum"
    return "class" if isinstance(value, type) else "function"


def _represent_name(dumper: yaml.SafeDumper, value: object) -> yaml.Node:
    try:
        module, qualname = _qualified_parts(value)
    except _Unwritable as exc:
        raise _representer_error(exc.reason) from None
    return dumper.represent_scalar(f"!{_name_kind(value)}", f"{module}:{qualname}")


def _represent_path(dumper: yaml.SafeDumper, value: pathlib.PurePath) -> yaml.Node:
    text = value.as_posix()
    return dumper.represent_scalar("!path", text, style=_yaml_str_style(text))


def _represent_frozenset(dumper: yaml.SafeDumper, value: frozenset[object]) -> yaml.Node:
    ordered = sorted(value, key=lambda v: json.dumps(encode_value(v), sort_keys=True))
    return dumper.represent_sequence("!frozenset", ordered, flow_style=True)


def _represent_set(dumper: yaml.SafeDumper, value: set[object]) -> yaml.Node:
    ordered = sorted(value, key=lambda v: json.dumps(encode_value(v), sort_keys=True))
    return dumper.represent_mapping("tag:yaml.org,2002:set", {v: None for v in ordered})


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if isinstance(value, QualifiedName | enum.Enum):
        return _represent_name(dumper, value)
    text = str(value)
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=_yaml_str_style(text))


def _yaml_str_style(text: str) -> str | None:
    # With allow_unicode PyYAML writes NEL / LS / PS raw in plain scalars, where a reader
    # takes them for line breaks: quote such strings (double quotes escape them). `{{`
    # is escaped after emitting, which only a double-quoted scalar allows.
    if "{{" in text or any(ch in text for ch in "\x85\u2028\u2029"):
        return '"'
    return None


def _represent_number(dumper: yaml.SafeDumper, value: float) -> yaml.Node:
    # int/float subclasses (numpy's float64, ...) as their base; IntEnum members by name.
    if isinstance(value, enum.Enum):
        return _represent_name(dumper, value)
    if isinstance(value, int):
        return dumper.represent_int(int(value))
    return dumper.represent_float(float(value))


def _represent_other(dumper: yaml.SafeDumper, value: object) -> yaml.Node:
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return dumper.represent_data(value.item())
    raise _representer_error(f"cannot represent {value!r}")


def _representer_error(reason: str) -> Exception:
    import yaml

    return yaml.representer.RepresenterError(reason)


_DUMPER: type[yaml.SafeDumper] | None = None


def _yaml_dumper() -> type[yaml.SafeDumper]:
    """SafeDumper + tuples, mapping subclasses and the tags above (built on first use)."""
    global _DUMPER
    if _DUMPER is None:
        import yaml

        class YamlDumper(yaml.SafeDumper):
            pass

        YamlDumper.add_representer(str, _represent_str)
        YamlDumper.add_multi_representer(str, _represent_str)
        YamlDumper.add_multi_representer(int, _represent_number)
        YamlDumper.add_multi_representer(float, _represent_number)
        YamlDumper.add_representer(tuple, _represent_tuple)
        YamlDumper.add_multi_representer(tuple, _represent_tuple)
        YamlDumper.add_multi_representer(list, lambda d, v: d.represent_list(list(v)))
        YamlDumper.add_representer(set, _represent_set)
        YamlDumper.add_representer(frozenset, _represent_frozenset)
        YamlDumper.add_multi_representer(dict, _represent_mapping)
        YamlDumper.add_multi_representer(type, _represent_name)
        YamlDumper.add_multi_representer(enum.Enum, _represent_name)
        YamlDumper.add_representer(types.FunctionType, _represent_name)
        YamlDumper.add_representer(types.BuiltinFunctionType, _represent_name)
        YamlDumper.add_multi_representer(pathlib.PurePath, _represent_path)
        # PyYAML looks up the representer of last resort under the key None.
        YamlDumper.add_representer(None, _represent_other)  # type: ignore[arg-type]
        _DUMPER = YamlDumper
    return _DUMPER


def _check(data: Mapping[str, object]) -> None:
    """Refuse what the canonical form cannot encode, naming the key path."""
    encode_value(data)


def to_yaml_text(data: Mapping[str, object]) -> str:
    """Write a resolved config as YAML, keeping key order.

    Tuples use ``!!python/tuple``; classes, functions and enum members the local tags
    ``!class``/``!function``/``!enum`` with a ``module:qualname`` scalar; frozensets
    ``!frozenset``, paths ``!path``. A YAML loader extended with
    ``register_yaml_tags`` (trackcfg's reader is) reads them back to the same hash
    without importing anything.

    Raises:
        CanonicalizationError: A value cannot be encoded; ``key_path`` names it.

    Example:
        >>> import math
        >>> print(to_yaml_text({"size": (3, 3), "cls": math.sqrt, "lr": 0.1}), end="")
        size: !!python/tuple [3, 3]
        cls: !function 'math:sqrt'
        lr: 0.1
    """
    import yaml

    _check(data)
    text = yaml.dump(
        dict(data),
        Dumper=_yaml_dumper(),
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=_WIDTH,
    )
    # `{{` only stands in double-quoted scalars (`_yaml_str_style`): mappings never
    # open with a mapping key, so no flow syntax writes two braces in a row.
    return text.replace("{{", "{\\x7b")


def register_yaml_tags(loader: type[yaml.SafeLoader]) -> None:
    """Teach a (safe) YAML loader class the tags ``to_yaml_text`` writes.

    ``!!python/tuple`` builds a tuple; ``!class``/``!function``/``!enum`` build a
    ``QualifiedName`` (nothing is imported: it hashes like the object it names and the
    registry resolves it when building); ``!frozenset`` and ``!path`` build those types.

    Args:
        loader: The loader class to extend (``yaml.SafeLoader`` or a subclass).
    """

    def construct_tuple(ld: yaml.SafeLoader, node: yaml.Node) -> tuple[object, ...]:
        return tuple(ld.construct_sequence(node, deep=True))  # type: ignore[arg-type]

    def construct_frozenset(ld: yaml.SafeLoader, node: yaml.Node) -> frozenset[object]:
        return frozenset(ld.construct_sequence(node, deep=True))  # type: ignore[arg-type]

    def construct_path(ld: yaml.SafeLoader, node: yaml.Node) -> pathlib.Path:
        return pathlib.Path(str(ld.construct_scalar(node)))  # type: ignore[arg-type]

    def name_constructor(kind: QualifiedKind) -> Callable[[yaml.SafeLoader, yaml.Node], object]:
        def construct(ld: yaml.SafeLoader, node: yaml.Node) -> QualifiedName:
            text = str(ld.construct_scalar(node))  # type: ignore[arg-type]
            try:
                return QualifiedName(text, kind=kind)
            except ValueError as exc:
                import yaml

                raise yaml.constructor.ConstructorError(
                    None, None, str(exc), node.start_mark
                ) from None

        return construct

    loader.add_constructor(_TUPLE_TAG, construct_tuple)
    loader.add_constructor("!frozenset", construct_frozenset)
    loader.add_constructor("!path", construct_path)
    loader.add_constructor("!class", name_constructor("class"))
    loader.add_constructor("!function", name_constructor("function"))
    loader.add_constructor("!enum", name_constructor("enum"))


# ------------------------------------------------------------------------------- JSON


def to_json_text(data: Mapping[str, object]) -> str:
    """Write a resolved config as JSON (indent 4, key order kept, UTF-8 text).

    Values JSON has no type for use the canonical typed encoding
    (``canonical.encode_value``): ``{"!tuple": [1, 2]}``, ``{"!float": "inf"}``,
    ``{"!class": "module:qualname"}``, ``{"!dict": [[1, "a"]]}`` for non-str keys...
    ``canonical.decode_value`` of the parsed JSON (what trackcfg's JSON reader applies)
    gives the same hash; other JSON readers see those one-key objects as dicts.

    Raises:
        CanonicalizationError: A value cannot be encoded; ``key_path`` names it.

    Example:
        >>> print(to_json_text({"size": (3, 3)}), end="")
        {
            "size": {
                "!tuple": [
                    3,
                    3
                ]
            }
        }
    """
    text = json.dumps(encode_value(data), indent=4, ensure_ascii=False, allow_nan=False)
    # With indent=4 every `{` that opens an object ends its line or is `{}`: `{{` only
    # stands inside strings, where `\u007b` is the same character.
    return text.replace("{{", "{\\u007b") + "\n"


# ------------------------------------------------------------------------------- any


def to_text(data: Mapping[str, object], suffix: str) -> str:
    """Write a resolved config in the format a file suffix names.

    ``Config.dump`` and ``trackcfg show --format`` both come here, so a file and
    the command's output are the same text.

    Args:
        data: The resolved config.
        suffix: ``.py``, ``.json``, ``.yaml`` or ``.yml``.

    Raises:
        ConfigError: Any other suffix; or a top-level private ``__name``, which every
            reader drops (as mmengine does): the file would silently lose it.
        CanonicalizationError: A value cannot be written; ``key_path`` names it.

    Example:
        >>> print(to_text({"a": 1}, ".yaml"), end="")
        a: 1
    """
    for key in data:
        if isinstance(key, str) and key.startswith("__"):
            raise ConfigError(
                "a top-level __name is private: every config reader drops it, so the "
                "written file would lose it",
                key_path=key,
                hint="rename the key (or nest it in a dict) to keep it",
            )
    writers = {
        ".py": to_python_text,
        ".json": to_json_text,
        ".yaml": to_yaml_text,
        ".yml": to_yaml_text,
    }
    writer = writers.get(suffix)
    if writer is None:
        raise ConfigError(f"cannot dump to format {suffix!r}; use .py, .json or .yaml")
    return writer(data)
