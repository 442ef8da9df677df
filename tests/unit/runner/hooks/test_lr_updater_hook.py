"""LR updater hooks: mmcv 1.x's schedules and warmups, checked against known values."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.unit.runner.hooks.fake_hook_runner import FakeRunnerFactory, fake_runner_factory
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.lr_updater import (
    CosineAnnealingLrUpdaterHook,
    LrUpdaterHook,
    StepLrUpdaterHook,
)


@pytest.fixture
def make_runner(tmp_path: Path) -> FakeRunnerFactory:
    return fake_runner_factory(tmp_path)


BASE_LR = 0.1


def sgd(lr: float = BASE_LR, groups: int = 1) -> torch.optim.SGD:
    params = [{"params": [nn.Parameter(torch.zeros(1))]} for _ in range(groups)]
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def epoch_lrs(runner: object, hook: LrUpdaterHook, epochs: int) -> list[float]:
    """LR seen in the first iteration of each epoch (by-epoch schedules)."""
    hook.before_run(runner)  # type: ignore[arg-type]
    seen = []
    for epoch in range(epochs):
        runner.epoch = epoch  # type: ignore[attr-defined]
        runner.iter = epoch * 10  # type: ignore[attr-defined]
        hook.before_train_epoch(runner)  # type: ignore[arg-type]
        hook.before_train_iter(runner)  # type: ignore[arg-type]
        seen.append(runner.optimizer.param_groups[0]["lr"])  # type: ignore[attr-defined]
    return seen


def iter_lrs(runner: object, hook: LrUpdaterHook, iters: int) -> list[float]:
    """LR seen at each iteration (one epoch spans all of them)."""
    hook.before_run(runner)  # type: ignore[arg-type]
    hook.before_train_epoch(runner)  # type: ignore[arg-type]
    seen = []
    for i in range(iters):
        runner.iter = i  # type: ignore[attr-defined]
        runner.inner_iter = i  # type: ignore[attr-defined]
        hook.before_train_iter(runner)  # type: ignore[arg-type]
        seen.append(runner.optimizer.param_groups[0]["lr"])  # type: ignore[attr-defined]
    return seen


def cos_anneal(start: float, end: float, factor: float) -> float:
    return end + 0.5 * (start - end) * (math.cos(math.pi * factor) + 1)


# (policy, kwargs, expected LR at epochs 0..4 with max_epochs=5, base 0.1)
EPOCH_SCHEDULES: list[tuple[str, dict[str, object], list[float]]] = [
    ("Fixed", {}, [0.1] * 5),
    ("Step", {"step": 2}, [0.1, 0.1, 0.01, 0.01, 0.001]),
    ("Step", {"step": [1, 3]}, [0.1, 0.01, 0.01, 0.001, 0.001]),
    ("Step", {"step": [1, 3], "gamma": 0.5}, [0.1, 0.05, 0.05, 0.025, 0.025]),
    ("Step", {"step": 1, "min_lr": 5e-4}, [0.1, 0.01, 0.001, 5e-4, 5e-4]),
    ("Exp", {"gamma": 0.5}, [0.1, 0.05, 0.025, 0.0125, 0.00625]),
    ("Poly", {"power": 1.0, "min_lr": 0.0}, [0.1, 0.08, 0.06, 0.04, 0.02]),
    ("Poly", {"power": 2.0, "min_lr": 0.01}, [0.09 * x**2 + 0.01 for x in (1, 0.8, 0.6, 0.4, 0.2)]),
    ("Inv", {"gamma": 1.0, "power": 1.0}, [0.1, 0.05, 0.1 / 3, 0.025, 0.02]),
    ("CosineAnnealing", {"min_lr": 0.0}, [cos_anneal(0.1, 0.0, e / 5) for e in range(5)]),
    ("CosineAnnealing", {"min_lr_ratio": 0.1}, [cos_anneal(0.1, 0.01, e / 5) for e in range(5)]),
    (
        "FlatCosineAnnealing",
        {"start_percent": 0.4, "min_lr": 0.0},  # flat for round(5 * 0.4) = 2 epochs
        [0.1, 0.1, 0.1, cos_anneal(0.1, 0.0, 1 / 3), cos_anneal(0.1, 0.0, 2 / 3)],
    ),
    (
        "CosineRestart",
        {"periods": [2, 3], "restart_weights": [1, 0.5], "min_lr": 0.0},
        [
            0.1,
            0.05,
            0.05,
            0.5 * 0.5 * 0.1 * (math.cos(math.pi / 3) + 1),
            0.5 * 0.5 * 0.1 * (math.cos(2 * math.pi / 3) + 1),
        ],
    ),
]


@pytest.mark.parametrize(("policy", "kwargs", "expected"), EPOCH_SCHEDULES)
def test_epoch_schedule_gives_mmcv_values(
    make_runner: Callable[..., object],
    policy: str,
    kwargs: dict[str, object],
    expected: list[float],
) -> None:
    runner = make_runner(optimizer=sgd(), max_epochs=5, max_iters=50)
    hook = HOOKS.build({"type": f"{policy}LrUpdaterHook", **kwargs})
    assert epoch_lrs(runner, hook, 5) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("policy", "kwargs", "expected"),
    [
        ("Step", {"step": [2, 3], "by_epoch": False}, [0.1, 0.1, 0.01, 0.001, 0.001]),
        (
            "CosineAnnealing",
            {"min_lr": 0.0, "by_epoch": False},
            [cos_anneal(0.1, 0, i / 5) for i in range(5)],
        ),
        ("Poly", {"by_epoch": False}, [0.1, 0.08, 0.06, 0.04, 0.02]),
    ],
)
def test_iter_schedule_follows_runner_iter(
    make_runner: Callable[..., object],
    policy: str,
    kwargs: dict[str, object],
    expected: list[float],
) -> None:
    runner = make_runner(optimizer=sgd(), max_iters=5)
    hook = HOOKS.build({"type": f"{policy}LrUpdaterHook", **kwargs})
    assert iter_lrs(runner, hook, 5) == pytest.approx(expected, rel=1e-12)


# warmup over 4 iterations from ratio 0.1 of a fixed 0.1 LR, then the regular LR
WARMUPS = [
    ("constant", [0.01, 0.01, 0.01, 0.01, 0.1, 0.1]),
    ("linear", [0.01, 0.0325, 0.055, 0.0775, 0.1, 0.1]),
    ("exp", [0.1 * 0.1 ** (1 - i / 4) for i in range(4)] + [0.1, 0.1]),
]


@pytest.mark.parametrize(("warmup", "expected"), WARMUPS)
@pytest.mark.parametrize("by_epoch", [True, False])
def test_warmup_scales_the_regular_lr_for_warmup_iters(
    make_runner: Callable[..., object], warmup: str, expected: list[float], by_epoch: bool
) -> None:
    runner = make_runner(optimizer=sgd(), max_epochs=1, max_iters=6)
    hook = HOOKS.build(
        {
            "type": "FixedLrUpdaterHook",
            "by_epoch": by_epoch,
            "warmup": warmup,
            "warmup_iters": 4,
            "warmup_ratio": 0.1,
        }
    )
    assert iter_lrs(runner, hook, 6) == pytest.approx(expected, rel=1e-12)


def test_warmup_applies_on_top_of_the_step_schedule(make_runner: Callable[..., object]) -> None:
    runner = make_runner(optimizer=sgd(), max_iters=10)
    hook = StepLrUpdaterHook(
        step=[2], by_epoch=False, warmup="linear", warmup_iters=4, warmup_ratio=0.5
    )
    # regular: 0.1, 0.1, 0.01, 0.01, 0.01; warmup factor 1 - (1 - i/4) * 0.5
    expected = [0.05, 0.1 * 0.625, 0.01 * 0.75, 0.01 * 0.875, 0.01]
    assert iter_lrs(runner, hook, 5) == pytest.approx(expected, rel=1e-12)


def test_warmup_by_epoch_counts_epochs_of_the_data_loader(
    make_runner: Callable[..., object],
) -> None:
    runner = make_runner(optimizer=sgd(), max_epochs=3, data_loader=[0, 1])
    hook = HOOKS.build(
        {
            "type": "FixedLrUpdaterHook",
            "warmup": "constant",
            "warmup_iters": 2,
            "warmup_by_epoch": True,
        }
    )
    lrs = iter_lrs(runner, hook, 5)  # 2 epochs of 2 iterations = 4 warmup iterations
    assert hook.warmup_iters == 4
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.01, 0.1])


def test_every_param_group_and_every_named_optimizer_is_scheduled(
    make_runner: Callable[..., object],
) -> None:
    gen, disc = sgd(0.1, groups=2), sgd(0.02)
    gen.param_groups[1]["lr"] = 0.4
    runner = make_runner(optimizer={"gen": gen, "disc": disc}, max_epochs=4)
    hook = StepLrUpdaterHook(step=1, gamma=0.5)
    hook.before_run(runner)  # type: ignore[arg-type]
    runner.epoch = 1  # type: ignore[attr-defined]
    hook.before_train_epoch(runner)  # type: ignore[arg-type]
    assert [g["lr"] for g in gen.param_groups] == pytest.approx([0.05, 0.2])
    assert disc.param_groups[0]["lr"] == pytest.approx(0.01)
    assert hook.base_lr == {"gen": [0.1, 0.4], "disc": [0.02]}


def test_resume_takes_base_lr_from_saved_initial_lr_not_current_lr(
    make_runner: Callable[..., object],
) -> None:
    # What makes the schedule resumable: initial_lr travels in the optimizer state.
    first = make_runner(optimizer=sgd(), max_epochs=6)
    epoch_lrs(first, CosineAnnealingLrUpdaterHook(min_lr=0.0), 3)
    saved = first.optimizer.state_dict()  # type: ignore[attr-defined]
    resumed = make_runner(optimizer=sgd(lr=123.0), max_epochs=6)
    resumed.optimizer.load_state_dict(saved)  # type: ignore[attr-defined]
    hook = CosineAnnealingLrUpdaterHook(min_lr=0.0)
    hook.before_run(resumed)  # type: ignore[arg-type]
    resumed.epoch = 3  # type: ignore[attr-defined]
    hook.before_train_epoch(resumed)  # type: ignore[arg-type]
    assert hook.base_lr == [0.1]
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(cos_anneal(0.1, 0, 3 / 6))  # type: ignore[attr-defined]


def test_by_epoch_warmup_after_mid_epoch_resume_needs_no_before_train_epoch(
    make_runner: Callable[..., object],
) -> None:
    runner = make_runner(optimizer=sgd(), max_epochs=2)
    hook = StepLrUpdaterHook(step=[1], warmup="linear", warmup_iters=4, warmup_ratio=0.1)
    hook.before_run(runner)  # type: ignore[arg-type]
    runner.iter = 2  # type: ignore[attr-defined]
    hook.before_train_iter(runner)  # type: ignore[arg-type]
    assert runner.optimizer.param_groups[0]["lr"] == pytest.approx(0.055)  # type: ignore[attr-defined]


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal_strategy", ["cos", "linear"])
def test_one_cycle_matches_torch_one_cycle_lr(
    make_runner: Callable[..., object], three_phase: bool, anneal_strategy: str
) -> None:
    steps = 20
    kwargs = {
        "max_lr": 0.5,
        "pct_start": 0.25,
        "anneal_strategy": anneal_strategy,
        "div_factor": 10.0,
        "final_div_factor": 100.0,
        "three_phase": three_phase,
    }
    oracle_opt = sgd()
    oracle = torch.optim.lr_scheduler.OneCycleLR(
        oracle_opt, total_steps=steps, cycle_momentum=False, **kwargs
    )
    expected = []
    for _ in range(steps):
        expected.append(oracle_opt.param_groups[0]["lr"])
        oracle_opt.step()
        oracle.step()
    runner = make_runner(optimizer=sgd(), max_iters=steps)
    hook = HOOKS.build({"type": "OneCycleLrUpdaterHook", **kwargs})
    assert iter_lrs(runner, hook, steps) == pytest.approx(expected, rel=1e-12)


def test_one_cycle_takes_max_lr_per_named_optimizer(make_runner: Callable[..., object]) -> None:
    runner = make_runner(optimizer={"a": sgd(), "b": sgd(groups=2)}, max_iters=10)
    hook = HOOKS.build({"type": "OneCycleLrUpdaterHook", "max_lr": {"a": 1.0, "b": [2.0, 4.0]}})
    hook.before_run(runner)
    assert hook.base_lr == {"a": [0.04], "b": [0.08, 0.16]}


def test_lr_hooks_keep_no_checkpoint_state() -> None:
    assert StepLrUpdaterHook(step=2, warmup="linear", warmup_iters=3).state_dict() == {}


@pytest.mark.parametrize(
    ("cfg", "error", "match"),
    [
        (
            {"type": "FixedLrUpdaterHook", "warmup": "cosine", "warmup_iters": 3},
            ValueError,
            "'cosine' is not a supported warmup",
        ),
        (
            {"type": "FixedLrUpdaterHook", "warmup": "linear", "warmup_iters": 0},
            ValueError,
            "warmup_iters: must be a positive",
        ),
        (
            {
                "type": "FixedLrUpdaterHook",
                "warmup": "linear",
                "warmup_iters": 2,
                "warmup_ratio": 0,
            },
            ValueError,
            r"warmup_ratio: must be in \(0, 1\]",
        ),
        ({"type": "StepLrUpdaterHook", "step": 1.5}, TypeError, "step: must be an int or a list"),
        (
            {"type": "StepLrUpdaterHook", "step": [2, "3"]},
            TypeError,
            "step: must be an int or a list",
        ),
        ({"type": "StepLrUpdaterHook", "step": [0, 2]}, ValueError, "every step must be positive"),
        (
            {"type": "CosineAnnealingLrUpdaterHook"},
            ValueError,
            "exactly one of min_lr and min_lr_ratio",
        ),
        (
            {"type": "CosineAnnealingLrUpdaterHook", "min_lr": 0, "min_lr_ratio": 0.1},
            ValueError,
            "exactly one",
        ),
        (
            {"type": "CosineRestartLrUpdaterHook", "periods": [1, 2], "min_lr": 0},
            ValueError,
            "same length",
        ),
        (
            {"type": "OneCycleLrUpdaterHook", "max_lr": 1.0, "by_epoch": True},
            ValueError,
            "only supports by_epoch=False",
        ),
        (
            {"type": "OneCycleLrUpdaterHook", "max_lr": 1.0, "anneal_strategy": "exp"},
            ValueError,
            "anneal_strategy",
        ),
        (
            {"type": "FlatCosineAnnealingLrUpdaterHook", "start_percent": 1.5, "min_lr": 0},
            ValueError,
            "start_percent",
        ),
    ],
)
def test_bad_arguments_are_rejected_at_build(
    cfg: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        HOOKS.build(cfg)
