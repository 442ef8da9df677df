"""Hypothesis strategies for config-engine properties (built on tests/strategies.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.strategies import identifiers

#: Keys the loader gives a meaning to (or refuses) at the top level of a file.
SPECIAL_KEYS = frozenset(
    {"_base_", "_delete_", "custom_imports", "filename", "text", "pretty_text", "env_variables"}
)

#: Text that every format writes and reads back unchanged (no `{{`: a placeholder).
plain_text = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")),
    max_size=10,
).filter(lambda s: "{{" not in s and "}}" not in s)

top_keys = identifiers.filter(lambda k: k not in SPECIAL_KEYS)
# Not '!'-keys: in JSON a one-key object {"!x": ...} is a type tag by design (readers.py;
# a literal '!' is written '!!'), so such a dict is not portable to every format.
nested_keys = st.one_of(
    top_keys, plain_text.filter(lambda k: k != "_delete_" and not k.startswith("!"))
)

#: Scalars every format (py/json/yaml) carries exactly.
portable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    plain_text,
)


def portable_values(*, tuples: bool = False) -> st.SearchStrategy[Any]:
    """Nested lists/dicts (and tuples when asked) of portable scalars."""

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        options = [
            st.lists(children, max_size=3),
            st.dictionaries(nested_keys, children, max_size=3),
        ]
        if tuples:
            options.append(st.lists(children, max_size=3).map(tuple))
        return st.one_of(*options)

    return st.recursive(portable_scalars, extend, max_leaves=12)


def portable_configs(*, tuples: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """A config dict whose top-level keys are Python names and values are portable."""
    return st.dictionaries(top_keys, portable_values(tuples=tuples), max_size=5)


#: Small key alphabet so that a child and its base often touch the same key paths.
_small_keys = st.sampled_from(["a", "b", "c"])

overlapping_configs: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    _small_keys,
    st.recursive(
        st.one_of(
            st.integers(-3, 3), st.sampled_from(["x", "y"]), st.lists(st.integers(0, 2), max_size=2)
        ),
        lambda children: st.dictionaries(_small_keys, children, max_size=3),
        max_leaves=8,
    ),
    max_size=3,
)


def with_deletes(config: dict[str, Any], flags: list[bool]) -> dict[str, Any]:
    """Put ``_delete_=True`` into nested dicts of ``config``, one flag per dict met."""
    flag_iter = iter(flags)

    def walk(value: Any, top: bool) -> Any:
        if isinstance(value, dict):
            out = {k: walk(v, False) for k, v in value.items()}
            if not top and next(flag_iter, False):
                out["_delete_"] = True
            return out
        return value

    return walk(config, True)  # type: ignore[no-any-return]
