"""Dumps reload to the same hash: Python always; YAML and JSON where the format allows."""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from typing import Any

import yaml
from hypothesis import given

from tests.strategies import configs, python_configs
from trackcfg.config.canonical import to_canonical_bytes
from trackcfg.config.dump import to_json_text, to_python_text, to_yaml_text


def run_python(text: str) -> dict[str, object]:
    namespace: dict[str, Any] = {}
    exec(compile(text, "<dump>", "exec"), namespace)
    return {
        k: v
        for k, v in namespace.items()
        if not k.startswith("__") and not isinstance(v, types.ModuleType)
    }


class TupleLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus ``!!python/tuple`` (what trackcfg's YAML reader accepts)."""


TupleLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple",
    lambda loader, node: tuple(loader.construct_sequence(node, deep=True)),  # type: ignore[arg-type]
)


def without_tuples(value: object) -> object:
    if isinstance(value, Mapping):
        return {k: without_tuples(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_tuples(v) for v in value]
    return value


@given(python_configs(with_objects=True))
def test_python_dump_reloads_to_the_same_hash_and_key_order(config: dict[str, Any]) -> None:
    from trackcfg.config.config import Config

    text = to_python_text(config)
    executed = run_python(text)
    assert to_canonical_bytes(executed) == to_canonical_bytes(config)
    assert list(executed) == list(config)
    assert Config.fromstring(text, ".py").hash == Config(config).hash


@given(configs())
def test_yaml_dump_reloads_to_the_same_hash(config: dict[str, Any]) -> None:
    from trackcfg.config.config import Config

    text = to_yaml_text(config)
    loaded = yaml.load(text, Loader=TupleLoader)
    assert to_canonical_bytes(loaded or {}) == to_canonical_bytes(config)
    assert Config.fromstring(text, ".yaml").hash == Config(config).hash


@given(configs())
def test_json_dump_reloads_to_the_same_hash_once_tuples_are_lists(config: dict[str, Any]) -> None:
    from trackcfg.config.config import Config

    text = to_json_text(config)
    loaded = json.loads(text)
    plain: dict[str, Any] = without_tuples(config)  # type: ignore[assignment]
    assert to_canonical_bytes(loaded) == to_canonical_bytes(plain)
    assert list(loaded) == list(config)
    assert Config.fromstring(text, ".json").hash == Config(plain).hash
