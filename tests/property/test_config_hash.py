"""Config.hash ignores key order, file format and formatting, and sees every leaf edit."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.property.strategies_config import portable_configs
from tests.strategies import leaves, python_configs, replaced, reversed_order
from trackcfg.config.config import Config


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


@given(python_configs(with_objects=True).filter(bool), st.data())
def test_hash_changes_on_any_leaf_edit(data: dict[str, Any], draw: st.DataObject) -> None:
    path, old = draw.draw(st.sampled_from(list(leaves(data))))
    # Wrapping the old leaf in a list is always a different value (and type).
    assert Config(replaced(data, path, [old])).hash != Config(data).hash
