"""Hooks: the base class and the built-in hooks under mmcv's names.

Importing this package imports every module that defines a built-in hook, and each
registers itself in ``HOOKS`` as it is defined: this is what makes ``type='X'``
find them (`trackcfg.registry` imports this package on ``HOOKS``' first use). A new
hook module is imported here.
"""

from trackcfg.runner.hooks.accumulation import (
    GradientCumulativeFp16OptimizerHook,
    GradientCumulativeOptimizerHook,
)
from trackcfg.runner.hooks.checkpoint import CheckpointHook
from trackcfg.runner.hooks.ema import EMAHook
from trackcfg.runner.hooks.evaluation import DistEvalHook, EvalHook
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.hooks.logger import LoggerHook
from trackcfg.runner.hooks.lr_updater import (
    CosineAnnealingLrUpdaterHook,
    CosineRestartLrUpdaterHook,
    CyclicLrUpdaterHook,
    ExpLrUpdaterHook,
    FixedLrUpdaterHook,
    FlatCosineAnnealingLrUpdaterHook,
    InvLrUpdaterHook,
    LrUpdaterHook,
    OneCycleLrUpdaterHook,
    PolyLrUpdaterHook,
    StepLrUpdaterHook,
)
from trackcfg.runner.hooks.momentum_updater import (
    CosineAnnealingMomentumUpdaterHook,
    CyclicMomentumUpdaterHook,
    LinearAnnealingMomentumUpdaterHook,
    MomentumUpdaterHook,
    OneCycleMomentumUpdaterHook,
    StepMomentumUpdaterHook,
)
from trackcfg.runner.hooks.optimizer import Fp16OptimizerHook, OptimizerHook
from trackcfg.runner.hooks.text_logger import TextLoggerHook
from trackcfg.runner.hooks.timer import IterTimerHook

__all__ = [
    "CheckpointHook",
    "CosineAnnealingLrUpdaterHook",
    "CosineAnnealingMomentumUpdaterHook",
    "CosineRestartLrUpdaterHook",
    "CyclicLrUpdaterHook",
    "CyclicMomentumUpdaterHook",
    "DistEvalHook",
    "EMAHook",
    "EvalHook",
    "ExpLrUpdaterHook",
    "FixedLrUpdaterHook",
    "FlatCosineAnnealingLrUpdaterHook",
    "Fp16OptimizerHook",
    "GradientCumulativeFp16OptimizerHook",
    "GradientCumulativeOptimizerHook",
    "Hook",
    "InvLrUpdaterHook",
    "IterTimerHook",
    "LinearAnnealingMomentumUpdaterHook",
    "LoggerHook",
    "LrUpdaterHook",
    "MomentumUpdaterHook",
    "OneCycleLrUpdaterHook",
    "OneCycleMomentumUpdaterHook",
    "OptimizerHook",
    "PolyLrUpdaterHook",
    "StepLrUpdaterHook",
    "StepMomentumUpdaterHook",
    "TextLoggerHook",
]
