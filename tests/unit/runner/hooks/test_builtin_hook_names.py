"""Every built-in hook is registered in HOOKS under its mmcv 1.x name, with mmcv's priority."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.accumulation import (
    GradientCumulativeFp16OptimizerHook,
    GradientCumulativeOptimizerHook,
)
from trackcfg.runner.hooks.checkpoint import CheckpointHook
from trackcfg.runner.hooks.ema import EMAHook
from trackcfg.runner.hooks.evaluation import DistEvalHook, EvalHook
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.hooks.lr_updater import (
    CosineAnnealingLrUpdaterHook,
    CosineRestartLrUpdaterHook,
    CyclicLrUpdaterHook,
    ExpLrUpdaterHook,
    FixedLrUpdaterHook,
    FlatCosineAnnealingLrUpdaterHook,
    InvLrUpdaterHook,
    OneCycleLrUpdaterHook,
    PolyLrUpdaterHook,
    StepLrUpdaterHook,
)
from trackcfg.runner.hooks.momentum_updater import (
    CosineAnnealingMomentumUpdaterHook,
    CyclicMomentumUpdaterHook,
    LinearAnnealingMomentumUpdaterHook,
    OneCycleMomentumUpdaterHook,
    StepMomentumUpdaterHook,
)
from trackcfg.runner.hooks.optimizer import Fp16OptimizerHook, OptimizerHook
from trackcfg.runner.hooks.text_logger import TextLoggerHook
from trackcfg.runner.hooks.timer import IterTimerHook

BUILTINS: list[tuple[type[Hook], str]] = [
    (OptimizerHook, "ABOVE_NORMAL"),
    (Fp16OptimizerHook, "ABOVE_NORMAL"),
    (GradientCumulativeOptimizerHook, "ABOVE_NORMAL"),
    (GradientCumulativeFp16OptimizerHook, "ABOVE_NORMAL"),
    (FixedLrUpdaterHook, "VERY_HIGH"),
    (StepLrUpdaterHook, "VERY_HIGH"),
    (ExpLrUpdaterHook, "VERY_HIGH"),
    (PolyLrUpdaterHook, "VERY_HIGH"),
    (InvLrUpdaterHook, "VERY_HIGH"),
    (CosineAnnealingLrUpdaterHook, "VERY_HIGH"),
    (FlatCosineAnnealingLrUpdaterHook, "VERY_HIGH"),
    (CosineRestartLrUpdaterHook, "VERY_HIGH"),
    (OneCycleLrUpdaterHook, "VERY_HIGH"),
    (CyclicLrUpdaterHook, "VERY_HIGH"),
    (StepMomentumUpdaterHook, "HIGH"),
    (CosineAnnealingMomentumUpdaterHook, "HIGH"),
    (LinearAnnealingMomentumUpdaterHook, "HIGH"),
    (CyclicMomentumUpdaterHook, "HIGH"),
    (OneCycleMomentumUpdaterHook, "HIGH"),
    (CheckpointHook, "NORMAL"),
    (EMAHook, "NORMAL"),
    (EvalHook, "LOW"),
    (DistEvalHook, "LOW"),
    (IterTimerHook, "LOW"),
    (TextLoggerHook, "VERY_LOW"),
]


@pytest.mark.parametrize(("cls", "priority"), BUILTINS, ids=lambda v: getattr(v, "__name__", v))
def test_builtin_hook_is_registered_under_its_mmcv_name(cls: type[Hook], priority: str) -> None:
    assert HOOKS.get(cls.__name__) is cls
    assert cls.priority == priority


# Run in a fresh interpreter: which modules this test process has imported already
# must not matter. First HOOKS' own population, then every trackcfg module.
_FIND_UNREGISTERED = """
import importlib, inspect, pkgutil, sys
import trackcfg
from trackcfg.registry import HOOKS
registered = dict(HOOKS.module_dict)  # populating HOOKS imports trackcfg.runner.hooks
for info in pkgutil.walk_packages(trackcfg.__path__, "trackcfg."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
from trackcfg.runner.hooks.ema import EMAHook
from trackcfg.runner.hooks.evaluation import DistEvalHook, EvalHook
from trackcfg.runner.hooks.hook import Hook
classes, pending = [], list(Hook.__subclasses__())
while pending:
    cls = pending.pop()
    pending.extend(cls.__subclasses__())
    # The session's hooks are attached by `trackcfg run` with a live journal, never
    # built from a config: they are not in HOOKS.
    if cls.__module__.startswith("trackcfg.session."):
        continue
    # So are the preemption hooks: they act on the flag of installed signal handlers.
    if cls.__module__ == "trackcfg.runner.preemption":
        continue
    if cls.__module__.startswith("trackcfg.") and not cls.__name__.startswith("_"):
        if not inspect.isabstract(cls):
            classes.append(cls)
print(len(classes))
for cls in classes:
    if registered.get(cls.__name__) is not cls:
        print(cls.__module__ + "." + cls.__qualname__)
"""


def test_every_hook_class_of_trackcfg_is_registered_by_importing_the_hooks_package() -> None:
    # A hook module that trackcfg/runner/hooks/__init__.py does not import, or a hook
    # class without @HOOKS.register_module(), is listed (private and abstract ones aside).
    result = subprocess.run(
        [sys.executable, "-c", _FIND_UNREGISTERED], capture_output=True, text=True, check=True
    )
    count, *unregistered = result.stdout.split()
    assert int(count) >= len(BUILTINS)
    assert unregistered == []
