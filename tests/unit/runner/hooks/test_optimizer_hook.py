"""OptimizerHook and Fp16OptimizerHook: step, gradient clipping, logged grad_norm, scaler state."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.unit.runner.hooks.fake_hook_runner import FakeRunnerFactory, fake_runner_factory
from trackcfg.errors import RunnerError
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.optimizer import Fp16OptimizerHook, OptimizerHook


@pytest.fixture
def make_runner(tmp_path: Path) -> FakeRunnerFactory:
    return fake_runner_factory(tmp_path)


def setup(
    make_runner: Callable[..., object], scale: float = 1.0, **runner_kwargs: object
) -> object:
    """A runner whose outputs hold the loss of a linear model on one fixed batch."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = runner_kwargs.pop("optimizer", None) or torch.optim.SGD(model.parameters(), lr=0.1)
    runner = make_runner(model=model, optimizer=optimizer, **runner_kwargs)
    x = torch.arange(6.0).reshape(2, 3)
    loss = scale * model(x).pow(2).mean()
    runner.outputs = {"loss": loss, "num_samples": 2}  # type: ignore[attr-defined]
    return runner


def grads_of(runner: object) -> list[torch.Tensor]:
    return [p.grad.clone() for p in runner.model.parameters()]  # type: ignore[attr-defined]


def test_step_applies_plain_sgd_update(make_runner: Callable[..., object]) -> None:
    runner = setup(make_runner)
    before = [p.detach().clone() for p in runner.model.parameters()]  # type: ignore[attr-defined]
    HOOKS.build({"type": "OptimizerHook"}).after_train_iter(runner)
    for old, p in zip(before, runner.model.parameters(), strict=True):  # type: ignore[attr-defined]
        torch.testing.assert_close(p.detach(), old - 0.1 * p.grad)
    assert "grad_norm" not in runner.log_buffer.val_history  # type: ignore[attr-defined]


def test_zero_grad_drops_gradients_of_earlier_iterations(
    make_runner: Callable[..., object],
) -> None:
    runner = setup(make_runner)
    for p in runner.model.parameters():  # type: ignore[attr-defined]
        p.grad = torch.full_like(p, 1e6)
    OptimizerHook().after_train_iter(runner)
    assert all(p.grad.abs().max() < 1e5 for p in runner.model.parameters())  # type: ignore[attr-defined]


def test_grad_clip_bounds_total_norm_and_logs_the_norm_before_clipping(
    make_runner: Callable[..., object],
) -> None:
    reference = setup(make_runner, scale=10.0)
    reference.outputs["loss"].backward()  # type: ignore[attr-defined]
    raw = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads_of(reference)]))
    assert raw > 1.0  # the test needs a gradient that clipping changes

    runner = setup(make_runner, scale=10.0, optimizer=None)
    # lr=0 keeps the weights: the clipped gradients stay inspectable
    runner.optimizer = torch.optim.SGD(runner.model.parameters(), lr=0.0)  # type: ignore[attr-defined]
    hook = HOOKS.build({"type": "OptimizerHook", "grad_clip": {"max_norm": 1.0, "norm_type": 2}})
    hook.after_train_iter(runner)
    clipped = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads_of(runner)]))
    assert clipped == pytest.approx(1.0, rel=1e-5)
    assert list(runner.log_buffer.val_history["grad_norm"]) == [pytest.approx(float(raw))]  # type: ignore[attr-defined]
    assert list(runner.log_buffer.n_history["grad_norm"]) == [2]  # weighted by num_samples  # type: ignore[attr-defined]


def test_grad_clip_leaves_small_gradients_alone(make_runner: Callable[..., object]) -> None:
    reference = setup(make_runner)
    reference.outputs["loss"].backward()  # type: ignore[attr-defined]
    runner = setup(make_runner)
    runner.optimizer = torch.optim.SGD(runner.model.parameters(), lr=0.0)  # type: ignore[attr-defined]
    OptimizerHook(grad_clip={"max_norm": 1e9}).after_train_iter(runner)
    for g_ref, g in zip(grads_of(reference), grads_of(runner), strict=True):
        assert torch.equal(g_ref, g)


def test_dict_of_optimizers_steps_each(make_runner: Callable[..., object]) -> None:
    runner = setup(make_runner)
    weight, bias = runner.model.weight, runner.model.bias  # type: ignore[attr-defined]
    runner.optimizer = {  # type: ignore[attr-defined]
        "w": torch.optim.SGD([weight], lr=0.1),
        "b": torch.optim.SGD([bias], lr=0.0),
    }
    w0, b0 = weight.detach().clone(), bias.detach().clone()
    OptimizerHook().after_train_iter(runner)
    assert not torch.equal(weight.detach(), w0)
    assert torch.equal(bias.detach(), b0)


@pytest.mark.parametrize(
    ("outputs", "optimizer", "error", "match"),
    [
        ({"loss": 1.0}, "sgd", TypeError, r"runner.outputs\['loss'\] to be a tensor"),
        ({}, "sgd", TypeError, "got NoneType"),
        (
            {"loss": torch.tensor(1.0, requires_grad=True)},
            None,
            RunnerError,
            "needs runner.optimizer",
        ),
    ],
)
def test_missing_loss_or_optimizer_is_a_clear_error(
    make_runner: Callable[..., object],
    outputs: dict[str, object],
    optimizer: str | None,
    error: type[Exception],
    match: str,
) -> None:
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1) if optimizer else None
    runner = make_runner(model=model, optimizer=opt, outputs=outputs)
    with pytest.raises(error, match=match):
        OptimizerHook().after_train_iter(runner)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grad_clip": {"norm_type": 2}}, "grad_clip: needs max_norm"),
        ({"detect_anomalous_params": True}, "detect_anomalous_params"),
    ],
)
def test_bad_optimizer_config_is_rejected(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HOOKS.build({"type": "OptimizerHook", **kwargs})


def test_fp16_hook_with_static_scale_matches_the_unscaled_step(
    make_runner: Callable[..., object],
) -> None:
    plain, scaled = setup(make_runner), setup(make_runner)
    OptimizerHook(grad_clip={"max_norm": 0.5}).after_train_iter(plain)
    Fp16OptimizerHook(grad_clip={"max_norm": 0.5}, loss_scale=512.0, device="cpu").after_train_iter(
        scaled
    )
    for p, q in zip(plain.model.parameters(), scaled.model.parameters(), strict=True):  # type: ignore[attr-defined]
        torch.testing.assert_close(p, q)


def test_fp16_dynamic_scaler_state_round_trips_through_weights_only_load(
    make_runner: Callable[..., object],
) -> None:
    hook = HOOKS.build(
        {
            "type": "Fp16OptimizerHook",
            "loss_scale": {"init_scale": 8.0, "growth_interval": 1},
            "device": "cpu",
        }
    )
    for _ in range(2):
        hook.after_train_iter(setup(make_runner))
    stream = io.BytesIO()
    torch.save(hook.state_dict(), stream)
    stream.seek(0)
    restored = Fp16OptimizerHook(loss_scale="dynamic", device="cpu")
    restored.load_state_dict(torch.load(stream, weights_only=True))
    assert restored.loss_scaler.get_scale() == hook.loss_scaler.get_scale() == 32.0
    assert restored.state_dict() == hook.state_dict()


def test_fp16_rejects_unknown_loss_scale() -> None:
    with pytest.raises(ValueError, match="loss_scale"):
        Fp16OptimizerHook(loss_scale="auto", device="cpu")
