"""Momentum schedules and the cyclic LR: value for value mmcv 1.7.2's, and resumable.

Each case drives our hook and mmcv's (the oracle, tests/mmcv_oracle.py) through the
same scripted run — ``before_run``, then per epoch ``before_train_epoch`` and per
iteration ``before_train_iter`` — on twin optimizers, and compares every param
group's LR and momentum at every iteration. A second run of our hook is interrupted
at an iteration inside an epoch and continued by a fresh hook on a fresh optimizer
that loaded the first one's state dict (as `BaseRunner.resume` does, re-firing
``before_train_epoch``): it must see the same values.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from tests.mmcv_oracle import mmcv_runner
from trackcfg.registry import HOOKS

EPOCHS = 3
ITERS = 7  # per epoch: 21 iterations in all
SPLIT = 10  # the resumed run starts at this iteration (inside epoch 1)


@dataclass
class ScriptRunner:
    """The runner attributes the LR and momentum hooks read (theirs and mmcv's)."""

    optimizer: object
    epoch: int = 0
    iter: int = 0
    inner_iter: int = 0
    max_epochs: int = EPOCHS
    max_iters: int = EPOCHS * ITERS
    data_loader: list[int] = field(default_factory=lambda: list(range(ITERS)))


def make_optimizer(kind: str) -> torch.optim.Optimizer:
    torch.manual_seed(0)
    groups = [
        {"params": [nn.Parameter(torch.zeros(2))]},
        {"params": [nn.Parameter(torch.zeros(2))], "lr": 0.05},
    ]
    if kind == "adam":
        return torch.optim.Adam(groups, lr=0.01, betas=(0.9, 0.999))
    groups[1]["momentum"] = 0.8
    return torch.optim.SGD(groups, lr=0.1, momentum=0.95)


def values(optimizer: object) -> list[tuple[float, float]]:
    optimizers = optimizer.values() if isinstance(optimizer, dict) else [optimizer]
    seen = []
    for optim in optimizers:
        for g in optim.param_groups:  # type: ignore[attr-defined]
            momentum = g["momentum"] if "momentum" in g else g["betas"][0]
            seen.append((g["lr"], momentum))
    return seen


def script(hook: object, runner: ScriptRunner, start: int = 0) -> list[list[tuple[float, float]]]:
    """LR and momentum of every group at every iteration from ``start`` on."""
    hook.before_run(runner)  # type: ignore[attr-defined]
    seen = []
    for epoch in range(start // ITERS, EPOCHS):
        runner.epoch = epoch
        hook.before_train_epoch(runner)  # type: ignore[attr-defined]
        first = start % ITERS if epoch == start // ITERS else 0
        for i in range(first, ITERS):
            runner.iter, runner.inner_iter = epoch * ITERS + i, i
            hook.before_train_iter(runner)  # type: ignore[attr-defined]
            seen.append(values(runner.optimizer))
    return seen


# (hook type, arguments, optimizer kind)
CASES: list[tuple[str, dict[str, object], str]] = [
    ("StepMomentumUpdaterHook", {"step": [1, 2]}, "sgd"),
    ("StepMomentumUpdaterHook", {"step": 2, "gamma": 0.8}, "adam"),
    (
        "StepMomentumUpdaterHook",
        {"step": 5, "by_epoch": False, "min_momentum": 0.5, "warmup": "linear", "warmup_iters": 4},
        "sgd",
    ),
    ("StepMomentumUpdaterHook", {"step": [2], "warmup": "exp", "warmup_iters": 5}, "sgd"),
    ("CosineAnnealingMomentumUpdaterHook", {"min_momentum_ratio": 0.85 / 0.95}, "sgd"),
    (
        "CosineAnnealingMomentumUpdaterHook",
        {"min_momentum": 0.6, "by_epoch": False, "warmup": "constant", "warmup_iters": 3},
        "adam",
    ),
    ("LinearAnnealingMomentumUpdaterHook", {"min_momentum": 0.7, "by_epoch": False}, "sgd"),
    ("CyclicMomentumUpdaterHook", {}, "sgd"),
    (
        "CyclicMomentumUpdaterHook",
        {"target_ratio": 0.7, "cyclic_times": 2, "gamma": 0.8, "anneal_strategy": "linear"},
        "adam",
    ),
    ("OneCycleMomentumUpdaterHook", {}, "sgd"),
    ("OneCycleMomentumUpdaterHook", {"three_phase": True, "max_momentum": [0.95, 0.9]}, "adam"),
    ("CyclicLrUpdaterHook", {}, "sgd"),
    ("CyclicLrUpdaterHook", {"target_ratio": (5.0, 0.1), "cyclic_times": 3, "gamma": 0.5}, "sgd"),
    (
        "CyclicLrUpdaterHook",
        {"step_ratio_up": 0.25, "warmup": "linear", "warmup_iters": 4, "anneal_strategy": "linear"},
        "adam",
    ),
]


def build_ours(type_name: str, args: dict[str, object]) -> object:
    return HOOKS.build({"type": type_name, **copy.deepcopy(args)})


def build_mmcv(type_name: str, args: dict[str, object]) -> object:
    return getattr(mmcv_runner(), type_name)(**copy.deepcopy(args))


@pytest.mark.parametrize(("type_name", "args", "kind"), CASES)
def test_values_match_mmcv_at_every_iteration(
    type_name: str, args: dict[str, object], kind: str
) -> None:
    ours = script(build_ours(type_name, args), ScriptRunner(make_optimizer(kind)))
    theirs = script(build_mmcv(type_name, args), ScriptRunner(make_optimizer(kind)))
    assert len(ours) == EPOCHS * ITERS
    assert ours == theirs


@pytest.mark.parametrize(("type_name", "args", "kind"), CASES)
def test_resumed_schedule_continues_with_the_same_values(
    type_name: str, args: dict[str, object], kind: str
) -> None:
    whole = script(build_ours(type_name, args), ScriptRunner(make_optimizer(kind)))
    first = ScriptRunner(make_optimizer(kind), max_iters=EPOCHS * ITERS)
    hook = build_ours(type_name, args)
    hook.before_run(first)  # type: ignore[attr-defined]
    for it in range(SPLIT):  # run the first part, leaving the optimizer as it was at SPLIT
        first.epoch, first.iter, first.inner_iter = it // ITERS, it, it % ITERS
        if it % ITERS == 0:
            hook.before_train_epoch(first)  # type: ignore[attr-defined]
        hook.before_train_iter(first)  # type: ignore[attr-defined]
    resumed = make_optimizer(kind)
    resumed.load_state_dict(first.optimizer.state_dict())  # type: ignore[attr-defined]
    rest = script(build_ours(type_name, args), ScriptRunner(resumed), start=SPLIT)
    assert rest == whole[SPLIT:]


def test_dict_of_optimizers_matches_mmcv() -> None:
    args = {"min_momentum_ratio": 0.5, "by_epoch": False}
    ours = script(
        build_ours("CosineAnnealingMomentumUpdaterHook", args),
        ScriptRunner({"a": make_optimizer("sgd"), "b": make_optimizer("adam")}),
    )
    theirs = script(
        build_mmcv("CosineAnnealingMomentumUpdaterHook", args),
        ScriptRunner({"a": make_optimizer("sgd"), "b": make_optimizer("adam")}),
    )
    assert ours == theirs


def test_momentum_config_policy_builds_the_hook() -> None:
    from trackcfg.runner.hooks.momentum_updater import CyclicMomentumUpdaterHook

    hook = HOOKS.build({"type": "CyclicMomentumUpdaterHook", "cyclic_times": 2})
    assert isinstance(hook, CyclicMomentumUpdaterHook)
    assert hook.priority == "HIGH"


@pytest.mark.parametrize(
    ("type_name", "args", "key_path"),
    [
        ("CyclicMomentumUpdaterHook", {"by_epoch": True}, "by_epoch"),
        ("CyclicLrUpdaterHook", {"step_ratio_up": 1.0}, "step_ratio_up"),
        ("CyclicLrUpdaterHook", {"gamma": 0.0}, "gamma"),
        ("CyclicLrUpdaterHook", {"target_ratio": (1.0, 2.0, 3.0)}, "target_ratio"),
        ("CosineAnnealingMomentumUpdaterHook", {}, "min_momentum"),
        ("StepMomentumUpdaterHook", {"step": 0}, "step"),
        ("OneCycleMomentumUpdaterHook", {"pct_start": 1.5}, "pct_start"),
        ("StepMomentumUpdaterHook", {"step": 1, "warmup": "cubic", "warmup_iters": 2}, "warmup"),
    ],
)
def test_bad_arguments_name_their_key_path(
    type_name: str, args: dict[str, object], key_path: str
) -> None:
    from trackcfg.errors import ArgumentError

    with pytest.raises(ArgumentError) as info:
        HOOKS.build({"type": type_name, **args})
    assert info.value.key_path == key_path
