"""Every built-in hook is registered in HOOKS under its mmcv 1.x name, with mmcv's priority."""

from __future__ import annotations

import pytest

from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.checkpoint import CheckpointHook
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.hooks.lr_updater import (
    CosineAnnealingLrUpdaterHook,
    CosineRestartLrUpdaterHook,
    ExpLrUpdaterHook,
    FixedLrUpdaterHook,
    FlatCosineAnnealingLrUpdaterHook,
    InvLrUpdaterHook,
    OneCycleLrUpdaterHook,
    PolyLrUpdaterHook,
    StepLrUpdaterHook,
)
from trackcfg.runner.hooks.optimizer import Fp16OptimizerHook, OptimizerHook
from trackcfg.runner.hooks.text_logger import TextLoggerHook
from trackcfg.runner.hooks.timer import IterTimerHook

BUILTINS: list[tuple[type[Hook], str]] = [
    (OptimizerHook, "ABOVE_NORMAL"),
    (Fp16OptimizerHook, "ABOVE_NORMAL"),
    (FixedLrUpdaterHook, "VERY_HIGH"),
    (StepLrUpdaterHook, "VERY_HIGH"),
    (ExpLrUpdaterHook, "VERY_HIGH"),
    (PolyLrUpdaterHook, "VERY_HIGH"),
    (InvLrUpdaterHook, "VERY_HIGH"),
    (CosineAnnealingLrUpdaterHook, "VERY_HIGH"),
    (FlatCosineAnnealingLrUpdaterHook, "VERY_HIGH"),
    (CosineRestartLrUpdaterHook, "VERY_HIGH"),
    (OneCycleLrUpdaterHook, "VERY_HIGH"),
    (CheckpointHook, "NORMAL"),
    (IterTimerHook, "LOW"),
    (TextLoggerHook, "VERY_LOW"),
]


@pytest.mark.parametrize(("cls", "priority"), BUILTINS, ids=lambda v: getattr(v, "__name__", v))
def test_builtin_hook_is_registered_under_its_mmcv_name(cls: type[Hook], priority: str) -> None:
    assert HOOKS.get(cls.__name__) is cls
    assert cls.priority == priority
