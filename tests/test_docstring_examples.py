"""Every module's docstring examples run and hold: found by walking the package, not a list.

A module with examples is tested; a ``__main__`` module is skipped (importing it
runs the program). Examples that write files use temp dirs of their own.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import trackcfg

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(trackcfg.__path__, "trackcfg.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0


def test_the_walk_finds_the_modules_with_examples() -> None:
    found = {
        name
        for name in MODULES
        if doctest.DocTestFinder().find(importlib.import_module(name))
        and any(t.examples for t in doctest.DocTestFinder().find(importlib.import_module(name)))
    }
    assert {
        "trackcfg.config.config",
        "trackcfg.runner.plan",
        "trackcfg.tracking.redaction",
    } <= found
