"""EMAHook: mmcv 1.7.2's moving average and epoch swaps, value for value, and resumable.

A scripted run (3 epochs of 5 iterations, a fake optimizer step moving the
parameters) drives our hook and mmcv's (tests/mmcv_oracle.py) on twin models; the
model's parameters and the shadow weights must be bitwise equal after every stage.
Runs interrupted mid-epoch and between epochs (where the model holds the EMA
weights), their hook state copied as a checkpoint copies it, continue bit-identically.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from tests.mmcv_oracle import mmcv_runner
from trackcfg.registry import HOOKS
from trackcfg.runner.checkpoint import copy_state

EPOCHS, ITERS = 3, 5


@dataclass
class ScriptRunner:
    model: nn.Module
    iter: int = 0
    epoch: int = 0


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def step(model: nn.Module, i: int) -> None:
    """A stand-in for the optimizer: a deterministic move of every parameter."""
    with torch.no_grad():
        for k, p in enumerate(model.parameters()):
            p.add_(torch.sin(torch.arange(p.numel(), dtype=p.dtype) + i + k).reshape(p.shape))


def shadow_of(hook: object, model: nn.Module) -> list[torch.Tensor]:
    shadow = getattr(hook, "shadow", None)
    if isinstance(shadow, dict):
        return [shadow[n].clone() for n, _ in model.named_parameters()]
    buffers = dict(model.named_buffers())  # mmcv: ema_* buffers on the model
    return [buffers["ema_" + n.replace(".", "_")].clone() for n, _ in model.named_parameters()]


def run(
    hook: object, runner: ScriptRunner, start: int = 0, stop: int = EPOCHS * ITERS
) -> list[object]:
    """Iterations ``start``..``stop`` with the epoch stages; params and shadow after each."""
    seen: list[object] = []

    def record() -> None:
        params = [p.detach().clone() for p in runner.model.parameters()]
        seen.append((params, shadow_of(hook, runner.model)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # mmcv's deprecated Tensor.add_ overload
        hook.before_run(runner)  # type: ignore[attr-defined]
        for it in range(start, stop):
            runner.epoch, runner.iter = divmod(it, ITERS)[0], it
            if it % ITERS == 0 or it == start:
                hook.before_train_epoch(runner)  # type: ignore[attr-defined]
                record()
            step(runner.model, it)
            hook.after_train_iter(runner)  # type: ignore[attr-defined]
            record()
            if it % ITERS == ITERS - 1:
                hook.after_train_epoch(runner)  # type: ignore[attr-defined]
                record()
    return seen


def same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return False


CASES = [
    {"momentum": 0.1, "warm_up": 3},
    {"momentum": 0.3, "interval": 2, "warm_up": 1},
    {},  # mmcv's defaults
]


@pytest.mark.parametrize("args", CASES)
def test_weights_match_mmcv_after_every_stage(args: dict[str, object]) -> None:
    ours = run(HOOKS.build({"type": "EMAHook", **args}), ScriptRunner(make_model()))
    theirs = run(mmcv_runner().EMAHook(**args), ScriptRunner(make_model()))
    assert same(ours, theirs)


@pytest.mark.parametrize("split", [7, 10])  # mid-epoch; between epochs (EMA weights in the model)
def test_resumed_run_is_bitwise_equal(split: int) -> None:
    args = {"type": "EMAHook", "momentum": 0.2, "warm_up": 2}
    whole = run(HOOKS.build(args), ScriptRunner(make_model()))
    first = ScriptRunner(make_model())
    hook = HOOKS.build(args)
    run(hook, first, stop=split)
    state = copy_state(hook.state_dict())
    model_state = copy_state(first.model.state_dict())

    second = ScriptRunner(make_model())
    second.model.load_state_dict(model_state)  # type: ignore[arg-type]
    resumed = HOOKS.build(args)
    resumed.load_state_dict(state)  # type: ignore[arg-type]
    tail = run(resumed, second, start=split)
    # the resumed run re-fires before_train_epoch first: compare from the next record on
    assert same(tail[1:], whole[len(whole) - len(tail) + 1 :])


def test_state_for_another_model_is_refused() -> None:
    from trackcfg.errors import CheckpointError

    hook = HOOKS.build({"type": "EMAHook"})
    hook.load_state_dict({"shadow": {"other.weight": torch.zeros(1)}, "swapped": False})
    with pytest.raises(CheckpointError, match="does not fit the model"):
        hook.before_run(ScriptRunner(make_model()))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "key_path"), [({"momentum": 1.0}, "momentum"), ({"interval": 0}, "interval")]
)
def test_bad_arguments_name_their_key_path(args: dict[str, object], key_path: str) -> None:
    from trackcfg.errors import ArgumentValueError

    with pytest.raises(ArgumentValueError) as info:
        HOOKS.build({"type": "EMAHook", **args})
    assert info.value.key_path == key_path
