"""diff(a, b) applied to a gives b; no changes exactly when the hashes agree."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.strategies import any_keys, config_keys, config_values, configs, scalars
from trackcfg.config.canonical import to_canonical_bytes
from trackcfg.config.diff import apply_changes, diff


@st.composite
def config_pairs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(a, b) where b is a with some leaves edited, keys added and keys removed."""
    a = draw(configs())

    def mutate(value: object) -> object:
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                action = draw(st.sampled_from(["keep", "keep", "edit", "drop"]))
                if action == "drop":
                    continue
                out[k] = mutate(v) if action == "edit" else v
            if draw(st.booleans()):
                out[draw(config_keys)] = draw(scalars)
            return out
        if isinstance(value, list | tuple):
            items = [mutate(v) if draw(st.booleans()) else v for v in value]
            return tuple(items) if isinstance(value, tuple) else items
        return draw(scalars) if draw(st.booleans()) else value

    b = mutate(a)
    assert isinstance(b, dict)
    return a, b


@given(config_pairs())
def test_applying_the_diff_to_a_gives_b(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    a, b = pair
    assert to_canonical_bytes(apply_changes(a, diff(a, b))) == to_canonical_bytes(b)


@given(
    st.dictionaries(config_keys, config_values(keys=any_keys), max_size=4),
    st.dictionaries(config_keys, config_values(keys=any_keys), max_size=4),
)
def test_applying_the_diff_of_unrelated_configs_gives_b(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    assert to_canonical_bytes(apply_changes(a, diff(a, b))) == to_canonical_bytes(b)


@given(config_pairs())
def test_no_changes_exactly_when_the_hashes_agree(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    a, b = pair
    assert (diff(a, b) == []) == (to_canonical_bytes(a) == to_canonical_bytes(b))


@given(config_pairs())
def test_diff_is_sorted_and_key_paths_are_disjoint(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    changes = diff(*pair)
    paths = [c.key_path for c in changes]
    assert len(set(paths)) == len(paths)
    for p in paths:
        assert not any(q != p and q.startswith(p) for q in paths)
    assert diff(*pair) == changes  # deterministic
