"""The examples in the config engine's docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "trackcfg.config.config",
    "trackcfg.config.configdict",
    "trackcfg.config.merge",
    "trackcfg.config.provenance",
    "trackcfg.config.substitute",
    "trackcfg.config.transform",
    "trackcfg.config.marker",
    "trackcfg.config.readers",
    "trackcfg.config.purity",
    "trackcfg.config.inherit",
    "trackcfg.config.imports",
    "trackcfg.config.limits",
    "trackcfg.config.canonical",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
