"""The runner keeps few enough instance attributes for CPython's inline attribute values.

See ``_MAX_INLINE_ATTRIBUTES`` in trackcfg/runner/base_runner.py: at 30 distinct
attribute names and more, every instance gets a dict of its own and every attribute
access of the training loop and its hooks gets slower (issue 3's overhead budget).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from tests.unit.runner.toys import RunnerFactory, StepHook
from trackcfg.runner.base_runner import _MAX_INLINE_ATTRIBUTES, BaseRunner
from trackcfg.runner.epoch_based_runner import EpochBasedRunner
from trackcfg.runner.iter_based_runner import IterBasedRunner

Loader = Callable[..., torch.utils.data.DataLoader[object]]


@pytest.mark.parametrize("runner_cls", [EpochBasedRunner, IterBasedRunner])
def test_runner_attributes_stay_inline_through_a_run(
    make_runner: RunnerFactory, toy_loader: Loader, runner_cls: type[BaseRunner]
) -> None:
    limit = {"max_epochs": 1} if runner_cls is EpochBasedRunner else {"max_iters": 3}
    runner = make_runner(runner_cls, **limit)
    runner.register_training_hooks(
        lr_config={"policy": "step", "step": [1]},
        checkpoint_config={"interval": 1},
        log_config={"interval": 1, "hooks": [{"type": "TextLoggerHook"}]},
    )
    runner.register_hook(StepHook())
    runner.run([toy_loader()], [("train", 1)])
    names = list(vars(runner))
    assert len(names) <= _MAX_INLINE_ATTRIBUTES, names
