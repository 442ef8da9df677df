"""Canonical bytes: order-independent, sensitive to every leaf and type, invertible, stable."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from tests.strategies import (
    Color,
    any_keys,
    config_values,
    configs,
    importable_objects,
    leaves,
    replaced,
    reversed_order,
    scalars,
)
from trackcfg.config.canonical import (
    decode_value,
    digest,
    encode_value,
    from_canonical_bytes,
    to_canonical_bytes,
)


def same(a: object, b: object) -> bool:
    """Typed structural equality: 1 != 1.0 != True, nan == nan, 0.0 != -0.0."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def retyped(value: object) -> list[object]:
    """Values equal-ish to ``value`` but of another type: each must hash differently."""
    if isinstance(value, bool):
        return [int(value), float(value)]
    if isinstance(value, int):
        return [float(value)] + ([bool(value)] if value in (0, 1) else []) + [str(value)]
    if isinstance(value, float):
        return [str(value)] + ([int(value)] if value.is_integer() else [])
    if isinstance(value, tuple):
        return [list(value)]
    if isinstance(value, list):
        return [tuple(value)]
    if value is None:
        return ["None", 0, False]
    return []


@given(configs())
def test_hash_ignores_key_order(config: dict[str, Any]) -> None:
    assert to_canonical_bytes(reversed_order(config)) == to_canonical_bytes(config)  # type: ignore[arg-type]


@given(configs(), st.data())
def test_hash_changes_on_any_leaf_edit(config: dict[str, Any], data: st.DataObject) -> None:
    paths = [p for p, _ in leaves(config) if p]
    assume(paths)
    path = data.draw(st.sampled_from(paths))
    old = dict(leaves(config))[path]
    new = data.draw(scalars)
    assume(not same(old, new))
    edited = replaced(config, path, new)
    assert to_canonical_bytes(edited) != to_canonical_bytes(config)  # type: ignore[arg-type]


@given(configs(), st.data())
def test_hash_changes_on_any_type_change(config: dict[str, Any], data: st.DataObject) -> None:
    candidates = [(p, v) for p, v in leaves(config) if p and retyped(v)]
    assume(candidates)
    path, old = data.draw(st.sampled_from(candidates))
    new = data.draw(st.sampled_from(retyped(old)))
    edited = replaced(config, path, new)
    assert to_canonical_bytes(edited) != to_canonical_bytes(config)  # type: ignore[arg-type]


@given(config_values(leaves=st.one_of(scalars, importable_objects), keys=any_keys))
def test_decode_inverts_encode(value: object) -> None:
    decoded = decode_value(encode_value(value), resolve=True)
    assert same(decoded, value)
    assert encode_value(decode_value(encode_value(value))) == encode_value(value)


@given(configs(leaves=st.one_of(scalars, importable_objects)))
def test_from_canonical_bytes_inverts_to_canonical_bytes(config: dict[str, Any]) -> None:
    data = to_canonical_bytes(config)
    assert same(from_canonical_bytes(data, resolve=True), config)
    assert to_canonical_bytes(from_canonical_bytes(data)) == data


@given(st.sets(st.text(max_size=5), max_size=6), st.sets(st.integers(), max_size=6))
def test_sets_hash_independently_of_iteration_order(texts: set[str], ints: set[int]) -> None:
    forward = {"s": texts, "i": frozenset(ints)}
    backward = {"s": set(sorted(texts, reverse=True)), "i": frozenset(sorted(ints, reverse=True))}
    assert to_canonical_bytes(forward) == to_canonical_bytes(backward)


STABLE_CONFIG = {
    "model": {"type": "ResNet", "depth": 50, "out": (0, 1, 2, 3), "scale": -0.0},
    "names": {"alpha", "beta", "gamma", "delta", "epsilon"},
    "frozen": frozenset({"x", "y", "z"}),
    "keys": {1: "a", "b": 2, (1, "t"): None},
    "floats": [0.1, 1e-300, math.inf, math.nan, 2.0**60],
    "color": Color.GREEN,
    "unicode": "ŝtrïng ✓",
}

SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from tests.property.test_canonical import STABLE_CONFIG
from trackcfg.config.canonical import digest, to_canonical_bytes
print(digest(to_canonical_bytes(STABLE_CONFIG)))
"""


def test_hash_is_the_same_in_processes_with_different_hash_seeds() -> None:
    root = str(Path(__file__).resolve().parents[2])
    expected = digest(to_canonical_bytes(STABLE_CONFIG))
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(root=root)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == expected
