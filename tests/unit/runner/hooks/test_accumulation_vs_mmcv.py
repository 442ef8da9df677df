"""Gradient accumulation: mmcv 1.7.2's gradients and steps, and a window resumed exactly.

A scripted run (10 iterations, windows of 4: the last window is 2 long) drives our
hook and mmcv's (tests/mmcv_oracle.py) on twin models; after every iteration the
gradients and parameters must be bitwise equal. A run interrupted inside a window,
its hook state copied as a checkpoint copies it, continues bit-identically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from tests.mmcv_oracle import mmcv_runner
from trackcfg.registry import HOOKS
from trackcfg.runner.checkpoint import copy_state
from trackcfg.runner.log_buffer import LogBuffer

MAX_ITERS = 10


@dataclass
class ScriptRunner:
    """The runner attributes the optimizer hooks read (ours and mmcv's)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    max_iters: int = MAX_ITERS
    iter: int = 0
    outputs: dict[str, object] = field(default_factory=dict)
    log_buffer: LogBuffer = field(default_factory=LogBuffer)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("test.accum"))

    @property
    def _max_iters(self) -> int:  # mmcv's Hook.is_last_iter reads the private name
        return self.max_iters


def make_runner() -> ScriptRunner:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return ScriptRunner(model, optimizer)


def batch(i: int) -> torch.Tensor:
    return torch.linspace(-1, 1, 6).reshape(2, 3) * (i + 1) / 7


def run(hook: object, runner: ScriptRunner, start: int = 0, stop: int = MAX_ITERS) -> list[object]:
    """Iterations ``start``..``stop``; per iteration the gradients and parameters after it."""
    hook.before_run(runner)  # type: ignore[attr-defined]
    seen: list[object] = []
    for i in range(start, stop):
        runner.iter = i
        loss = runner.model(batch(i)).pow(2).mean()
        runner.outputs = {"loss": loss, "num_samples": 2}
        hook.after_train_iter(runner)  # type: ignore[attr-defined]
        grads = [None if p.grad is None else p.grad.clone() for p in runner.model.parameters()]
        params = [p.detach().clone() for p in runner.model.parameters()]
        seen.append((grads, params))
    return seen


def same(a: list[object], b: list[object]) -> bool:
    def eq(x: object, y: object) -> bool:
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            return torch.equal(x, y)
        if isinstance(x, list | tuple) and isinstance(y, list | tuple):
            return len(x) == len(y) and all(eq(u, v) for u, v in zip(x, y, strict=True))
        return x is None and y is None

    return eq(a, b)


CASES = [
    {"cumulative_iters": 4},
    {"cumulative_iters": 3, "grad_clip": {"max_norm": 0.05}},
    {"cumulative_iters": 1},
    {"cumulative_iters": 5},  # divides max_iters: no short window
]


@pytest.mark.parametrize("args", CASES)
def test_gradients_and_steps_match_mmcv_at_every_iteration(args: dict[str, object]) -> None:
    ours_runner, theirs_runner = make_runner(), make_runner()
    ours = run(HOOKS.build({"type": "GradientCumulativeOptimizerHook", **args}), ours_runner)
    theirs = run(mmcv_runner().GradientCumulativeOptimizerHook(**args), theirs_runner)
    assert same(ours, theirs)
    assert ours_runner.log_buffer.val_history.get(
        "grad_norm"
    ) == theirs_runner.log_buffer.val_history.get("grad_norm")


@pytest.mark.parametrize("split", [1, 6, 9])  # inside the first, second and the short window
@pytest.mark.parametrize(
    "hook_type", ["GradientCumulativeOptimizerHook", "GradientCumulativeFp16OptimizerHook"]
)
def test_run_resumed_inside_a_window_is_bitwise_equal(split: int, hook_type: str) -> None:
    args: dict[str, object] = {"type": hook_type, "cumulative_iters": 4}
    if hook_type.endswith("Fp16OptimizerHook"):
        args.update(loss_scale="dynamic", device="cpu")
    whole = run(HOOKS.build(args), make_runner())

    first = make_runner()
    hook = HOOKS.build(args)
    head = run(hook, first, stop=split)
    state = copy_state(hook.state_dict())  # what a checkpoint holds
    assert "grads" in state  # type: ignore[operator]
    model_state = copy_state(first.model.state_dict())
    optim_state = copy_state(first.optimizer.state_dict())

    second = make_runner()
    second.model.load_state_dict(model_state)  # type: ignore[arg-type]
    second.optimizer.load_state_dict(optim_state)  # type: ignore[arg-type]
    second.iter = split
    resumed = HOOKS.build(args)
    resumed.load_state_dict(state)  # type: ignore[arg-type]
    tail = run(resumed, second, start=split)
    assert same(head + tail, whole)


def test_state_is_empty_at_a_window_boundary() -> None:
    runner = make_runner()
    hook = HOOKS.build({"type": "GradientCumulativeOptimizerHook", "cumulative_iters": 2})
    run(hook, runner, stop=4)
    assert hook.state_dict() == {}


def test_cumulative_iters_must_be_a_positive_int() -> None:
    from trackcfg.errors import ArgumentValueError

    with pytest.raises(ArgumentValueError) as info:
        HOOKS.build({"type": "GradientCumulativeOptimizerHook", "cumulative_iters": 0})
    assert info.value.key_path == "cumulative_iters"
