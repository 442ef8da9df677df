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
"""

from __future__ import annotations

import collections
import enum
import keyword
import math
import os.path
import pathlib
import string
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
    "option_values",
    "python_configs",
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
    keys: st.SearchStrategy[str] = config_keys,
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
