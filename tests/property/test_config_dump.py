"""Dumping a config and loading the dump gives the same hash, in every format."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given

from tests.property.strategies_config import SPECIAL_KEYS
from tests.strategies import python_configs
from trackcfg.config.config import Config


def round_trip(data: dict[str, Any], suffix: str) -> Config:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"dumped{suffix}"
        Config(data).dump(path)
        return Config.fromfile(path)


def loadable(data: dict[str, Any]) -> bool:
    # Text with `{{` is fine: the dumps escape it so no reader takes it for a placeholder.
    return not (SPECIAL_KEYS & set(data))


@given(python_configs(with_objects=True).filter(loadable))
def test_python_dump_round_trips(data: dict[str, Any]) -> None:
    assert round_trip(data, ".py").hash == Config(data).hash


@given(python_configs(with_objects=True).filter(loadable))
def test_yaml_dump_round_trips(data: dict[str, Any]) -> None:
    assert round_trip(data, ".yaml").hash == Config(data).hash


@given(python_configs(with_objects=True).filter(loadable))
def test_json_dump_round_trips(data: dict[str, Any]) -> None:
    assert round_trip(data, ".json").hash == Config(data).hash
