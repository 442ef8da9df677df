"""`package::path` bases: read from the package's `.mim/configs`, outermost dicts scoped.

mmengine 0.10.7 cannot be the oracle here (it needs pkg_resources); the expected values
follow its `_get_cfg_path` / `_dict_to_config_dict` rules.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from trackcfg.config.config import Config
from trackcfg.config.location import AssignmentKind, Location

DATA = Path(__file__).parents[2] / "data" / "configs"


@pytest.fixture
def fake_mmdet(monkeypatch: pytest.MonkeyPatch) -> None:
    if "mmdet" in sys.modules:
        pytest.skip("a real mmdet is imported")
    monkeypatch.syspath_prepend(str(DATA / "package" / "site"))


def load() -> Config:
    return Config.fromfile(DATA / "package" / "project" / "fine_tune.py", root=DATA)


def test_package_base_scopes_outermost_typed_dicts(fake_mmdet: None) -> None:
    assert load().to_dict() == {
        "model": {
            "type": "RetinaNet",
            "backbone": {"type": "ResNet", "depth": 50},
            "head": {"type": "RetinaHead", "num_classes": 3, "_scope_": "mmdet_custom"},
            "_scope_": "mmdet",
        },
        "train_pipeline": [
            {"type": "LoadImage", "_scope_": "mmdet"},
            {"type": "Resize", "scale": (640, 640), "_scope_": "mmdet"},
            {"type": "Pack"},
        ],
        "epochs": 12,
        "optimizer": {"type": "SGD", "lr": 0.01, "_scope_": "mmdet"},
    }


def test_package_base_files_are_in_the_lineage(fake_mmdet: None) -> None:
    assert [(e.path, e.included_by) for e in load().lineage] == [
        (
            "package/site/mmdet/.mim/configs/_base_/models/retina.py",
            "package/site/mmdet/.mim/configs/retina/retina_r50.py",
        ),
        ("package/site/mmdet/.mim/configs/retina/retina_r50.py", "package/project/fine_tune.py"),
        ("package/project/fine_tune.py", None),
    ]


def test_scope_is_recorded_at_the_base_line(fake_mmdet: None) -> None:
    (assignment,) = load().provenance("model._scope_")
    assert (assignment.kind, assignment.location, assignment.value) == (
        AssignmentKind.SET,
        Location("package/project/fine_tune.py", 1),
        "mmdet",
    )


def test_package_base_is_not_imported(fake_mmdet: None) -> None:
    load()
    assert "mmdet" not in sys.modules
