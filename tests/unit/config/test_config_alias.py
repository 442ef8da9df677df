"""A change made through a name bound to `_base_.x` changes the inherited value (issue 16, 2).

mmengine hands a .py config the bases' own objects; mmdet 3.x configs rely on it::

    base_test_pipeline = _base_.test_pipeline
    base_test_pipeline[-1]['meta_keys'] = (...)

trackcfg follows it, and records every such change at the statement that made it.
The resolved values are compared with mmengine in test_compat_mmengine.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trackcfg.config.config import Config
from trackcfg.config.location import AssignmentKind
from trackcfg.errors import ConfigLimitError

DATA = Path(__file__).parents[2] / "data" / "configs"
K = AssignmentKind
META = ("img_id", "img_path", "scale_factor")


def load(name: str) -> Config:
    return Config.fromfile(DATA / "alias" / name, root=DATA)


def history(cfg: Config, key: str) -> list[tuple[AssignmentKind, str]]:
    return [(a.kind, str(a.location)) for a in cfg.provenance(key)]


def test_a_change_through_an_alias_changes_the_inherited_value() -> None:
    cfg = load("child.py")
    assert cfg.test_pipeline[-1]["meta_keys"] == META
    assert cfg.base_test_pipeline == cfg.test_pipeline
    assert cfg.model.backbone.depth == 101  # set in a for loop through `backbone`


def test_the_change_is_recorded_at_the_statement_that_made_it() -> None:
    cfg = load("child.py")
    assert history(cfg, "test_pipeline") == [
        (K.SET, "alias/base.py:1"),
        (K.OVERRIDE, "alias/child.py:3"),
    ]
    assert cfg.provenance("test_pipeline")[-1].value[-1]["meta_keys"] == META
    # Inside a loop, the line of the statement in its body.
    assert history(cfg, "model.backbone.depth") == [
        (K.SET, "alias/base.py:5"),
        (K.OVERRIDE, "alias/child.py:6"),
    ]
    assert history(cfg, "model.neck.type") == [(K.SET, "alias/base.py:5")]


@pytest.mark.parametrize("name", ["grandchild.py", "grandchild.yaml", "grandchild.json"])
def test_two_levels_down_every_format_sees_the_changed_pipeline(name: str) -> None:
    cfg = load(name)
    pipeline = cfg.test_pipeline if name.endswith(".py") else cfg.pipeline
    assert [step["type"] for step in pipeline][-1] == "PackDetInputs"
    assert pipeline[-1]["meta_keys"] == META


def test_two_levels_down_each_change_keeps_its_own_line() -> None:
    cfg = load("grandchild.py")
    assert [step.type for step in cfg.test_pipeline] == [
        "LoadImageFromFile",
        "Resize",
        "PackDetInputs",
    ]
    assert history(cfg, "test_pipeline") == [
        (K.SET, "alias/base.py:1"),
        (K.OVERRIDE, "alias/child.py:3"),
        (K.OVERRIDE, "alias/grandchild.py:4"),
    ]


def test_the_base_files_own_values_do_not_change() -> None:
    load("grandchild.py")
    base = Config.fromfile(DATA / "alias" / "base.py", root=DATA)
    assert base.test_pipeline[-1].meta_keys == ("img_id", "img_path")
    assert history(base, "test_pipeline") == [(K.SET, "alias/base.py:1")]


def write(tmp_path: Path, child: str) -> Config:
    (tmp_path / "base.py").write_text("model = dict(depth=50, layers=[1, 2])\nlr = 0.1\n")
    (tmp_path / "child.py").write_text("_base_ = './base.py'\n" + child)
    return Config.fromfile(tmp_path / "child.py", root=tmp_path)


def test_reading_without_changing_records_nothing(tmp_path: Path) -> None:
    cfg = write(tmp_path, "m = _base_.model\nn = m['depth'] + 1\n")
    assert history(cfg, "model.depth") == [(K.SET, "base.py:1")]
    assert cfg.m == {"depth": 50, "layers": [1, 2]} and cfg.n == 51


def test_a_change_inside_the_configs_own_function_is_recorded_where_it_is_called(
    tmp_path: Path,
) -> None:
    child = (
        "def deepen(model):\n"  # 2
        "    model['depth'] = 101\n"  # 3
        "\n"
        "deepen(_base_.model)\n"  # 5
    )
    cfg = write(tmp_path, child)
    assert cfg.model.depth == 101
    assert history(cfg, "model.depth") == [(K.SET, "base.py:1"), (K.OVERRIDE, "child.py:5")]


def test_a_type_only_change_is_a_change(tmp_path: Path) -> None:
    cfg = write(tmp_path, "m = _base_.model\nm['depth'] = 50.0\n")
    assert history(cfg, "model.depth") == [(K.SET, "base.py:1"), (K.OVERRIDE, "child.py:3")]
    assert cfg.model.depth == 50.0 and isinstance(cfg.model.depth, float)


def test_a_change_through_bare_base_adds_a_key(tmp_path: Path) -> None:
    cfg = write(tmp_path, "b = _base_\nb.extra = dict(x=1)\n")
    assert cfg.extra == {"x": 1}
    assert history(cfg, "extra.x") == [(K.SET, "child.py:3")]


def test_a_value_made_to_contain_itself_through_an_alias_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigLimitError) as info:
        write(tmp_path, "layers = _base_.model['layers']\nlayers.append(layers)\n")
    assert str(info.value) == (
        "child.py:3: model.layers.2: the value contains itself; a config value must be a"
        " finite tree"
    )
