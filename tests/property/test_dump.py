"""Dumps reload to the same hash: Python always; YAML and JSON where the format allows."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies import (
    any_keys,
    config_keys,
    config_values,
    configs,
    importable_objects,
    python_configs,
    run_python,
    scalars,
)
from trackcfg.config.canonical import decode_value, to_canonical_bytes
from trackcfg.config.dump import register_yaml_tags, to_json_text, to_python_text, to_yaml_text


class TaggedLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus the tags to_yaml_text writes."""


register_yaml_tags(TaggedLoader)


@given(python_configs(with_objects=True, nested_keys=any_keys))
def test_python_dump_reloads_to_the_same_hash_and_key_order(config: dict[str, Any]) -> None:
    from trackcfg.config.config import Config

    text = to_python_text(config)
    executed = run_python(text)
    assert to_canonical_bytes(executed) == to_canonical_bytes(config)
    assert list(executed) == list(config)
    assert Config.fromstring(text, ".py").hash == Config(config).hash


any_key_configs = st.dictionaries(
    config_keys,
    config_values(leaves=st.one_of(scalars, importable_objects), keys=any_keys),
    max_size=5,
)


@given(any_key_configs)
def test_yaml_dump_reloads_to_the_same_hash(config: dict[str, Any]) -> None:
    loaded = yaml.load(to_yaml_text(config), Loader=TaggedLoader)
    assert to_canonical_bytes(loaded or {}) == to_canonical_bytes(config)


@given(any_key_configs)
def test_json_dump_reloads_to_the_same_hash(config: dict[str, Any]) -> None:
    loaded = decode_value(json.loads(to_json_text(config)))
    assert isinstance(loaded, dict)
    assert to_canonical_bytes(loaded) == to_canonical_bytes(config)
    assert list(loaded) == list(config)


@pytest.mark.parametrize(("suffix", "dump"), [(".yaml", to_yaml_text), (".json", to_json_text)])
@given(config=configs(leaves=st.one_of(scalars, importable_objects)))
def test_dumps_reloaded_by_config_fromstring_keep_the_hash(
    suffix: str, dump: Callable[[dict[str, Any]], str], config: dict[str, Any]
) -> None:
    from trackcfg.config.config import Config

    assert Config.fromstring(dump(config), suffix).hash == Config(config).hash
