"""Editing the inherited value in a .py config: `_base_.x.y = v`, `+=`, `del`, `.append()`.

mmengine hands out the bases' own objects, so these statements change what the file
inherits; real configs rely on it (mmocr's `_base_.model.backbone = dict(...)`). So do
changes through a name bound to `_base_.x` (test_config_alias.py).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from trackcfg.config.config import Config
from trackcfg.config.location import AssignmentKind, Location

DATA = Path(__file__).parents[2] / "data" / "configs"
CHILD = DATA / "base_edit" / "child.py"
K = AssignmentKind


def load() -> Config:
    return Config.fromfile(CHILD, root=DATA)


def test_edits_change_what_the_file_inherits() -> None:
    model = {"backbone": {"type": "ViT"}, "head": {"num": 15}}
    assert load().to_dict() == {
        "model": model,
        "pipeline": [{"type": "A"}, {"type": "B"}],
        "seen": model,
    }


def test_edits_resolve_like_mmengine() -> None:
    mmengine_config = pytest.importorskip("mmengine.config")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = mmengine_config.Config.fromfile(str(CHILD)).to_dict()
    assert load().to_dict() == theirs


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "model.backbone.depth",
            [(K.SET, "base_edit/base.py:1", 50), (K.DELETE, "base_edit/child.py:2", 50)],
        ),
        (
            "model.backbone.type",
            [(K.SET, "base_edit/base.py:1", "ResNet"), (K.OVERRIDE, "base_edit/child.py:2", "ViT")],
        ),
        (
            "model.head.num",
            [(K.SET, "base_edit/base.py:1", 10), (K.OVERRIDE, "base_edit/child.py:3", 15)],
        ),
        (
            "pipeline",
            [
                (K.SET, "base_edit/base.py:2", [{"type": "A"}]),
                (K.OVERRIDE, "base_edit/child.py:4", [{"type": "A"}, {"type": "B"}]),
            ],
        ),
        ("lr", [(K.SET, "base_edit/base.py:3", 0.1), (K.DELETE, "base_edit/child.py:5", 0.1)]),
    ],
)
def test_edits_are_recorded_at_their_line(
    key: str, expected: list[tuple[AssignmentKind, str, object]]
) -> None:
    history = load().provenance(key)
    assert [(a.kind, str(a.location), a.value) for a in history] == expected


def test_reads_after_an_edit_see_it_as_a_substitution() -> None:
    last = load().provenance("seen.head.num")[-1]
    assert (last.kind, last.source) == (K.SUBSTITUTION, Location("base_edit/child.py", 3))


def test_the_base_file_itself_is_not_changed() -> None:
    cfg = Config.fromfile(DATA / "base_edit" / "base.py", root=DATA)
    load()
    assert Config.fromfile(DATA / "base_edit" / "base.py", root=DATA).hash == cfg.hash
