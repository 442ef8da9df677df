"""Registry: registration, lookup through parents and scopes, building, and every error."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from trackcfg.config.canonical import QualifiedName
from trackcfg.config.config import Config, ConfigDict
from trackcfg.config.keypath import KeyPath
from trackcfg.config.location import Location
from trackcfg.errors import DuplicateRegistrationError, RegistryError, UnknownTypeError
from trackcfg.registry import (
    HOOKS,
    LR_SCHEDULERS,
    MODELS,
    OPTIMIZERS,
    Registry,
    build_from_cfg,
    build_model_from_cfg,
)


class ResNet:
    def __init__(self, depth: int = 50, stages: int = 4) -> None:
        self.depth = depth
        self.stages = stages


class Broken:
    def __init__(self, depth: int) -> None:
        raise ValueError(f"depth {depth} is not supported")


def make_point(x: int, y: int = 0) -> tuple[int, int]:
    return (x, y)


@pytest.fixture
def tree() -> dict[str, Registry]:
    """root(scope 'base') with children det and cls; det has a grandchild det3d."""
    root = Registry("models", scope="base")
    det = Registry("detectors", parent=root, scope="det")
    cls = Registry("classifiers", parent=root, scope="cls")
    det3d = Registry("detectors3d", parent=det, scope="det3d")
    root.register_module(module=ResNet)
    cls.register_module(name="MobileNet", module=make_point)
    det3d.register_module(name="PointNet", module=make_point)
    return {"root": root, "det": det, "cls": cls, "det3d": det3d}


# -- registration --------------------------------------------------------------------


def test_register_module_as_decorator_returns_the_class() -> None:
    reg = Registry("r", scope="t")

    @reg.register_module()
    class Net:
        pass

    assert reg.get("Net") is Net
    assert "Net" in reg and len(reg) == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [(None, ["make_point"]), ("point", ["point"]), (["p1", "p2"], ["p1", "p2"])],
)
def test_register_module_names(name: str | list[str] | None, expected: list[str]) -> None:
    reg = Registry("r", scope="t")
    assert reg.register_module(name=name, module=make_point) is make_point
    assert sorted(reg) == expected
    assert all(reg.get(n) is make_point for n in expected)


def test_register_module_decorator_with_names_registers_functions() -> None:
    reg = Registry("r", scope="t")
    decorated = reg.register_module(["a", "b"])(make_point)
    assert decorated is make_point
    assert dict(reg.module_dict) == {"a": make_point, "b": make_point}


def test_duplicate_name_is_an_error_naming_the_registered_object() -> None:
    reg = Registry("models", scope="t")
    reg.register_module(name="Net", module=ResNet)
    with pytest.raises(DuplicateRegistrationError) as info:
        reg.register_module(name="Net", module=Broken)
    assert str(info.value) == (
        f"'Net' is already registered in registry 'models' (by {__name__}.ResNet)\n"
        "  hint: pass force=True to replace it, or register under another name"
    )
    assert isinstance(info.value, KeyError)


def test_force_replaces_and_same_object_may_register_twice() -> None:
    reg = Registry("r", scope="t")
    reg.register_module(name="Net", module=ResNet)
    reg.register_module(name="Net", module=ResNet)
    reg.register_module(name="Net", module=Broken, force=True)
    assert reg.get("Net") is Broken


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"module": 3},
            RegistryError,
            "can only register classes and functions in registry 'r', got int: 3",
        ),
        (
            {"name": 3, "module": make_point},
            TypeError,
            "name must be None, a str or a sequence of str, got int",
        ),
        ({"force": 1, "module": make_point}, TypeError, "force must be a bool, got int"),
    ],
)
def test_bad_registration_arguments(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        Registry("r", scope="t").register_module(**kwargs)
    assert str(info.value) == message


# -- scopes and lookup ---------------------------------------------------------------


def test_scope_defaults_to_the_constructing_modules_top_level_package() -> None:
    assert Registry("r").scope == __name__.split(".")[0]
    assert Registry.infer_scope("mmdet.models.builder") == "mmdet"
    assert MODELS.scope == "trackcfg"


def test_split_scope_key() -> None:
    assert Registry.split_scope_key("ResNet") == (None, "ResNet")
    assert Registry.split_scope_key("mmdet.ResNet") == ("mmdet", "ResNet")
    assert Registry.split_scope_key("a.b.Net") == ("a", "b.Net")


LOOKUPS = [
    ("det", "ResNet", ResNet),  # falls back to the parent
    ("det3d", "ResNet", ResNet),  # and to the grandparent
    ("root", "PointNet", None),  # never down to children without a scope
    ("det", "cls.MobileNet", make_point),  # a sibling through the common root
    ("cls", "det3d.PointNet", make_point),  # a cousin
    ("det", "det3d.PointNet", make_point),  # a child
    ("det3d", "base.ResNet", ResNet),  # an ancestor by scope
    ("det", "det.ResNet", None),  # an explicit scope looks only in that registry
    ("det", "nowhere.ResNet", None),
    ("root", "MobileNet", None),
]


@pytest.mark.parametrize(("start", "key", "expected"), LOOKUPS)
def test_get(tree: dict[str, Registry], start: str, key: str, expected: object) -> None:
    assert tree[start].get(key) is expected


def test_scoped_lookup_matches_mmengine_except_that_cousins_resolve() -> None:
    from mmengine.registry import Registry as MMRegistry

    root = MMRegistry("models", scope="base")
    mm = {
        "root": root,
        "det": MMRegistry("detectors", parent=root, scope="det"),
        "cls": MMRegistry("classifiers", parent=root, scope="cls"),
    }
    mm["det3d"] = MMRegistry("detectors3d", parent=mm["det"], scope="det3d")
    root.register_module(module=ResNet)
    mm["cls"].register_module(name="MobileNet", module=make_point)
    mm["det3d"].register_module(name="PointNet", module=make_point)
    for start, key, expected in LOOKUPS:
        theirs = mm[start].get(key)
        if (start, key) == ("cls", "det3d.PointNet"):
            assert theirs is None and expected is make_point  # the documented difference
        else:
            assert theirs is expected, (start, key)


def test_a_registered_name_with_a_dot_is_found_when_no_scope_matches() -> None:
    reg = Registry("r", scope="t")
    reg.register_module(name="v1.Net", module=ResNet)
    assert reg.get("v1.Net") is ResNet


def test_child_scope_must_be_unique_under_a_parent() -> None:
    root = Registry("models", scope="base")
    Registry("a", parent=root, scope="x")
    with pytest.raises(RegistryError) as info:
        Registry("b", parent=root, scope="x")
    assert str(info.value) == (
        "registry 'models' already has a child with scope 'x' ('a')\n"
        "  hint: give each child registry of one parent its own scope="
    )


def test_children_inherit_the_parents_build_function() -> None:
    def build_twice(
        cfg: object, registry: Registry, default_args: dict[str, object] | None = None
    ) -> object:
        return ("built", build_from_cfg(cfg, registry, default_args))

    root = Registry("r", build_func=build_twice, scope="a")
    child = Registry("c", parent=root, scope="b")
    child.register_module(module=ResNet)
    built = child.build({"type": "ResNet"})
    assert built[0] == "built" and isinstance(built[1], ResNet)


def test_get_with_a_non_str_key_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="registry key must be a str, got int"):
        MODELS.get(3)  # type: ignore[arg-type]


# -- building ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "default_args", "depth", "stages"),
    [
        ({"type": "ResNet"}, None, 50, 4),
        ({"type": "ResNet", "depth": 18}, {"depth": 101, "stages": 3}, 18, 3),
        ({"depth": 34}, {"type": "ResNet"}, 34, 4),
        ({"type": ResNet, "depth": 152}, None, 152, 4),
        ({"type": "base.ResNet"}, None, 50, 4),
        ({"type": QualifiedName(f"{__name__}:ResNet")}, None, 50, 4),
        (Config.fromstring("type = 'ResNet'\ndepth = 18\n", ".py"), None, 18, 4),
        (ConfigDict(type="ResNet", depth=18), {"stages": 2}, 18, 2),
    ],
)
def test_build(
    tree: dict[str, Registry], cfg: Any, default_args: Any, depth: int, stages: int
) -> None:
    net = tree["det"].build(cfg, default_args)
    assert isinstance(net, ResNet)
    assert (net.depth, net.stages) == (depth, stages)


def test_build_calls_functions_and_accepts_config_dicts(tree: dict[str, Registry]) -> None:
    from collections import OrderedDict

    assert tree["cls"].build(OrderedDict(type="MobileNet", x=1, y=2)) == (1, 2)


def test_build_never_mutates_the_callers_dicts(tree: dict[str, Registry]) -> None:
    cfg = {"type": "ResNet", "depth": 18}
    defaults = {"stages": 2}
    build_from_cfg(cfg, tree["root"], defaults)
    assert cfg == {"type": "ResNet", "depth": 18} and defaults == {"stages": 2}


LOC = Location("configs/r50.py", 12)

BUILD_ERRORS: list[tuple[str, object, dict[str, Any], str]] = [
    (
        "det",
        {"type": "ResNt"},
        {"key_path": "model.backbone", "location": LOC},
        "configs/r50.py:12: model.backbone: unknown type 'ResNt' in registry 'detectors' "
        "(scope 'det')\n  hint: did you mean 'ResNet'?",
    ),
    (
        "root",
        {"type": "Nothing"},
        {},
        "unknown type 'Nothing' in registry 'models' (scope 'base')\n"
        "  hint: register it with @MODELS.register_module() and make sure the module "
        "defining it is imported (e.g. via custom_imports)",
    ),
    (
        "det",
        {"type": "cls.MobileNt"},
        {"key_path": KeyPath(("model",))},
        "model: unknown type 'MobileNt' in registry 'classifiers' (scope 'cls')\n"
        "  hint: did you mean 'MobileNet'?",
    ),
    (
        "det",
        {"type": "mmfoo.ResNet"},
        {"key_path": "model"},
        "model: unknown type 'mmfoo.ResNet' in registry 'detectors' (scope 'det'): no registry "
        "in its tree has scope 'mmfoo'\n  hint: known scopes: 'base', 'cls', 'det', 'det3d'",
    ),
    (
        "root",
        {"depth": 3},
        {"key_path": "model", "location": LOC},
        "configs/r50.py:12: model: expected a 'type' key naming what to build from registry "
        "'models', got keys ['depth']",
    ),
    (
        "root",
        {"type": 3},
        {"key_path": "model"},
        "model.type: 'type' must be a registered name or a class/function, got int: 3",
    ),
    (
        "root",
        [1, 2],
        {},
        "expected a dict with a 'type' key to build from, got list: [1, 2]",
    ),
]


@pytest.mark.parametrize(("start", "cfg", "kwargs", "message"), BUILD_ERRORS)
def test_build_errors(
    tree: dict[str, Registry], start: str, cfg: object, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(UnknownTypeError) as info:
        tree[start].build(cfg, **kwargs)
    assert str(info.value) == message
    assert isinstance(info.value, KeyError)
    assert info.value.location == kwargs.get("location")


def test_constructor_error_keeps_type_and_traceback_and_gains_a_note() -> None:
    reg = Registry("models", scope="t")
    reg.register_module(module=Broken)
    with pytest.raises(ValueError, match="depth 7 is not supported") as info:
        reg.build({"type": "Broken", "depth": 7}, key_path="model.backbone", location=LOC)
    assert info.value.__notes__ == [
        "while building model.backbone (type='Broken') from registry 'models' "
        "set at configs/r50.py:12"
    ]
    assert info.traceback[-1].name == "__init__"  # raised inside Broken.__init__


def test_constructor_error_note_without_key_path_names_the_class() -> None:
    reg = Registry("models", scope="t")
    with pytest.raises(ValueError) as info:
        reg.build({"type": Broken, "depth": 1})
    assert info.value.__notes__ == [
        f"while building (type={__name__}.Broken) from registry 'models'"
    ]


# -- build_model_from_cfg and the default registries ---------------------------------


def test_build_model_from_a_list_gives_sequential() -> None:
    import torch

    reg = Registry("layers", build_func=build_model_from_cfg, scope="t")
    reg.register_module(module=torch.nn.Linear)
    reg.register_module(module=torch.nn.ReLU)
    model = reg.build([{"type": "Linear", "in_features": 2, "out_features": 3}, {"type": "ReLU"}])
    assert isinstance(model, torch.nn.Sequential)
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU"]
    single = reg.build({"type": "ReLU"})
    assert isinstance(single, torch.nn.ReLU)


def test_build_model_from_a_list_names_the_element_in_errors() -> None:
    reg = Registry("layers", build_func=build_model_from_cfg, scope="t")
    with pytest.raises(UnknownTypeError) as info:
        reg.build([{"type": "Nope"}], key_path="model.layers")
    assert info.value.key_path == "model.layers.0"


def test_torch_optimizers_and_schedulers_are_preregistered() -> None:
    import torch

    assert {"SGD", "Adam", "AdamW", "RMSprop"} <= set(OPTIMIZERS)
    assert {"StepLR", "CosineAnnealingLR", "ReduceLROnPlateau", "OneCycleLR"} <= set(LR_SCHEDULERS)
    params = [torch.nn.Parameter(torch.zeros(2))]
    sgd = OPTIMIZERS.build({"type": "SGD", "lr": 0.5}, default_args={"params": params})
    assert isinstance(sgd, torch.optim.SGD)
    sched = LR_SCHEDULERS.build({"type": "StepLR", "step_size": 2}, {"optimizer": sgd})
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR)


def test_builtin_hooks_are_registered_on_first_lookup() -> None:
    assert "CheckpointHook" in HOOKS


def test_importing_the_registry_does_not_import_torch() -> None:
    code = (
        "import sys, trackcfg.registry as r; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "r.MODELS.get('x'); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_repr_names_registry_scope_and_size() -> None:
    reg = Registry("things", scope="t")
    fn: Callable[..., object] = make_point
    reg.register_module(module=fn)
    assert repr(reg) == "Registry(name='things', scope='t', items=1)"
