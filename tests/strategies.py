"""Every shared Hypothesis strategy of the test suite, in one place (as attrs does).

Import as ``from tests.strategies import configs`` (pytest puts the repository root on
``sys.path``: ``pythonpath = ["."]`` in pyproject.toml). Other helpers add their own strategies in
``tests/property/strategies_<x>.py`` and may build on these.

Shapes:

* ``config_keys``: str keys as configs use them (identifiers, mostly) plus odd ones;
  never one of ``RESERVED_KEYS`` (``_base_``, ``_delete_``, ...), which no resolved
  config contains.
* ``scalars``: None, bool, int (incl. beyond 64 bits), float (incl. -0.0, inf, nan), str.
* ``config_values``: scalars nested in lists, tuples and str-keyed dicts (or ``any_keys``:
  ints, None, floats, tuples as keys too).
* ``configs``: a resolved config, ``dict[str, value]``; ``python_configs``: one whose
  top-level keys are valid Python variable names (what a ``.py`` dump can carry).
* ``importable_objects``: classes, functions and enum members with import paths.
* ``key_paths``: ``KeyPath`` with arbitrary str / int parts.
* ``option_values``: values a ``--cfg-options`` string can express.

With them, the pure tree helpers the properties (and a few unit tests) share:
``reversed_order``, ``leaves`` (non-empty dicts, lists and tuples are walked into;
anything else, empty containers included, is a leaf), ``replaced`` and ``run_python``
(run dumped ``.py`` text, keeping what a config loader keeps as keys).
"""

from __future__ import annotations

import collections
import enum
import keyword
import math
import os.path
import pathlib
import string
import types
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import strategies as st

from trackcfg.config.keypath import KeyPath

__all__ = [
    "RESERVED_KEYS",
    "Color",
    "any_keys",
    "config_keys",
    "config_values",
    "configs",
    "finite_floats",
    "identifiers",
    "importable_objects",
    "key_paths",
    "leaves",
    "option_values",
    "python_configs",
    "replaced",
    "reversed_order",
    "run_python",
    "scalars",
]


class Color(enum.Enum):
    """An importable enum for tests that need enum members as config values."""

    RED = 1
    GREEN = "green"


#: Keys with a meaning while loading (never in a resolved config): strategies avoid them.
RESERVED_KEYS = frozenset({"_base_", "_delete_", "_deprecation_", "_scope_", "custom_imports"})


def _is_python_name(name: str) -> bool:
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and not name.startswith("__")
        and name not in RESERVED_KEYS
    )


#: Lower-case snake_case identifiers, the usual shape of config keys.
identifiers = (
    st.tuples(
        st.sampled_from(string.ascii_lowercase + "_"),
        st.text(alphabet=string.ascii_lowercase + string.digits + "_", max_size=11),
    )
    .map("".join)
    .filter(_is_python_name)
)

#: Config keys: mostly identifiers, sometimes arbitrary text (JSON/YAML allow any key).
config_keys = st.one_of(
    identifiers,
    identifiers,
    identifiers,
    st.text(max_size=8).filter(lambda k: k not in RESERVED_KEYS),
    st.sampled_from(["!tuple", "!!x", "!", "a.b", "0", ""]),
)

#: Top-level keys of a resolved config: never a private ``__name`` (every reader drops
#: those, as mmengine does, so no file holds one after loading).
top_level_keys = config_keys.filter(lambda k: not k.startswith("__"))

finite_floats = st.floats(allow_nan=False, allow_infinity=False)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 0.1, math.inf, -math.inf, math.nan, 1e300]),
    st.text(max_size=12),
    st.sampled_from(
        ["", "1", "True", "None", "a b", "!tuple", "it's", 'q"uote', "é∂", "{{ x }}", "{{{"]
    ),
)

#: Classes, functions (Python and builtin) and enum members, all importable by name.
importable_objects = st.sampled_from(
    [
        collections.OrderedDict,
        pathlib.PurePosixPath,
        int,
        math.sqrt,
        os.path.join,
        string.capwords,
        Color.RED,
        Color.GREEN,
    ]
)


#: Dict keys beyond str: what a ``.py`` config may use in ``{...}`` literals.
any_keys = st.one_of(
    config_keys,
    st.integers(min_value=-3, max_value=1000),
    st.none(),
    st.tuples(st.integers(0, 3), identifiers),
    finite_floats,
)


def config_values(
    *,
    leaves: st.SearchStrategy[Any] = scalars,
    keys: st.SearchStrategy[Any] = config_keys,
    max_leaves: int = 20,
) -> st.SearchStrategy[Any]:
    """Scalars nested in lists, tuples and dicts (str-keyed unless ``keys`` says otherwise)."""
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=4).map(tuple),
            st.dictionaries(keys, children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def configs(
    *,
    leaves: st.SearchStrategy[Any] = scalars,
    keys: st.SearchStrategy[str] = top_level_keys,
    nested_keys: st.SearchStrategy[Any] = config_keys,
    max_leaves: int = 20,
) -> st.SearchStrategy[dict[str, Any]]:
    """A resolved config: a str-keyed dict of nested config values."""
    values = config_values(leaves=leaves, keys=nested_keys, max_leaves=max_leaves)
    return st.dictionaries(keys, values, min_size=0, max_size=6)


def python_configs(
    *,
    with_objects: bool = False,
    nested_keys: st.SearchStrategy[Any] = config_keys,
    max_leaves: int = 20,
) -> st.SearchStrategy[dict[str, Any]]:
    """A config a ``.py`` file can hold: top-level keys are Python variable names.

    With ``with_objects``, leaves include importable classes, functions and enum members;
    ``nested_keys=any_keys`` also puts ints, None, floats and tuples in nested dict keys.
    """
    leaves = st.one_of(scalars, importable_objects) if with_objects else scalars
    return configs(leaves=leaves, keys=identifiers, nested_keys=nested_keys, max_leaves=max_leaves)


#: KeyPath with arbitrary parts: any str (dots, brackets, quotes, digits, empty) or int.
key_paths = st.lists(
    st.one_of(
        st.text(max_size=6),
        identifiers,
        st.integers(min_value=-5, max_value=10**6),
        st.sampled_from(["0", "-1", "a.b", "[0]", "'", '"', "\\", "x'y\"z", "", " "]),
    ),
    max_size=5,
).map(lambda parts: KeyPath(tuple(parts)))

_option_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    finite_floats,
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8),
)

#: Values expressible in one ``--cfg-options`` value: scalars, (nested) lists and tuples.
option_values = st.recursive(
    _option_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.lists(children, max_size=3).map(tuple)
    ),
    max_leaves=8,
)


# -- tree helpers ---------------------------------------------------------------------

#: A path into a tree: dict keys and list/tuple indices.
TreePath = tuple[Any, ...]


def reversed_order(value: object) -> object:
    """The same value with every dict's insertion order reversed."""
    if isinstance(value, Mapping):
        return {k: reversed_order(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_order(v) for v in value]
    if isinstance(value, tuple):
        return tuple(reversed_order(v) for v in value)
    return value


def leaves(value: object, path: TreePath = ()) -> Iterator[tuple[TreePath, object]]:
    """Every leaf below ``value`` (itself when it is one) with its path, in order."""
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            yield from leaves(v, (*path, k))
    elif isinstance(value, list | tuple) and value:
        for i, v in enumerate(value):
            yield from leaves(v, (*path, i))
    else:
        yield path, value


def replaced(value: object, path: TreePath, new: object) -> object:
    """A copy of ``value`` with the item at ``path`` replaced by ``new``."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, Mapping):
        return {k: (replaced(v, rest, new) if k == head else v) for k, v in value.items()}
    if not isinstance(value, list | tuple):
        raise TypeError(f"cannot index {type(value).__name__} with {head!r}")
    items = [replaced(v, rest, new) if i == head else v for i, v in enumerate(value)]
    return tuple(items) if isinstance(value, tuple) else items


def run_python(text: str) -> dict[str, object]:
    """Execute ``.py`` config text; keep what a config loader keeps as keys."""
    namespace: dict[str, Any] = {}
    exec(compile(text, "<dump>", "exec"), namespace)
    return {
        k: v
        for k, v in namespace.items()
        if not k.startswith("__") and not isinstance(v, types.ModuleType)
    }
