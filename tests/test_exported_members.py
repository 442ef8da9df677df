"""The public surface: everything in ``trackcfg.__all__`` resolves, and nothing else leaks."""

from __future__ import annotations

import subprocess
import sys

import trackcfg


def test_all_names_resolve() -> None:
    missing = [name for name in trackcfg.__all__ if not hasattr(trackcfg, name)]
    assert missing == []


def test_unknown_attribute_raises_attribute_error() -> None:
    try:
        trackcfg.NoSuchThing  # noqa: B018
    except AttributeError as err:
        assert "NoSuchThing" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_import_does_not_import_torch_or_mlflow() -> None:
    code = (
        "import sys, trackcfg; "
        "print(sorted(m for m in ('torch', 'mlflow', 'git') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"


def test_all_lists_exactly_the_lazy_exports() -> None:
    from trackcfg import _EXPORTS

    assert sorted(trackcfg.__all__) == sorted([*_EXPORTS, "__version__"])
