"""Whether a ``.py`` config's values depend only on its text, its path and its bases.

The loader reuses the resolved values of a base file (``basecache``) only when running
it again could not give anything else. That holds for JSON and YAML; for a ``.py``
config ``is_pure`` accepts only:

* imports of ``math`` and ``copy``, used only as ``math.floor`` / ``copy.deepcopy``
  (functions of their arguments);
* of the builtins, those that only compute (``dict``, ``range``, ``sorted``, ...);
  any other builtin name (``open``, ``print``, ``getattr``, ``__import__``...) used
  or assigned anywhere in the file makes it impure, as does the same name as an
  attribute (``x.open``: the check reads names, not what they name);
* no dunder names but ``__file__``, ``__name__``, ``__doc__`` and ``__annotations__``,
  and no dunder attributes (the ways out of plain data:
  ``().__class__.__subclasses__()``); a ``class`` body uses ``__module__``, so
  classes are out too.

Everything else a config can reach is data from its own literals and its bases
(themselves pure), so running it twice gives equal values (up to object addresses,
which no two runs share anyway). A file this rejects is still loaded, just not
reused: the check only has to be safe, not complete. Real OpenMMLab configs (dicts,
comprehensions, ``_base_`` references, ``copy.deepcopy``) pass it.
"""

from __future__ import annotations

import ast
import builtins
import copy
import math
import types

from trackcfg.config.transform import (
    BASE_CALL,
    BASE_CHECK,
    BASE_DELETE,
    BASE_MUTATE,
    BASE_SET,
    FORMAT_CALL,
)

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
#: Dunder names a pure config may use: fixed by the file's path, or by its text.
_DUNDER_NAMES = frozenset({"__file__", "__name__", "__doc__", "__annotations__"})
#: The helpers the placeholder transform calls (``editor.BaseEditor``'s methods).
_HELPERS = frozenset({BASE_CALL, FORMAT_CALL, BASE_SET, BASE_DELETE, BASE_MUTATE, BASE_CHECK})


def is_pure(tree: ast.Module, code: types.CodeType, text: str) -> bool:
    """Whether running a ``.py`` config again, on equal bases, must give equal values.

    Args:
        tree: Its ast (read only when ``text`` imports something).
        code: Its compiled code (placeholder transform applied): every global,
            builtin and attribute name it uses is in some ``co_names``, which is far
            cheaper to read than the ast.
        text: Its source.

    Example:
        >>> def check(text):
        ...     tree = ast.parse(text)
        ...     return is_pure(tree, compile(tree, "<config>", "exec"), text)
        >>> check("import copy\\nm = dict(a=[i * 2 for i in range(3)], b=copy.deepcopy([1]))")
        True
        >>> check("import os\\nhome = os.environ['HOME']")
        False
        >>> check("log = print")
        False
        >>> check("def f():\\n    return ().__class__")
        False
        >>> check("import copy\\nw = copy.weakref")
        False
    """
    codes = [code]
    while codes:
        current = codes.pop()
        for name in current.co_names:
            if name in _IMPURE_BUILTINS or (_is_dunder(name) and name not in _HELPERS):
                return False
        codes.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    # An import statement needs the keyword: most configs have none.
    return "import" not in text or _imports_are_pure(tree)


def _imports_are_pure(tree: ast.Module) -> bool:
    """Only pure modules imported, and their names used only as ``module.member``."""
    modules: dict[str, str] = {}  # name bound by `import m [as name]` -> m
    names: list[ast.Name] = []
    attributes: list[ast.Attribute] = []
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
        elif isinstance(node, ast.Name):
            names.append(node)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            attributes.append(node)
    members: set[int] = set()
    for attribute in attributes:
        module = modules.get(attribute.value.id)  # type: ignore[attr-defined]
        if module is not None:
            if attribute.attr not in PURE_MODULES[module] or not isinstance(
                attribute.ctx, ast.Load
            ):
                return False
            members.add(id(attribute.value))
    return all(n.id not in modules or id(n) in members for n in names)


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and name not in _DUNDER_NAMES
