"""trackcfg: mmcv-style configs, registries and runners, with every run accountable.

Names are re-exported lazily so that ``import trackcfg`` and config loading never
import torch or mlflow (config tools start fast); the runner side imports torch
on first use of one of its names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # config engine
    "Config": "trackcfg.config.config",
    "ConfigDict": "trackcfg.config.config",
    "KeyPath": "trackcfg.config.keypath",
    "Location": "trackcfg.config.location",
    "Assignment": "trackcfg.config.location",
    "AssignmentKind": "trackcfg.config.location",
    # registries
    "Registry": "trackcfg.registry",
    "build_from_cfg": "trackcfg.registry",
    "build_model_from_cfg": "trackcfg.registry",
    "MODELS": "trackcfg.registry",
    "DATASETS": "trackcfg.registry",
    "HOOKS": "trackcfg.registry",
    "OPTIMIZERS": "trackcfg.registry",
    "LR_SCHEDULERS": "trackcfg.registry",
    "RUNNERS": "trackcfg.registry",
    # runner
    "Hook": "trackcfg.runner.hooks.hook",
    "Priority": "trackcfg.runner.priority",
    "Stage": "trackcfg.runner.stage",
    "BaseRunner": "trackcfg.runner.base_runner",
    "EpochBasedRunner": "trackcfg.runner.epoch_based_runner",
    "IterBasedRunner": "trackcfg.runner.iter_based_runner",
    "train": "trackcfg.runner.train",
    # tracked runs (the application layer)
    "run": "trackcfg.session.runs",
    "resume": "trackcfg.session.runs",
    "RunResult": "trackcfg.session.runs",
    "sync": "trackcfg.tracking.sync",
    "verify": "trackcfg.session.verification",
    "Verification": "trackcfg.session.verification",
    "register": "trackcfg.session.registration",
    "Registration": "trackcfg.session.registration",
    # errors
    "TrackcfgError": "trackcfg.errors",
    "ConfigError": "trackcfg.errors",
    "ConfigKeyError": "trackcfg.errors",
    "RegistryError": "trackcfg.errors",
    "RunnerError": "trackcfg.errors",
    "CheckpointError": "trackcfg.errors",
    "TrackingError": "trackcfg.errors",
}

__all__ = [
    "DATASETS",
    "HOOKS",
    "LR_SCHEDULERS",
    "MODELS",
    "OPTIMIZERS",
    "RUNNERS",
    "Assignment",
    "AssignmentKind",
    "BaseRunner",
    "CheckpointError",
    "Config",
    "ConfigDict",
    "ConfigError",
    "ConfigKeyError",
    "EpochBasedRunner",
    "Hook",
    "IterBasedRunner",
    "KeyPath",
    "Location",
    "Priority",
    "Registration",
    "Registry",
    "RegistryError",
    "RunResult",
    "RunnerError",
    "Stage",
    "TrackcfgError",
    "TrackingError",
    "Verification",
    "__version__",
    "build_from_cfg",
    "build_model_from_cfg",
    "register",
    "resume",
    "run",
    "sync",
    "train",
    "verify",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trackcfg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from trackcfg.config.config import Config, ConfigDict
    from trackcfg.config.keypath import KeyPath
    from trackcfg.config.location import Assignment, AssignmentKind, Location
    from trackcfg.errors import (
        CheckpointError,
        ConfigError,
        ConfigKeyError,
        RegistryError,
        RunnerError,
        TrackcfgError,
        TrackingError,
    )
    from trackcfg.registry import (
        DATASETS,
        HOOKS,
        LR_SCHEDULERS,
        MODELS,
        OPTIMIZERS,
        RUNNERS,
        Registry,
        build_from_cfg,
        build_model_from_cfg,
    )
    from trackcfg.runner.base_runner import BaseRunner
    from trackcfg.runner.epoch_based_runner import EpochBasedRunner
    from trackcfg.runner.hooks.hook import Hook
    from trackcfg.runner.iter_based_runner import IterBasedRunner
    from trackcfg.runner.priority import Priority
    from trackcfg.runner.stage import Stage
    from trackcfg.runner.train import train
    from trackcfg.session.registration import Registration, register
    from trackcfg.session.runs import RunResult, resume, run
    from trackcfg.session.verification import Verification, verify
    from trackcfg.tracking.sync import sync
