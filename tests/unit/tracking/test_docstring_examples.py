"""The examples in the tracking modules' docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "trackcfg.tracking.confinement",
    "trackcfg.tracking.gitstate",
    "trackcfg.tracking.agent.journal",
    "trackcfg.tracking.mlflow_run",
    "trackcfg.tracking.redaction",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_pass(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
