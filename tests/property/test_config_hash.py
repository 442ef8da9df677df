"""Config.hash ignores key order, file format and formatting, and sees every leaf edit."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.property.strategies_config import portable_configs
from tests.strategies import python_configs
from trackcfg.config.config import Config


def reversed_order(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: reversed_order(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_order(v) for v in value]
    if isinstance(value, tuple):
        return tuple(reversed_order(v) for v in value)
    return value


def python_text(data: dict[str, Any], spaced: bool) -> str:
    sep = " = " if spaced else "="
    return "".join(
        f"{k}{sep}{v!r}\n" + ("# comment\n\n" if spaced else "") for k, v in data.items()
    )


@given(python_configs(with_objects=True))
def test_hash_ignores_key_order(data: dict[str, Any]) -> None:
    assert Config(data).hash == Config(reversed_order(data)).hash


@given(portable_configs())
def test_hash_is_the_same_in_every_file_format(data: dict[str, Any]) -> None:
    expected = Config(data).hash
    assert Config.fromstring(python_text(data, spaced=True), ".py").hash == expected
    assert Config.fromstring(python_text(data, spaced=False), ".py").hash == expected
    assert Config.fromstring(json.dumps(data, indent=2), ".json").hash == expected
    assert Config.fromstring(json.dumps(data), ".json").hash == expected
    assert Config.fromstring(yaml.safe_dump(data), ".yaml").hash == expected
    assert Config.fromstring(yaml.safe_dump(data, default_flow_style=True), ".yml").hash == expected


def leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict) and value:
        return [p for k, v in value.items() for p in leaf_paths(v, (*prefix, k))]
    if isinstance(value, list | tuple) and value:
        return [p for i, v in enumerate(value) for p in leaf_paths(v, (*prefix, i))]
    return [prefix]


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: replaced(v, rest, new) if k == head else v for k, v in value.items()}
    items = [replaced(v, rest, new) if i == head else v for i, v in enumerate(value)]
    return tuple(items) if isinstance(value, tuple) else items


@given(python_configs(with_objects=True).filter(bool), st.data())
def test_hash_changes_on_any_leaf_edit(data: dict[str, Any], draw: st.DataObject) -> None:
    path = draw.draw(st.sampled_from(leaf_paths(data)))
    old: Any = data
    for part in path:
        old = old[part]
    # Wrapping the old leaf in a list is always a different value (and type).
    assert Config(replaced(data, path, [old])).hash != Config(data).hash
