"""Read one config file (.py/.json/.yaml/.yml) into data plus a line for every key path.

Lines come from the parsers, never from guesses:

* ``.py``: ``ast`` line numbers of top-level assignments (also ``x.a.b = ...`` and
  ``x['a'] = ...``), of ``dict(...)`` keywords and of ``{...}`` literal keys. A key
  whose value is computed (a comprehension, a function call) takes the line of the
  nearest key above it that the parser saw.
* ``.yaml``/``.yml``: PyYAML node marks, composed by ``composer.compose_document``
  (iterative, and refusing alias bombs: see ``limits``). The loader is the safe one plus
  ``!!python/tuple`` and the tags ``dump.to_yaml_text`` writes (``!class`` etc. become
  ``QualifiedName`` strings: nothing is imported or constructed). mmengine uses the
  full loader, which is not safe.
* ``.json``: ``json`` for the values (then ``canonical.decode_value`` for the typed
  one-key ``{"!tuple": [...]}`` objects a JSON dump writes) and a small position
  scanner for key lines.

Reading is split in two because a ``.py`` config is executed with its bases' values
bound (``_base_.x``): ``parse_config`` does everything that needs only the file, and
``evaluate_config`` runs it against the merged bases.
"""

from __future__ import annotations

import ast
import bisect
import builtins
import io
import json
import re
import tokenize
import types
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trackcfg.config.canonical import decode_value, encode_value
from trackcfg.config.composer import compose_document
from trackcfg.config.editor import BaseEditor
from trackcfg.config.keypath import KeyParts, KeyPath
from trackcfg.config.limits import MAX_DEPTH, find_overflow, short_key_path
from trackcfg.config.location import Assignment, Location
from trackcfg.config.marker import Marker, resolve_markers, substitute_data_text
from trackcfg.config.purity import is_pure
from trackcfg.config.substitute import BASE_KEY, predefined_variables
from trackcfg.config.transform import (
    PythonPlaceholderTransformer,
    add_base_checks,
    bind_helpers,
    index_python_placeholders,
    reference_of,
    target_parts,
)
from trackcfg.errors import (
    ConfigBaseError,
    ConfigError,
    ConfigLimitError,
    ConfigSyntaxError,
    ConfigWarning,
)

if TYPE_CHECKING:
    import yaml

__all__ = [
    "SUFFIXES",
    "BaseEntry",
    "ConfigSource",
    "EvaluatedConfig",
    "KeyOrigin",
    "ParsedConfig",
    "evaluate_config",
    "parse_config",
]

SUFFIXES = (".py", ".json", ".yaml", ".yml")

#: ``__name__`` of a ``.py`` config while it runs (what its own functions' ``__module__`` is).
CONFIG_MODULE = "__trackcfg_config__"


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """The bytes of one config file and how to name it.

    Attributes:
        path: The real absolute path (None for ``Config.fromstring``).
        display: The path shown in locations (relative to the project root).
        suffix: ``.py``, ``.json``, ``.yaml`` or ``.yml``.
        text: The decoded text.
    """

    path: Path | None
    display: str
    suffix: str
    text: str


@dataclass(frozen=True, slots=True)
class KeyOrigin:
    """Where a key path is assigned in one file.

    Attributes:
        line: 1-based line of the key.
        ref: When the value is exactly a ``_base_`` reference, the base key path.
    """

    line: int
    ref: KeyParts | None = None


@dataclass(frozen=True, slots=True)
class BaseEntry:
    """One name listed in ``_base_`` and the line that lists it."""

    name: str
    line: int


@dataclass(frozen=True, slots=True)
class ParsedConfig:
    """A parsed but not yet evaluated config file."""

    source: ConfigSource
    bases: tuple[BaseEntry, ...]
    origins: Mapping[KeyParts, KeyOrigin]
    code: types.CodeType | None = None
    data: dict[str, object] | None = None
    markers: tuple[Marker, ...] = ()
    #: Whether its values may hold the project's absolute path: it uses
    #: ``{{ fileDirname }}`` (or, in a ``.py``, ``__file__``).
    absolute: bool = False
    #: Top-level functions (``def``, ``name = lambda``) of a ``.py`` that nothing in it
    #: uses: name and line (warned about when dropped).
    unused_functions: tuple[tuple[str, int], ...] = ()
    #: Whether evaluating it again on equal bases must give equal values (``purity``):
    #: always for JSON/YAML.
    pure: bool = False


@dataclass(frozen=True, slots=True)
class EvaluatedConfig:
    """A file's own values (before merging into its bases) and their key origins."""

    data: dict[str, object]
    origins: Mapping[KeyParts, KeyOrigin] = field(default_factory=dict)
    #: The bases as edited by this file (``_base_.x.y = v`` in a .py), else None.
    edited_base: Mapping[str, object] | None = None
    #: The assignments those edits made, in order.
    base_records: tuple[tuple[KeyParts, Assignment], ...] = ()
    #: Top-level ``__names`` the file set, dropped as mmengine drops them: name, line, value.
    private: tuple[tuple[str, int, object], ...] = ()

    def origin(self, parts: KeyParts) -> KeyOrigin | None:
        """The origin of ``parts`` or of its nearest recorded ancestor."""
        origins = self.origins
        for end in range(len(parts), 0, -1):
            found = origins.get(parts[:end])
            if found is not None:
                return found
        return None


def parse_config(source: ConfigSource) -> ParsedConfig:
    """Parse one file without evaluating it.

    Raises:
        ConfigSyntaxError: The text is not valid Python / JSON / YAML, or its top level
            is not a mapping.
        ConfigBaseError: ``_base_`` is not a file name or a list of them.
        ConfigSubstitutionError: An unknown ``{{ }}`` variable (Python configs).
    """
    if source.suffix == ".py":
        return _parse_python(source)
    substituted = substitute_data_text(
        source.text, source.suffix, predefined_variables(source.path)
    )
    if source.suffix == ".json":
        data = _load_json(substituted.text, source.display)
        origins: dict[KeyParts, KeyOrigin] = {}
        base_lines: dict[int, int] = {}
        scanner = _JsonScanner(substituted.text, origins, base_lines)
        try:
            scanner.scan()
        except _TooDeep as exc:
            overflow = find_overflow(data)
            raise _too_deep(
                source.display,
                scanner.line(exc.pos),
                overflow.parts if overflow is not None else (),
            ) from None
        data = _decode_json(data, origins, source.display)
    else:
        data, origins, base_lines = _load_yaml(substituted.text, source.display)
    bases = _base_entries(data.pop(BASE_KEY, []), origins, base_lines, source.display)
    return ParsedConfig(
        source,
        bases,
        origins,
        data=data,
        markers=substituted.markers,
        absolute=substituted.absolute,
        pure=True,
    )


def evaluate_config(parsed: ParsedConfig, base: Mapping[str, object]) -> EvaluatedConfig:
    """Evaluate a parsed file against the merged values of its bases.

    Returns:
        The file's own keys: top-level private ``__names`` (in every format, as mmengine),
        modules and the config's own functions dropped, base references resolved.

    Raises:
        ConfigSubstitutionError: A ``_base_`` path that the bases do not define.
        Exception: Whatever user code in a ``.py`` config raises, with a note naming
            the config.
    """
    if parsed.code is not None:
        evaluated = _evaluate_python(parsed, parsed.code, base)
        # A .py config builds its values with code: their shape is known only now.
        _check_shape(evaluated, parsed.source.display)
        return evaluated
    raw = parsed.data if parsed.data is not None else {}
    data, uses = resolve_markers(raw, parsed.markers, base, parsed.source.display)
    private = tuple(
        (key, parsed.origins.get((key,), KeyOrigin(1)).line, data.pop(key))
        for key in [k for k in data if _is_private(k)]
    )
    if not uses:
        return EvaluatedConfig(data, parsed.origins, private=private)
    origins = dict(parsed.origins)
    for use in uses:
        if use.marker.ref is not None:
            # A substitution is recorded at the line of the placeholder.
            origins[use.parts] = KeyOrigin(use.marker.line, use.marker.ref)
    evaluated = EvaluatedConfig(data, origins, private=private)
    # A base value put in at depth may nest deeper than either file did.
    _check_shape(evaluated, parsed.source.display)
    return evaluated


def _check_shape(evaluated: EvaluatedConfig, display: str) -> None:
    """Refuse values nested past ``MAX_DEPTH`` or containing themselves (see ``limits``)."""
    overflow = find_overflow(evaluated.data)
    if overflow is None:
        return
    origin = evaluated.origin(overflow.parts)
    raise ConfigLimitError(
        overflow.message,
        location=Location(display, origin.line if origin is not None else 1),
        key_path=short_key_path(overflow.parts),
    )


# ---------------------------------------------------------------------------- _base_


def _base_entries(
    value: object,
    origins: Mapping[KeyParts, KeyOrigin],
    element_lines: Mapping[int, int],
    display: str,
) -> tuple[BaseEntry, ...]:
    key_line = origins.get((BASE_KEY,), KeyOrigin(1)).line
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ConfigBaseError(
            f"_base_ must be a file name or a list of file names, got {value!r}",
            location=Location(display, key_line),
            key_path=BASE_KEY,
        )
    return tuple(BaseEntry(str(n), element_lines.get(i, key_line)) for i, n in enumerate(names))


# ---------------------------------------------------------------------------- python


class _PythonKeyScanner:
    """Collect the line of every key a .py config assigns, from its ast."""

    def __init__(self, references: bool) -> None:
        self.references = references
        self.origins: dict[KeyParts, KeyOrigin] = {}
        self.line_keys: dict[int, KeyParts] = {}

    def scan(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    self._target(target, stmt.value)
            elif isinstance(stmt, ast.AnnAssign):
                self._target(stmt.target, stmt.value)
            elif isinstance(stmt, ast.AugAssign):
                self._target(stmt.target, None)
            elif isinstance(stmt, ast.Import | ast.ImportFrom):
                for alias in stmt.names:
                    name = alias.asname or alias.name.partition(".")[0]
                    if name != "*":
                        self._set((name,), KeyOrigin(stmt.lineno))
            elif isinstance(stmt, ast.If | ast.For | ast.While | ast.With | ast.Try):
                for block in ("body", "orelse", "finalbody"):
                    self.scan(getattr(stmt, block, []))
                for handler in getattr(stmt, "handlers", []):
                    self.scan(handler.body)

    def _set(self, parts: KeyParts, origin: KeyOrigin) -> None:
        if parts in self.origins:
            # A re-assignment: lines of the old value's keys no longer apply.
            n = len(parts)
            for old in [p for p in self.origins if p[:n] == parts]:
                del self.origins[old]
        self.origins[parts] = origin
        self.line_keys.setdefault(origin.line, parts)

    def _target(self, target: ast.expr, value: ast.expr | None) -> None:
        if isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                self._target(elt, None)
            return
        parts = target_parts(target)
        if parts is None or parts[0] == BASE_KEY:
            # `_base_.x = v` edits the bases; BaseEditor records it.
            return
        self._value(parts, value, target.lineno)

    def _value(self, parts: KeyParts, node: ast.expr | None, line: int) -> None:
        ref = reference_of(node) if self.references else None
        # A substitution is recorded at the placeholder / `_base_.x` itself.
        self._set(parts, KeyOrigin(node.lineno if ref and node else line, ref))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("dict", "ConfigDict"):
                for kw in node.keywords:
                    if kw.arg is not None:
                        self._value((*parts, kw.arg), kw.value, kw.lineno)
        elif isinstance(node, ast.Dict):
            for key, item in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str | int):
                    self._value((*parts, key.value), item, key.lineno)


def _parse_python(source: ConfigSource) -> ParsedConfig:
    filename = str(source.path) if source.path is not None else source.display
    text = index_python_placeholders(source.text)
    try:
        tree = ast.parse(text, filename=filename)
    except SyntaxError as exc:
        raise ConfigSyntaxError(
            f"invalid Python syntax: {exc.msg}",
            location=Location(source.display, exc.lineno or 1, exc.offset),
        ) from exc
    except (RecursionError, MemoryError):
        # CPython's parser gives up on a very deeply nested expression with one of
        # these (MemoryError: its own stack, not the heap, is exhausted).
        raise _python_too_deep(source.display, _deep_statement_line(text)) from None
    rewrite = "{{" in source.text or BASE_KEY in source.text
    scanner = _PythonKeyScanner(references=rewrite)
    scanner.scan(tree.body)

    def key_path_at(line: int) -> str | None:
        parts = scanner.line_keys.get(line)
        return str(KeyPath(parts)) if parts else None

    transformer = PythonPlaceholderTransformer(
        predefined_variables(source.path), source.display, key_path_at
    )
    body: list[ast.stmt] = []
    bases: tuple[BaseEntry, ...] = ()
    base_line: int | None = None
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == BASE_KEY
        ):
            # `_base_ = [...]` names files; it is read here and never executed (mmengine
            # removes it from the ast the same way). mmengine silently uses the first of
            # two; we refuse the second.
            if base_line is not None:
                raise ConfigBaseError(
                    f"_base_ is assigned twice (first at line {base_line})",
                    location=Location(source.display, stmt.lineno),
                    key_path=BASE_KEY,
                    hint="list every base in one `_base_ = [...]`",
                )
            base_line = stmt.lineno
            bases = _python_bases(stmt, transformer, source.display)
            continue
        # Only files that mention placeholders or `_base_` need the (slow) ast rewrite.
        try:
            new = transformer.visit(stmt) if rewrite else stmt
        except RecursionError:
            raise _python_too_deep(source.display, stmt.lineno) from None
        # A statement may become several (`del _base_.a, x`).
        body.extend(new if isinstance(new, list) else [new])
    if BASE_KEY in source.text:
        # Values read from `_base_` are the inherited ones: record changes made through them.
        body = add_base_checks(body)
    tree.body = body
    try:
        code = compile(tree, filename, "exec")
    except RecursionError:
        line = next((s.lineno for s in body if _recurses(s, filename)), 1)
        raise _python_too_deep(source.display, line) from None
    pure = is_pure(tree, code, source.text)
    absolute = transformer.absolute or (
        "__file__" in source.text
        and any(isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(tree))
    )
    return ParsedConfig(
        source,
        bases,
        scanner.origins,
        code=code,
        absolute=absolute,
        unused_functions=_unused_functions(tree),
        pure=pure,
    )


def _unused_functions(tree: ast.Module) -> tuple[tuple[str, int], ...]:
    """Top-level functions and lambdas that no expression of the file names."""
    defined: list[tuple[str, int]] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            defined.append((stmt.name, stmt.lineno))
        elif (
            isinstance(stmt, ast.Assign)
            and isinstance(stmt.value, ast.Lambda)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            defined.append((stmt.targets[0].id, stmt.lineno))
    if not defined:
        return ()
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return tuple((name, line) for name, line in defined if name not in used)


def _python_too_deep(display: str, line: int) -> ConfigSyntaxError:
    return ConfigSyntaxError(
        "expression nested too deeply for Python's parser",
        location=Location(display, line),
        hint="build deep values with a loop, or nest less",
    )


def _deep_statement_line(text: str) -> int:
    """The first line of the first top-level statement that Python cannot parse alone.

    Error path of ``_parse_python``: each top-level statement (split with ``tokenize``,
    which does not recurse) is parsed on its own; the first that fails the way the whole
    file did is the one to show.
    """
    starts: list[int] = []
    try:
        indent, new_line = 0, True
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.INDENT:
                indent += 1
            elif tok.type == tokenize.DEDENT:
                indent -= 1
            elif tok.type == tokenize.NEWLINE:
                new_line = True
            elif new_line and tok.type not in (tokenize.NL, tokenize.COMMENT):
                new_line = False
                if indent == 0:
                    starts.append(tok.start[0])
    except (tokenize.TokenError, SyntaxError):
        return 1
    lines = text.splitlines(keepends=True)
    for first, end in zip(starts, [*starts[1:], len(lines) + 1], strict=True):
        try:
            ast.parse("".join(lines[first - 1 : end - 1]))
        except (RecursionError, MemoryError):
            return first
        except SyntaxError:
            continue  # `else:` and such, cut from their statement
    return 1


def _recurses(stmt: ast.stmt, filename: str) -> bool:
    """Whether compiling ``stmt`` alone exhausts the compiler's recursion limit."""
    try:
        compile(ast.Module(body=[stmt], type_ignores=[]), filename, "exec")
    except RecursionError:
        return True
    return False


def _python_bases(
    stmt: ast.Assign, transformer: PythonPlaceholderTransformer, display: str
) -> tuple[BaseEntry, ...]:
    value = transformer.visit(stmt.value)
    location = Location(display, stmt.lineno)
    names = _literal_names(value)
    try:
        if names is None:
            names = eval(
                compile(ast.Expression(body=value), display, "eval"), {"__builtins__": builtins}
            )
    except Exception as exc:
        raise ConfigBaseError(
            f"cannot evaluate _base_: {type(exc).__name__}: {exc}",
            location=location,
            key_path=BASE_KEY,
        ) from exc
    element_lines: dict[int, int] = {}
    if isinstance(value, ast.List | ast.Tuple):
        element_lines = {i: elt.lineno for i, elt in enumerate(value.elts)}
    return _base_entries(names, {(BASE_KEY,): KeyOrigin(stmt.lineno)}, element_lines, display)


def _literal_names(value: ast.expr) -> str | list[str] | tuple[str, ...] | None:
    """What a ``_base_`` of string literals evaluates to, read off the ast; else None.

    The usual ``_base_ = ['a.py', 'b.py']`` then needs no ``compile`` and ``eval``.
    """
    if isinstance(value, ast.Constant):
        return value.value if isinstance(value.value, str) else None
    if isinstance(value, ast.List | ast.Tuple) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts
    ):
        names = [e.value for e in value.elts]  # type: ignore[attr-defined]
        return names if isinstance(value, ast.List) else tuple(names)
    return None


def _evaluate_python(
    parsed: ParsedConfig, code: types.CodeType, base: Mapping[str, object]
) -> EvaluatedConfig:
    source = parsed.source
    display = source.display

    editor = BaseEditor(base, display, lambda line: _key_path_at(parsed.origins, line))
    namespace: dict[str, object] = {
        **bind_helpers(editor),
        "__file__": str(source.path) if source.path is not None else display,
        "__name__": CONFIG_MODULE,
    }
    try:
        exec(code, namespace)
    except Exception as exc:
        from trackcfg.errors import TrackcfgError

        if not isinstance(exc, TrackcfgError):
            exc.add_note(f"while loading config {display}")
        raise
    data = {
        key: value
        for key, value in namespace.items()
        if not key.startswith("__") and not _is_helper(value)
    }
    _warn_dropped_functions(parsed, namespace)
    # The `__names` the file itself assigned (not ours, nor Python's `__builtins__`).
    private = tuple(
        (key, parsed.origins[(key,)].line, _recordable(value))
        for key, value in namespace.items()
        if key.startswith("__") and (key,) in parsed.origins
    )
    edited = editor.edited
    if edited is None:
        return EvaluatedConfig(data, parsed.origins, private=private)
    return EvaluatedConfig(data, parsed.origins, edited, tuple(editor.records), private)


def _warn_dropped_functions(parsed: ParsedConfig, namespace: Mapping[str, object]) -> None:
    """Warn, at its line, about a function the config defines, never uses, and loses."""
    for name, line in parsed.unused_functions:
        if not _is_helper(namespace.get(name)):
            continue  # rebound to a value later
        warnings.warn_explicit(
            # The warning's file and line say where; the text names the key.
            f"{name}: a function defined in a config is not a config value; it is dropped,"
            f" as mmengine drops it (hint: use it in a value, e.g. dict(fn={name}), or"
            " import it from a module)",
            ConfigWarning,
            parsed.source.display,
            line,
            module=__name__,
        )


def _is_private(key: object) -> bool:
    """A top-level ``__name``: dropped from every format, as mmengine does."""
    return isinstance(key, str) and key.startswith("__")


def _recordable(value: object) -> object:
    """``value`` for a provenance entry: itself when the hash can encode it, else its repr."""
    try:
        encode_value(value)
    except ConfigError:
        return repr(value)
    return value


def _is_helper(value: object) -> bool:
    """Modules and functions (lambdas too) *defined in* the config are helpers, not keys.

    As in mmengine (its usual, non-"lazy import" configs drop every top-level function):
    a config's own function has no import path, so a snapshot could not re-create it and
    the hash could not tell two apart. One that the file never uses is warned about
    (`ConfigWarning`, at its line); inside a value (``dict(fn=f)``) it is kept, as in
    mmengine. Unlike mmengine we keep *imported* functions as values, as the contract
    says, so that ``act=torch.nn.functional.relu`` survives a ``.py`` dump and reload.
    """
    if isinstance(value, types.ModuleType):
        return True
    return isinstance(value, types.FunctionType) and value.__module__ == CONFIG_MODULE


def _key_path_at(origins: Mapping[KeyParts, KeyOrigin], line: int) -> str | None:
    best: KeyParts | None = None
    for parts, origin in origins.items():
        if origin.line == line and (best is None or len(parts) > len(best)):
            best = parts
    return str(KeyPath(best)) if best else None


# ---------------------------------------------------------------------------- json


def _load_json(text: str, display: str) -> dict[str, object]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigSyntaxError(
            f"invalid JSON: {exc.msg}", location=Location(display, exc.lineno, exc.colno)
        ) from exc
    except RecursionError:
        # The C decoder recurses per level; far past MAX_DEPTH anyway.
        raise _too_deep(display, _json_too_deep_line(text), ()) from None
    if not isinstance(data, dict):
        raise ConfigSyntaxError(
            f"a config must be a JSON object at the top level, got {type(data).__name__}",
            location=Location(display, 1),
        )
    return data


def _decode_json(
    data: dict[str, object], origins: Mapping[KeyParts, KeyOrigin], display: str
) -> dict[str, object]:
    """Decode the typed values a JSON dump writes (``{"!tuple": [...]}``, ...).

    ``canonical.decode_value`` without importing anything: classes come back as
    ``QualifiedName``. Only one-key objects whose key starts with ``!`` are tags, so
    hand-written JSON is unaffected unless it has such an object (then an error).
    """
    try:
        decoded = decode_value(data)
    except ValueError as exc:
        for key, value in data.items():
            try:
                decode_value(value)
            except ValueError:
                line = origins.get((key,), KeyOrigin(1)).line
                raise ConfigSyntaxError(
                    f"invalid JSON value: {exc}",
                    location=Location(display, line),
                    key_path=str(KeyPath((key,))),
                    hint="a one-key object whose key starts with '!' is a type tag;"
                    " write '!!' to mean a literal '!'",
                ) from exc
        raise ConfigSyntaxError(
            f"invalid JSON value: {exc}", location=Location(display, 1)
        ) from exc
    return decoded  # type: ignore[return-value]


class _TooDeep(Exception):
    """Internal: the JSON scanner passed ``MAX_DEPTH`` at text position ``pos``."""

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.pos = pos


def _too_deep(display: str, line: int, parts: KeyParts) -> ConfigLimitError:
    return ConfigLimitError(
        f"nested more than {MAX_DEPTH} levels deep",
        location=Location(display, line),
        key_path=short_key_path(parts) or None,
    )


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _json_too_deep_line(text: str) -> int:
    """The line of the first container nested past ``MAX_DEPTH`` (iteratively)."""
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            # The top-level object is depth 1; a container inside it is key path length 1.
            if depth > MAX_DEPTH + 1:
                return text.count("\n", 0, match.start()) + 1
        elif token in "]}":
            depth -= 1
    return 1


class _JsonScanner:
    """Record the line of every object key in (already validated) JSON text."""

    def __init__(
        self,
        text: str,
        origins: dict[KeyParts, KeyOrigin],
        base_lines: dict[int, int],
    ) -> None:
        self.text = text
        self.origins = origins
        self.base_lines = base_lines
        self.newlines = [i for i, ch in enumerate(text) if ch == "\n"]

    def line(self, pos: int) -> int:
        return bisect.bisect_right(self.newlines, pos) + 1

    def skip_ws(self, pos: int) -> int:
        text = self.text
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    def scan(self) -> None:
        self.value(self.skip_ws(0), (), 0)

    def value(self, pos: int, parts: KeyParts | None, depth: int) -> int:
        # `depth`: the key path length of this value (what `limits.MAX_DEPTH` bounds).
        if depth > MAX_DEPTH:
            raise _TooDeep(pos)
        text = self.text
        ch = text[pos]
        if ch == "{":
            return self.obj(pos, parts, depth)
        if ch == "[":
            pos = self.skip_ws(pos + 1)
            index = 0
            while text[pos] != "]":
                if parts == (BASE_KEY,):
                    self.base_lines[index] = self.line(pos)
                pos = self.skip_ws(self.value(pos, None, depth + 1))
                index += 1
                if text[pos] == ",":
                    pos = self.skip_ws(pos + 1)
            return pos + 1
        if ch == '"':
            return json.decoder.scanstring(text, pos + 1)[1]  # type: ignore[attr-defined,no-any-return]
        while pos < len(text) and text[pos] not in ",]} \t\r\n":
            pos += 1
        return pos

    def obj(self, pos: int, parts: KeyParts | None, depth: int) -> int:
        text = self.text
        pos = self.skip_ws(pos + 1)
        while text[pos] != "}":
            key, end = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
            child = None if parts is None else (*parts, key)
            if child is not None:
                self.origins[child] = KeyOrigin(self.line(pos))
            pos = self.skip_ws(self.skip_ws(end) + 1)  # past ':'
            pos = self.skip_ws(self.value(pos, child, depth + 1))
            if text[pos] == ",":
                pos = self.skip_ws(pos + 1)
        return pos + 1


# ---------------------------------------------------------------------------- yaml

_LOADER: type[yaml.SafeLoader] | None = None


def _yaml_loader() -> type[yaml.SafeLoader]:
    # PyYAML is imported on first use: importing trackcfg.config stays cheap.
    global _LOADER
    if _LOADER is None:
        import yaml

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        from trackcfg.config.dump import register_yaml_tags

        class TupleSafeLoader(base):  # type: ignore[valid-type,misc]
            """Safe loader plus the tags ``dump.to_yaml_text`` writes (nothing imported)."""

        # `!!python/tuple`, `!class`/`!function`/`!enum` (as QualifiedName), `!frozenset`,
        # `!path`: what a YAML dump needs to reload to the same hash.
        register_yaml_tags(TupleSafeLoader)
        _LOADER = TupleSafeLoader
    return _LOADER


def _load_yaml(
    text: str, display: str
) -> tuple[dict[str, object], dict[KeyParts, KeyOrigin], dict[int, int]]:
    import yaml

    loader = _yaml_loader()(text)
    try:
        node = compose_document(loader, display)
        data = {} if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "unreadable"
        raise ConfigSyntaxError(
            f"invalid YAML: {problem}", location=Location(display, line)
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigSyntaxError(f"invalid YAML: {exc}", location=Location(display, 1)) from exc
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigSyntaxError(
            f"a config must be a YAML mapping at the top level, got {type(data).__name__}",
            location=Location(display, 1),
        )
    origins: dict[KeyParts, KeyOrigin] = {}
    base_lines: dict[int, int] = {}
    if node is not None:
        _yaml_origins(node, (), origins, base_lines)
    return data, origins, base_lines


def _yaml_origins(
    node: yaml.Node,
    parts: KeyParts,
    origins: dict[KeyParts, KeyOrigin],
    base_lines: dict[int, int],
) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key: str | int = key_node.value
            if key_node.tag.endswith(":int") and key_node.value.lstrip("-").isdigit():
                key = int(key_node.value)
            child = (*parts, key)
            origins[child] = KeyOrigin(key_node.start_mark.line + 1)
            if child == (BASE_KEY,) and isinstance(value_node, yaml.SequenceNode):
                for i, item in enumerate(value_node.value):
                    base_lines[i] = item.start_mark.line + 1
            _yaml_origins(value_node, child, origins, base_lines)
