"""Registries' consumers: runners, hooks, checkpoints and exact resume (imports torch).

Importing this package imports both runners, which register themselves in
``RUNNERS`` (`trackcfg.registry` imports this package on ``RUNNERS``' first use),
and with them the built-in hooks.
"""

from trackcfg.runner.base_runner import BaseRunner
from trackcfg.runner.epoch_based_runner import EpochBasedRunner
from trackcfg.runner.iter_based_runner import IterBasedRunner, IterLoader

__all__ = ["BaseRunner", "EpochBasedRunner", "IterBasedRunner", "IterLoader"]
