"""Whether a ``.py`` config's values depend only on its text, its path and its bases.

The loader reuses the resolved values of a base file (``basecache``) only when running
it again could not give anything else. That holds for JSON and YAML; for a ``.py``
config ``is_pure`` reads its ast, before the placeholder transform, and accepts only:

* imports of ``math`` and ``copy``, used only as ``math.floor`` / ``copy.deepcopy``
  (functions of their arguments);
* of the builtins, those that only compute (``dict``, ``range``, ``sorted``, ...);
  any other builtin name (``open``, ``print``, ``getattr``, ``__import__``...)
  anywhere in the file makes it impure, even rebound (the first use may come first);
* no dunder names but ``__file__`` and ``__name__``, no dunder attributes (the ways
  out of plain data: ``().__class__.__subclasses__()``), no ``class`` statements.

Everything else a config can reach is data from its own literals and its bases
(themselves pure), so running it twice gives equal values. A file this rejects is
still loaded, just not reused: the check only has to be safe, not complete. Real
OpenMMLab configs (dicts, comprehensions, ``_base_`` references, ``copy.deepcopy``)
pass it.
"""

from __future__ import annotations

import ast
import builtins
import copy
import math

__all__ = ["PURE_BUILTINS", "PURE_MODULES", "is_pure"]

#: Builtins that compute a value from their arguments and touch nothing else.
PURE_BUILTINS = frozenset(
    {
        "abs",
        "all",
        "any",
        "bin",
        "bool",
        "bytes",
        "chr",
        "complex",
        "dict",
        "divmod",
        "enumerate",
        "filter",
        "float",
        "format",
        "frozenset",
        "hex",
        "int",
        "isinstance",
        "len",
        "list",
        "map",
        "max",
        "min",
        "oct",
        "ord",
        "pow",
        "range",
        "repr",
        "reversed",
        "round",
        "set",
        "slice",
        "sorted",
        "str",
        "sum",
        "tuple",
        "zip",
        # Constants and exceptions: values, no effects.
        "True",
        "False",
        "None",
        "Ellipsis",
        "NotImplemented",
        "Exception",
        "KeyError",
        "IndexError",
        "ValueError",
        "TypeError",
        "AttributeError",
        "ZeroDivisionError",
        "StopIteration",
    }
)
#: Modules a pure config may import, and the names it may use from each (functions of
#: their arguments, and constants). A module itself must not be handed around: some
#: hold other modules (``copy.weakref``), a way to ``sys`` and ``os.environ``.
PURE_MODULES: dict[str, frozenset[str]] = {
    "math": frozenset(name for name in dir(math) if not name.startswith("_")),
    "copy": frozenset(copy.__all__),
}
_IMPURE_BUILTINS = frozenset(dir(builtins)) - PURE_BUILTINS
#: Dunder names a pure config may use: both are fixed by the file's path.
_DUNDER_NAMES = frozenset({"__file__", "__name__"})


def is_pure(tree: ast.Module) -> bool:
    """Whether running ``tree`` again, on equal bases, must give equal values.

    Example:
        >>> is_pure(ast.parse("import copy\\nm = dict(a=[i * 2 for i in range(3)])"))
        True
        >>> is_pure(ast.parse("import os\\nhome = os.environ['HOME']"))
        False
        >>> is_pure(ast.parse("log = print"))
        False
        >>> is_pure(ast.parse("import copy\\nw = copy.weakref"))
        False
    """
    modules: dict[str, str] = {}  # name bound by `import m [as name]` -> m
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in PURE_MODULES:
                    return False
                modules[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            allowed = PURE_MODULES.get(node.module or "") if not node.level else None
            if allowed is None or any(a.name != "*" and a.name not in allowed for a in node.names):
                return False
    # A module name may only be the object of `module.member` (a load).
    members: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = modules.get(node.value.id)
            if module is not None:
                if node.attr not in PURE_MODULES[module] or not isinstance(node.ctx, ast.Load):
                    return False
                members.add(id(node.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id in _IMPURE_BUILTINS or _is_dunder(node.id):
                return False
            if node.id in modules and id(node) not in members:
                return False
        elif isinstance(node, ast.Attribute):
            if _is_dunder(node.attr):
                return False
        elif isinstance(node, ast.ClassDef):
            return False
        elif isinstance(node, ast.arg | ast.FunctionDef | ast.AsyncFunctionDef | ast.alias):
            if isinstance(node, ast.arg):
                bound = node.arg
            elif isinstance(node, ast.alias):
                bound = node.asname or node.name
            else:
                bound = node.name
            if bound in _IMPURE_BUILTINS or _is_dunder(bound):
                return False
    return True


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and name not in _DUNDER_NAMES
