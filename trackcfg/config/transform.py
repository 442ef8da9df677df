"""The ast transform of a ``.py`` config: placeholders and ``_base_`` chains become calls.

No text is rewritten (except ``index_python_placeholders``, which keeps every line):
the file is parsed with ``ast`` and ``PythonPlaceholderTransformer`` rewrites nodes in
place (``copy_location`` keeps lines):

* ``{{ x }}`` parses as a set of a set, which is replaced by the value;
* strings containing placeholders are interpolated;
* every ``_base_.a.b`` / ``_base_['a']`` chain (mmengine's expression form) becomes a
  call that returns the inherited value itself, as mmengine's does (from
  ``editor.BaseEditor``'s working copy of the bases);
* statements that edit ``_base_`` itself (``_base_.x.y = v``, ``+=``, ``del``,
  ``_base_.x.update(...)``) become explicit edit calls, and ``add_base_checks`` puts a
  check after every statement that records changes made through a read value.

The calls name helpers (``BASE_CALL`` ...) that ``bind_helpers`` binds to a
``BaseEditor`` in the namespace the code runs in. The result depends only on the
file's text, its path and its display path: ``readers`` may reuse it for the same three.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from trackcfg.config.keypath import KeyParts
from trackcfg.config.location import Location
from trackcfg.config.substitute import (
    ABSOLUTE_NAME,
    BASE_KEY,
    PLACEHOLDER,
    base_reference,
    placeholder_bodies,
    unknown_placeholder,
)
from trackcfg.errors import ConfigSubstitutionError

if TYPE_CHECKING:
    from trackcfg.config.editor import BaseEditor

__all__ = [
    "BASE_CALL",
    "BASE_CHECK",
    "BASE_DELETE",
    "BASE_MUTATE",
    "BASE_SET",
    "FORMAT_CALL",
    "PythonPlaceholderTransformer",
    "add_base_checks",
    "base_chain",
    "bind_helpers",
    "index_python_placeholders",
    "placeholder_expr",
    "reference_of",
    "target_parts",
]

#: Names of the helpers bound in a .py config's namespace (dunder: never config keys).
BASE_CALL = "__trackcfg_base__"
FORMAT_CALL = "__trackcfg_format__"
BASE_SET = "__trackcfg_base_set__"
BASE_DELETE = "__trackcfg_base_delete__"
BASE_MUTATE = "__trackcfg_base_mutate__"
BASE_CHECK = "__trackcfg_base_check__"

# Necessary for an edit by `index_python_placeholders`: `{{ _base_`, then `.<digit>`
# before any closing brace.
_DOTTED_INDEX_IN_PLACEHOLDER = re.compile(r"\{\{\s*_base_[^}]*?\.[0-9]")


def target_parts(node: ast.expr) -> KeyParts | None:
    """The parts of a ``name.a['b'][0]`` chain, root name first (constant subscripts only).

    Example:
        >>> target_parts(ast.parse("x.a['b'][0]", mode="eval").body)
        ('x', 'a', 'b', 0)
    """
    parts: list[str | int] = []
    while True:
        if isinstance(node, ast.Name):
            return (node.id, *reversed(parts))
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
            if not isinstance(key, str | int) or isinstance(key, bool):
                return None
            parts.append(key)
            node = node.value
        else:
            return None


def base_chain(node: ast.expr) -> KeyParts | None:
    """The key path of a ``_base_.a['b'].c`` chain (``()`` for bare ``_base_``), else None."""
    parts = target_parts(node)
    return parts[1:] if parts is not None and parts[0] == BASE_KEY else None


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
        raise unknown_placeholder(body, location, self.key_path_at(node.lineno))

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
            raise unknown_placeholder(body, location, self.key_path_at(node.lineno))

        text = PLACEHOLDER.sub(one, value)
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


def reference_of(node: ast.expr | None) -> KeyParts | None:
    """The base key path when ``node`` is exactly a `_base_` reference, else None."""
    if node is None:
        return None
    inner = placeholder_expr(node)
    chain = base_chain(inner if inner is not None else node)
    if chain:
        return chain
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and "{{" in node.value:
        # A string holding one `{{ _base_.x }}` (whole or interpolated) substitutes x.
        refs = [ref for ref in map(base_reference, placeholder_bodies(node.value)) if ref]
        if len(refs) == 1:
            return refs[0]
    return None


def bind_helpers(editor: BaseEditor) -> dict[str, object]:
    """The names the transformed code calls, bound to ``editor``'s methods."""
    return {
        BASE_CALL: editor.read,
        FORMAT_CALL: editor.format,
        BASE_SET: editor.set,
        BASE_DELETE: editor.delete,
        BASE_MUTATE: editor.mutate,
        BASE_CHECK: editor.check,
    }
