"""Provenance: ordered assignments per key path, with kinds, parser lines and sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackcfg.config.config import Config
from trackcfg.config.location import Assignment, AssignmentKind, Location
from trackcfg.config.provenance import Provenance

DATA = Path(__file__).parents[2] / "data" / "configs"
K = AssignmentKind


def history(relative: str, key: str) -> list[tuple[AssignmentKind, str, object]]:
    cfg = Config.fromfile(DATA / relative, root=DATA)
    return [(a.kind, str(a.location), a.value) for a in cfg.provenance(key)]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "model.depth",
            [(K.SET, "provenance/base.py:2", 50), (K.OVERRIDE, "provenance/mid.yaml:3", 101)],
        ),
        (
            "model.head.loss",
            [(K.SET, "provenance/base.py:3", "ce"), (K.DELETE, "provenance/leaf.py:3", "ce")],
        ),
        (
            "model.head.num",
            [
                (K.SET, "provenance/base.py:3", 10),
                (K.DELETE, "provenance/leaf.py:3", 10),
                (K.SET, "provenance/leaf.py:3", 5),
            ],
        ),
        (
            "lr",
            [(K.SET, "provenance/base.py:5", 0.1), (K.SUBSTITUTION, "provenance/leaf.py:5", 0.1)],
        ),
    ],
)
def test_history_of_a_key(key: str, expected: list[tuple[AssignmentKind, str, object]]) -> None:
    assert history("provenance/leaf.py", key) == expected


def test_substitution_names_where_the_base_value_was_set() -> None:
    cfg = Config.fromfile(DATA / "provenance" / "leaf.py", root=DATA)
    assert cfg.provenance("lr")[-1].source == Location("provenance/base.py", 5)


@pytest.mark.parametrize(
    ("relative", "key", "line"),
    [
        ("formats/plain.json", "model.depth", 2),
        ("formats/plain.json", "name", 4),
        ("formats/plain.yaml", "model.scales", 4),
        ("formats/plain.yaml", "lr", 5),
        ("formats/plain.py", "model.depth", 1),
        ("base_ref/child.py", "copied.backbone.depth", 9),
        ("base_ref/child.py", "copied.name", 8),
    ],
)
def test_lines_come_from_the_parsers(relative: str, key: str, line: int) -> None:
    cfg = Config.fromfile(DATA / relative, root=DATA)
    assert cfg.provenance(key)[-1].location.line == line


def test_base_expression_records_a_substitution_per_leaf() -> None:
    cfg = Config.fromfile(DATA / "base_ref" / "child.py", root=DATA)
    last = cfg.provenance("copied.name")[-1]
    assert (last.kind, last.source) == (K.SUBSTITUTION, Location("base_ref/base.py", 2))
    assert cfg.provenance("copied.backbone.depth")[-1].kind is K.SET


def test_interpolated_placeholder_is_a_substitution() -> None:
    cfg = Config.fromfile(DATA / "base_ref" / "child.yaml", root=DATA)
    last = cfg.provenance("text")[-1]
    assert (last.kind, last.value, str(last.location)) == (
        K.SUBSTITUTION,
        "model-r50",
        "base_ref/child.yaml:4",
    )


def test_options_are_recorded_at_the_option_pseudo_file() -> None:
    cfg = Config.fromfile(DATA / "provenance" / "leaf.py", root=DATA)
    cfg.merge_from_dict({"model.depth": 152})
    assert cfg.provenance("model.depth")[-1] == Assignment(K.OPTION, Location("<option>", 1), 152)


def test_option_inside_a_list_records_the_whole_list() -> None:
    cfg = Config({"pipeline": [{"type": "A"}, {"type": "B"}]})
    cfg.merge_from_dict({"pipeline.1.type": "C"})
    assert cfg.provenance("pipeline")[-1].value == [{"type": "A"}, {"type": "C"}]
    assert cfg.provenance("pipeline.1.type")[-1].value == "C"


def test_last_assignment_of_every_leaf_is_its_value() -> None:
    cfg = Config.fromfile(DATA / "openmmlab/seg/exp/deeplabv3_r101_4xb2-80k_ade.py")
    provenance = cfg.provenance_map()
    data = cfg.to_dict()
    checked = 0
    for path in provenance:
        value: object = data
        try:
            for part in path:
                value = value[part]  # type: ignore[index]
        except (KeyError, TypeError, IndexError):
            continue
        if isinstance(value, dict) and value:
            continue
        assert provenance[path][-1].value == value, str(path)
        checked += 1
    assert checked > 50


def test_dict_path_without_history_is_empty_and_unknown_path_raises() -> None:
    cfg = Config.fromfile(DATA / "provenance" / "leaf.py")
    assert cfg.provenance("model") == ()
    with pytest.raises(KeyError, match="did you mean 'model'"):
        cfg.provenance("modle.depth")


def test_provenance_json_round_trip_keeps_tuples_and_kinds() -> None:
    cfg = Config.fromfile(
        DATA / "openmmlab/det/faster_rcnn/faster-rcnn_x101-64x4d_fpn_ms-3x_coco.py"
    )
    provenance = cfg.provenance_map()
    again = Provenance.from_json(provenance.to_json())
    assert again == provenance
    assert again["model.backbone.out_indices"][-1].value == (0, 1, 2, 3)


def test_provenance_under_a_prefix_lists_the_subtree_including_deleted_leaves() -> None:
    provenance = Config.fromfile(DATA / "provenance" / "leaf.py").provenance_map()
    under = provenance.under("model.head")
    assert [str(path) for path, _ in under] == ["model.head.num", "model.head.loss"]
    assert under[1][1][-1].kind is K.DELETE
    assert provenance.key_paths()[0] == under[0][0].parent.parent / "depth"
