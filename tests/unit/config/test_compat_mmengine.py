"""Differential tests: trackcfg resolves OpenMMLab-style config trees exactly as mmengine.

mmengine is a test-only oracle. The trees under tests/data/configs/openmmlab/ mimic
mmdet/mmpretrain/mmseg: models/datasets/schedules/default_runtime bases, lists of
bases over several levels, `_delete_`, `{{ _base_.x }}`, `_base_.x` expressions and
mixed .py/.json/.yaml bases. Files named in `_base_/` dirs (or imported only as bases)
are loaded too: every file must resolve the same.

The small trees of issue 16 ("the last mile") are compared the same way, in .py, .json
and .yaml: top-level ``__`` keys (private/), a change made through a name bound to an
inherited value, two levels down and read by .yaml/.json children (alias/), YAML dates
(dates/), ``{{ fileDirname }}`` (dirname/) and a config's own functions (functions/;
.py only: JSON and YAML cannot define one).
"""

from __future__ import annotations

import functools
import types
import warnings
from pathlib import Path

import pytest

from trackcfg.config.config import Config
from trackcfg.errors import ConfigWarning

mmengine_config = pytest.importorskip("mmengine.config")

TREES = Path(__file__).parents[2] / "data" / "configs" / "openmmlab"
CONFIGS = sorted(
    p for p in TREES.rglob("*") if p.suffix in (".py", ".json", ".yaml", ".yml") and p.is_file()
)


@functools.cache
def _mmengine_dict(path: Path) -> dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = mmengine_config.Config.fromfile(str(path))
    return cfg.to_dict()  # type: ignore[no-any-return]


def test_the_trees_are_broad() -> None:
    tops = [p for p in CONFIGS if "_base_" not in p.parts]
    assert len(CONFIGS) >= 35
    assert len(tops) >= 15


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(TREES)) for p in CONFIGS])
def test_resolved_dict_equals_mmengine(path: Path) -> None:
    ours = Config.fromfile(path).to_dict()
    assert ours == _mmengine_dict(path)


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(TREES)) for p in CONFIGS])
def test_key_order_equals_mmengine(path: Path) -> None:
    def order(value: object) -> object:
        if isinstance(value, dict):
            return [(k, order(v)) for k, v in value.items()]
        if isinstance(value, list | tuple):
            return [order(v) for v in value]
        return value

    assert order(Config.fromfile(path).to_dict()) == order(_mmengine_dict(path))


DATA = TREES.parent
LAST_MILE = sorted(
    p
    for name in ("private", "alias", "dates", "dirname", "functions")
    for p in (DATA / name).iterdir()
    if p.suffix in (".py", ".json", ".yaml") and p.name != "names.py"
)


def comparable(value: object) -> object:
    """Functions by qualified name: each engine runs the config, so each has its own."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(comparable(v) for v in value)
    if isinstance(value, types.FunctionType):
        return ("function", value.__qualname__)
    return value


@pytest.mark.parametrize("path", LAST_MILE, ids=[str(p.relative_to(DATA)) for p in LAST_MILE])
def test_last_mile_resolves_like_mmengine(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)  # functions/unused.py: tested apart
        ours = Config.fromfile(path).to_dict()
    theirs = _mmengine_dict(path)
    assert comparable(ours) == comparable(theirs)
    assert list(ours) == list(theirs)


def test_last_mile_covers_every_format() -> None:
    for name in ("private", "alias", "dates", "dirname"):
        suffixes = {p.suffix for p in LAST_MILE if p.parent.name == name}
        assert suffixes == {".py", ".json", ".yaml"}, name
