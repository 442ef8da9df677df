"""`{{ ... }}` placeholders and `_base_.x` references: find, replace, record.

Two kinds of placeholder exist, as in mmcv/mmengine:

* predefined variables ``{{ fileDirname }}``, ``{{ fileBasename }}``,
  ``{{ fileBasenameNoExtension }}``, ``{{ fileExtname }}`` — the *real* file's, never a
  temporary copy (mmengine substitutes into a temp file; we never make one);
* base references ``{{ _base_.a.b }}`` — a value taken from the merged bases.

Anything else between ``{{`` and ``}}`` is an error (mmengine's ``{{$ENV:default}}``
form is not supported: a config whose value depends on the environment could not be
re-resolved from its snapshot).

How each format is handled, always keeping line numbers:

* ``.py``: no text is rewritten. The file is parsed with ``ast`` and
  ``PythonPlaceholderTransformer`` rewrites nodes in place (``copy_location`` keeps
  lines): ``{{ x }}`` parses as a set of a set, which is replaced by the value;
  strings containing placeholders are interpolated; and every ``_base_.a.b`` /
  ``_base_['a']`` chain (mmengine's expression form) becomes a call that returns the
  inherited value itself, as mmengine's does (from ``editor.BaseEditor``'s working copy
  of the bases). Statements that edit ``_base_`` itself (``_base_.x.y = v``, ``+=``,
  ``del``, ``_base_.x.update(...)``) become explicit edit calls, and ``add_base_checks``
  puts a check after every statement that records changes made through a read value.
* ``.json``/``.yaml``: the text does not parse with placeholders in it, so
  ``substitute_data_text`` replaces predefined variables by their text (as mmengine
  does) and each base reference by a unique marker token on the same line; after
  loading, ``resolve_markers`` swaps markers for values.

A string that is exactly one placeholder takes the base value whole, with its type
(``lr: {{ _base_.lr }}`` gives a float); a placeholder inside a longer string is
interpolated with ``str()``. mmengine only supports the whole-value form (inside a
string it leaves a random token behind).
"""

from __future__ import annotations

import ast
import copy
import io
import os
import re
import tokenize
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from trackcfg.config.keypath import KeyParts, KeyPath, suggest
from trackcfg.config.location import Location
from trackcfg.config.merge import descend
from trackcfg.errors import ConfigSubstitutionError

__all__ = [
    "ABSOLUTE_NAME",
    "BASE_CALL",
    "BASE_CHECK",
    "BASE_DELETE",
    "BASE_KEY",
    "BASE_MUTATE",
    "BASE_SET",
    "FORMAT_CALL",
    "PREDEFINED_NAMES",
    "BaseLookup",
    "Marker",
    "PythonPlaceholderTransformer",
    "SubstitutedText",
    "add_base_checks",
    "base_chain",
    "base_reference",
    "copy_base",
    "find_base",
    "index_python_placeholders",
    "interpolate",
    "lookup_base",
    "placeholder_bodies",
    "placeholder_expr",
    "predefined_variables",
    "resolve_markers",
    "substitute_data_text",
]

BASE_KEY = "_base_"
#: Names of the helpers bound in a .py config's namespace (dunder: never config keys).
BASE_CALL = "__trackcfg_base__"
FORMAT_CALL = "__trackcfg_format__"
BASE_SET = "__trackcfg_base_set__"
BASE_DELETE = "__trackcfg_base_delete__"
BASE_MUTATE = "__trackcfg_base_mutate__"
BASE_CHECK = "__trackcfg_base_check__"

PREDEFINED_NAMES = ("fileDirname", "fileBasename", "fileBasenameNoExtension", "fileExtname")
#: The one predefined variable whose value depends on where the project is checked out.
ABSOLUTE_NAME = "fileDirname"

# One placeholder on one line: `{{ anything-without-braces }}`.
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}\n]*?)\s*\}\}")
# Necessary for an edit by `index_python_placeholders`: `{{ _base_`, then `.<digit>`
# before any closing brace.
_DOTTED_INDEX_IN_PLACEHOLDER = re.compile(r"\{\{\s*_base_[^}]*?\.[0-9]")
_BASE_PATH = re.compile(r"_base_\.([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)")


def predefined_variables(path: Path | None) -> dict[str, str]:
    """The values of ``{{ fileDirname }}`` etc. for the real file ``path``.

    Backslashes become ``/`` (as in mmengine) so the values are safe inside strings.
    A config read from a string (``path`` None) uses the current directory and the
    name ``<string>``.
    """
    if path is None:
        dirname, basename = os.getcwd(), "<string>"
    else:
        dirname, basename = str(path.parent), path.name
    stem, ext = os.path.splitext(basename)
    values = {
        "fileDirname": dirname,
        "fileBasename": basename,
        "fileBasenameNoExtension": stem,
        "fileExtname": ext,
    }
    return {k: v.replace("\\", "/") for k, v in values.items()}


def _parts(dotted: str) -> KeyParts:
    return tuple(int(p) if p.isdigit() else p for p in dotted.split("."))


def placeholder_bodies(text: str) -> list[str]:
    """The text inside every ``{{ ... }}`` of ``text``, stripped."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(text)]


def base_reference(body: str) -> KeyParts | None:
    """The key path of a ``_base_.a.b`` placeholder body, else None."""
    m = _BASE_PATH.fullmatch(body)
    return _parts(m.group(1)) if m else None


# ---------------------------------------------------------------------------- lookups


BaseLookup = Callable[[KeyParts, Location], object]


def lookup_base(base: Mapping[str, object], path: KeyParts, location: Location) -> object:
    """Deep copy of the value at ``path`` in the merged bases.

    Raises:
        ConfigSubstitutionError: ``path`` names nothing in the bases.
    """
    return copy_base(find_base(base, path, location), path)


def find_base(base: Mapping[str, object], path: KeyParts, location: Location) -> object:
    """The value at ``path`` itself (not a copy); errors as ``lookup_base``."""
    value: object = base
    for depth, part in enumerate(path):
        try:
            value = descend(value, part)
        except KeyError:
            found = KeyPath(path[:depth])
            candidates: list[object] = list(value) if isinstance(value, Mapping) else []
            close = suggest(str(part), candidates)
            prefix = f"{found}." if found.parts else ""
            if close:
                hint: str | None = f"did you mean _base_.{prefix}{close[0]}?"
            elif candidates:
                keys = ", ".join(str(c) for c in candidates[:10])
                hint = f"_base_{'.' if found.parts else ''}{found} has: {keys}"
            else:
                hint = None
            raise ConfigSubstitutionError(
                f"_base_.{KeyPath(path)} is not defined in the bases",
                location=location,
                hint=hint,
            ) from None
    return value


def copy_base(value: object, parts: KeyParts = ()) -> object:
    """A deep copy of an inherited value at key path ``parts``, dicts as ``ConfigDict``.

    Dicts come back as ``ConfigDict`` (knowing their key path, for error messages) so
    that ``_base_.model.backbone`` chains and attribute edits keep working.
    """
    from trackcfg.config.config import ConfigDict

    if isinstance(value, Mapping):
        new = ConfigDict()
        object.__setattr__(new, "_key_path", parts)
        for k, v in value.items():
            dict.__setitem__(new, k, copy_base(v, (*parts, k)))
        return new
    if isinstance(value, list):
        return [copy_base(v, (*parts, i)) for i, v in enumerate(value)]
    if type(value) is tuple:
        return tuple(copy_base(v, (*parts, i)) for i, v in enumerate(value))
    if isinstance(value, str | int | float | bool | type(None) | type):
        return value
    return copy.deepcopy(value)


def interpolate(
    template: str,
    base: Mapping[str, object],
    location: Location,
) -> object:
    """Replace every ``{{ _base_.x }}`` in ``template``; a lone placeholder keeps its type."""
    whole = _PLACEHOLDER.fullmatch(template)
    if whole is not None:
        ref = base_reference(whole.group(1))
        if ref is not None:
            return lookup_base(base, ref, location)

    def one(m: re.Match[str]) -> str:
        ref = base_reference(m.group(1))
        if ref is None:
            return m.group(0)
        return str(lookup_base(base, ref, location))

    return _PLACEHOLDER.sub(one, template)


def _unknown(body: str, location: Location, key_path: str | None) -> ConfigSubstitutionError:
    names = [*PREDEFINED_NAMES, "_base_.<key path>"]
    close = suggest(body, PREDEFINED_NAMES)
    hint = f"did you mean {{{{ {close[0]} }}}}?" if close else f"known: {', '.join(names)}"
    if body.lstrip("'\"").startswith("$"):
        hint = (
            "environment-variable placeholders are not supported (the config would resolve "
            "differently per machine); pass the value with --cfg-options instead"
        )
    return ConfigSubstitutionError(
        f"unknown placeholder {{{{ {body} }}}}",
        location=location,
        key_path=key_path,
        hint=hint,
    )


# ---------------------------------------------------------------------------- python


def base_chain(node: ast.expr) -> KeyParts | None:
    """The key path of a ``_base_.a['b'].c`` chain (``()`` for bare ``_base_``), else None."""
    parts: list[str | int] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
            if not isinstance(key, str | int) or isinstance(key, bool):
                return None
            parts.append(key)
            node = node.value
        elif isinstance(node, ast.Name) and node.id == BASE_KEY:
            return tuple(reversed(parts))
        else:
            return None


def placeholder_expr(node: ast.expr) -> ast.expr | None:
    """The ``x`` of a ``{{ x }}`` set-of-set expression, else None."""
    if (
        isinstance(node, ast.Set)
        and len(node.elts) == 1
        and isinstance(node.elts[0], ast.Set)
        and len(node.elts[0].elts) == 1
    ):
        return node.elts[0].elts[0]
    return None


def index_python_placeholders(text: str) -> str:
    """Make ``{{ _base_.a.0.b }}`` in Python text parse: ``.0`` becomes ``[0]``.

    Python reads ``_base_.a.0`` as ``_base_.a`` followed by the float ``.0``, so the
    dotted-index form that JSON/YAML placeholders allow would be a syntax error. The
    rewrite works on *tokens* inside ``{{ _base_... }}`` outside strings, and only ever
    changes a line's own text, so every line number stays the file's (columns after
    the index shift by one). Text that does not tokenize is returned unchanged: the
    parser then reports the real syntax error.
    """
    if _DOTTED_INDEX_IN_PLACEHOLDER.search(text) is None:
        # Tokenizing is most of this function's cost; most files have no such index.
        return text
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return text
    edits: list[tuple[int, int, int, str]] = []
    depth = 0  # > 0 inside a `{{ _base_ ... }}` span
    for i, tok in enumerate(tokens):
        if (
            tok.type == tokenize.OP
            and tok.string == "{"
            and i + 2 < len(tokens)
            and tokens[i + 1].string == "{"
            and tokens[i + 2].string == BASE_KEY
        ):
            depth = 1
        elif depth and tok.type == tokenize.OP and tok.string == "}":
            depth = 0
        elif depth and tok.type == tokenize.NUMBER and _DOT_INDEX.fullmatch(tok.string):
            (row, start), (_, end) = tok.start, tok.end
            edits.append((row, start, end, f"[{tok.string[1:]}]"))
    if not edits:
        return text
    lines = text.splitlines(keepends=True)
    for row, start, end, new in reversed(edits):
        line = lines[row - 1]
        lines[row - 1] = line[:start] + new + line[end:]
    return "".join(lines)


_DOT_INDEX = re.compile(r"\.[0-9]+")


class PythonPlaceholderTransformer(ast.NodeTransformer):
    """Rewrite placeholders and ``_base_`` chains in a parsed ``.py`` config.

    Args:
        variables: Predefined variable values (``predefined_variables``).
        file: Display path for error locations.
        key_path_at: Maps a line to the key path assigned there (for error messages).
    """

    def __init__(
        self,
        variables: Mapping[str, str],
        file: str,
        key_path_at: Callable[[int], str | None],
    ) -> None:
        self.variables = variables
        self.file = file
        self.key_path_at = key_path_at
        #: Whether ``{{ fileDirname }}`` (an absolute path) was substituted.
        self.absolute = False

    def _call(self, name: str, args: list[ast.expr], like: ast.AST) -> ast.expr:
        # Every new node gets the replaced node's position, so line numbers in
        # tracebacks stay the file's and no `fix_missing_locations` pass is needed.
        func = ast.copy_location(ast.Name(id=name, ctx=ast.Load()), like)
        for arg in args:
            ast.copy_location(arg, like)
        call = ast.Call(func=func, args=args, keywords=[])
        return ast.copy_location(call, like)

    def _base_call(self, path: KeyParts, like: ast.expr) -> ast.expr:
        return self._call(
            BASE_CALL,
            [_constant(path), ast.Constant(value=like.lineno)],
            like,
        )

    def visit_Set(self, node: ast.Set) -> ast.expr:
        inner = placeholder_expr(node)
        if inner is None:
            self.generic_visit(node)
            return node
        chain = base_chain(inner)
        if chain is not None and chain:
            return self._base_call(chain, node)
        body = ast.unparse(inner)
        if isinstance(inner, ast.Name) and inner.id in self.variables:
            self.absolute = self.absolute or inner.id == ABSOLUTE_NAME
            return ast.copy_location(ast.Constant(value=self.variables[inner.id]), node)
        location = Location(self.file, node.lineno, node.col_offset + 1)
        raise _unknown(body, location, self.key_path_at(node.lineno))

    def visit_Constant(self, node: ast.Constant) -> ast.expr:
        value = node.value
        if not isinstance(value, str) or "{{" not in value:
            return node
        location = Location(self.file, node.lineno, node.col_offset + 1)
        has_ref = False

        def one(m: re.Match[str]) -> str:
            nonlocal has_ref
            body = m.group(1)
            if body in self.variables:
                self.absolute = self.absolute or body == ABSOLUTE_NAME
                return self.variables[body]
            if base_reference(body) is not None:
                has_ref = True
                return m.group(0)
            raise _unknown(body, location, self.key_path_at(node.lineno))

        text = _PLACEHOLDER.sub(one, value)
        if has_ref:
            return self._call(
                FORMAT_CALL, [ast.Constant(value=text), ast.Constant(value=node.lineno)], node
            )
        return ast.copy_location(ast.Constant(value=text), node)

    def _read_chain(self, node: ast.Attribute | ast.Subscript) -> ast.expr:
        # A read of `_base_.a['b'].c` becomes one lookup; stores and deletes are
        # edits, handled by the statement visitors below.
        chain = base_chain(node)
        if chain is not None and isinstance(node.ctx, ast.Load):
            return self._base_call(chain, node)
        self.generic_visit(node)
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        return self._read_chain(node)

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        return self._read_chain(node)

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id == BASE_KEY and isinstance(node.ctx, ast.Load):
            return self._base_call((), node)
        return node

    # Editing the inherited value. mmengine hands out the bases' own objects, so
    # `_base_.model.backbone = X`, `del _base_.x`, `_base_.x.update(...)` change the base
    # itself (real configs do this, e.g. mmocr's). The editor's reads would let these
    # statements work as they are; they become explicit edits of the file's working copy
    # of the bases (`BASE_SET` / `BASE_DELETE` / `BASE_MUTATE`) so that a missing key is
    # a located error and the edit is recorded at its own line even inside a function.

    def _chain_of(self, target: ast.expr) -> KeyParts | None:
        chain = base_chain(target)
        if chain == ():
            location = Location(self.file, target.lineno, target.col_offset + 1)
            raise ConfigSubstitutionError(
                "_base_ itself cannot be replaced or deleted here",
                location=location,
                key_path=BASE_KEY,
                hint="list the bases in the one top-level `_base_ = [...]`",
            )
        return chain

    def _edit(self, name: str, path: KeyParts, args: list[ast.expr], like: ast.stmt) -> ast.stmt:
        head: list[ast.expr] = [_constant(path), ast.Constant(value=like.lineno)]
        call = self._call(name, [*head, *args], like)
        return ast.copy_location(ast.Expr(value=call), like)

    def visit_Assign(self, node: ast.Assign) -> ast.stmt | list[ast.stmt]:
        chains = [self._chain_of(t) for t in node.targets]
        if not any(chains):
            self.generic_visit(node)
            return node
        value = self.visit(node.value)
        if len(node.targets) > 1:
            location = Location(self.file, node.lineno, node.col_offset + 1)
            raise ConfigSubstitutionError(
                "assign to one _base_ path per statement",
                location=location,
                hint="split `a = _base_.x = v` into two statements",
            )
        return self._edit(BASE_SET, chains[0], [value], node)  # type: ignore[arg-type]

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.stmt:
        chain = self._chain_of(node.target)
        if not chain:
            self.generic_visit(node)
            return node
        current = self._base_call(chain, node.target)
        combined = ast.copy_location(
            ast.BinOp(left=current, op=node.op, right=self.visit(node.value)), node
        )
        return self._edit(BASE_SET, chain, [combined], node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.stmt:
        chain = self._chain_of(node.target)
        if not chain or node.value is None:
            self.generic_visit(node)
            return node
        return self._edit(BASE_SET, chain, [self.visit(node.value)], node)

    def visit_Delete(self, node: ast.Delete) -> ast.stmt | list[ast.stmt]:
        out: list[ast.stmt] = []
        plain: list[ast.expr] = []
        for target in node.targets:
            chain = self._chain_of(target)
            if chain:
                out.append(self._edit(BASE_DELETE, chain, [], node))
            else:
                plain.append(self.visit(target))
        if plain:
            out.insert(0, ast.copy_location(ast.Delete(targets=plain), node))
        return out

    def visit_Call(self, node: ast.Call) -> ast.expr:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _MUTATORS:
            chain = base_chain(func.value)
            if chain:
                args = [
                    _constant(chain),
                    ast.Constant(value=node.lineno),
                    ast.Constant(value=func.attr),
                    *[self.visit(a) for a in node.args],
                ]
                call = ast.Call(
                    func=ast.Name(id=BASE_MUTATE, ctx=ast.Load()),
                    args=args,
                    keywords=[self.visit(k) for k in node.keywords],
                )
                for new in (call, call.func, *args[:3]):
                    ast.copy_location(new, node)
                return call
        self.generic_visit(node)
        return node


#: Statements that run no code of their own: no check after them.
_INERT = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Pass)
#: Compound statements whose blocks run in the module frame, in their own order.
_BLOCKS = ("body", "orelse", "finalbody")


def add_base_checks(body: list[ast.stmt]) -> list[ast.stmt]:
    """``body`` with a ``BASE_CHECK(line)`` call after each statement (``editor.BaseEditor.check``).

    Statements inside ``if``/``for``/``while``/``with``/``try`` blocks get one too (a
    change in a loop body is recorded at the body's line); function bodies do not (a
    change inside a config's own function is recorded where it is called).
    """
    out: list[ast.stmt] = []
    for stmt in body:
        for block in _BLOCKS:
            inner = getattr(stmt, block, None)
            if isinstance(inner, list) and inner and not isinstance(stmt, _INERT):
                setattr(stmt, block, add_base_checks(inner))
        for handler in getattr(stmt, "handlers", []):
            handler.body = add_base_checks(handler.body)
        out.append(stmt)
        if not isinstance(stmt, _INERT):
            line = ast.Constant(value=stmt.lineno)
            func = ast.Name(id=BASE_CHECK, ctx=ast.Load())
            check = ast.Expr(value=ast.Call(func=func, args=[line], keywords=[]))
            for node in (line, func, check.value, check):
                ast.copy_location(node, stmt)
            out.append(check)
    return out


def _constant(path: KeyParts) -> ast.expr:
    # The ast stubs do not list tuples as Constant values; compile() accepts them.
    return ast.Constant(value=path)  # type: ignore[arg-type]


#: Methods that change a dict or list in place.
_MUTATORS = frozenset(
    {
        "update",
        "append",
        "extend",
        "insert",
        "pop",
        "popitem",
        "remove",
        "clear",
        "setdefault",
        "sort",
        "reverse",
    }
)


# ---------------------------------------------------------------------------- json/yaml


@dataclass(frozen=True, slots=True)
class Marker:
    """A placeholder replaced by a token in JSON/YAML text.

    Attributes:
        token: The unique text put in its place.
        body: The text between the braces.
        ref: The ``_base_`` key path, or None for an unknown variable.
        line: 1-based line of the placeholder.
        col: 1-based column of the placeholder.
    """

    token: str
    body: str
    ref: KeyParts | None
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class SubstitutedText:
    """JSON/YAML text ready to parse, and the markers left in it."""

    text: str
    markers: tuple[Marker, ...]
    #: Whether ``{{ fileDirname }}`` (an absolute path) was put into the text.
    absolute: bool = False


def substitute_data_text(text: str, suffix: str, variables: Mapping[str, str]) -> SubstitutedText:
    """Replace placeholders in JSON/YAML text, keeping every line where it was.

    Predefined variables become their text (mmengine's behaviour). Base references and
    unknown placeholders become marker tokens; in JSON a marker outside a string is
    quoted so the text parses.
    """
    if "{{" not in text:
        return SubstitutedText(text, ())
    absolute = False
    nonce = os.urandom(4).hex()
    markers: list[Marker] = []
    out: list[str] = []
    is_json = suffix == ".json"
    pos = 0
    in_string = False
    line = 1
    line_start = 0
    for m in _PLACEHOLDER.finditer(text):
        chunk = text[pos : m.start()]
        if is_json:
            in_string = _json_in_string(chunk, in_string)
        newlines = chunk.count("\n")
        if newlines:
            line += newlines
            line_start = pos + chunk.rindex("\n") + 1
        out.append(chunk)
        body = m.group(1)
        if body in variables:
            out.append(variables[body])
            absolute = absolute or body == ABSOLUTE_NAME
        else:
            token = f"__trackcfg_{nonce}_{len(markers)}__"
            markers.append(
                Marker(token, body, base_reference(body), line, m.start() - line_start + 1)
            )
            out.append(f'"{token}"' if is_json and not in_string else token)
        pos = m.end()
    out.append(text[pos:])
    return SubstitutedText("".join(out), tuple(markers), absolute)


def _json_in_string(chunk: str, in_string: bool) -> bool:
    i, n = 0, len(chunk)
    while i < n:
        ch = chunk[i]
        if in_string and ch == "\\":
            i += 2
            continue
        if ch == '"':
            in_string = not in_string
        i += 1
    return in_string


@dataclass(frozen=True, slots=True)
class MarkerUse:
    """Where a marker was found after loading: the key path it sits under."""

    parts: KeyParts
    marker: Marker
    whole: bool


def resolve_markers(
    data: dict[str, object],
    markers: tuple[Marker, ...],
    base: Mapping[str, object],
    file: str,
) -> tuple[dict[str, object], list[MarkerUse]]:
    """Swap marker tokens in loaded JSON/YAML data for base values.

    Returns:
        The new data and, for every key path holding a marker, how it was used.

    Raises:
        ConfigSubstitutionError: An unknown placeholder or a missing base path.
    """
    if not markers:
        return data, []
    by_token = {m.token: m for m in markers}
    token_re = re.compile("|".join(re.escape(t) for t in by_token))
    uses: list[MarkerUse] = []

    def value_of(marker: Marker, parts: KeyParts) -> object:
        location = Location(file, marker.line, marker.col)
        if marker.ref is None:
            raise _unknown(marker.body, location, str(KeyPath(parts)) or None)
        try:
            return lookup_base(base, marker.ref, location)
        except ConfigSubstitutionError as exc:
            exc.key_path = str(KeyPath(parts)) or None
            raise

    def walk(value: object, parts: KeyParts) -> object:
        if isinstance(value, str):
            if value in by_token:
                marker = by_token[value]
                uses.append(MarkerUse(parts, marker, True))
                return value_of(marker, parts)
            if "__trackcfg_" not in value:
                return value

            def one(m: re.Match[str]) -> str:
                marker = by_token[m.group(0)]
                uses.append(MarkerUse(parts, marker, False))
                return str(value_of(marker, parts))

            return token_re.sub(one, value)
        if isinstance(value, dict):
            return {k: walk(v, (*parts, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, parts) for v in value]
        if isinstance(value, tuple):
            return tuple(walk(v, parts) for v in value)
        return value

    resolved = walk(data, ())
    return resolved, uses  # type: ignore[return-value]
