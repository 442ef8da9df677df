"""Gradient accumulation: step the optimizer every ``cumulative_iters`` iterations.

``optimizer_config=dict(type='GradientCumulativeOptimizerHook', cumulative_iters=4)``
(mmcv 1.x name and keys) back-propagates ``loss / cumulative_iters`` at every
iteration and clips, steps and zeroes the gradients after every ``cumulative_iters``-th
one (counted on ``runner.iter``, the global iteration) and after the last. As in mmcv,
when ``max_iters`` is not a multiple of ``cumulative_iters`` the last, shorter window
divides the loss by its own length (the remainder), so every window averages its
losses. `GradientCumulativeFp16OptimizerHook` adds `Fp16OptimizerHook`'s loss scaling.

Where we differ from mmcv, on purpose: the gradients accumulated so far in an open
window are part of the hook's state, so a checkpoint taken inside a window (any
iteration-interval checkpoint, a preemption) carries them and a resume continues the
window bit-identically. mmcv loses them and warns ("the gradient of some iters is
lost"); here that warning is given only when a run resumes inside a window from a
checkpoint without them (written by another hook).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.autograd import backward
from torch.nn.modules.batchnorm import _BatchNorm

from trackcfg.errors import ArgumentValueError, CheckpointError, RunnerError
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.optimizer import (
    Fp16OptimizerHook,
    OptimizerHook,
    _loss,
    _optimizer_list,
)

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner

__all__ = ["GradientCumulativeFp16OptimizerHook", "GradientCumulativeOptimizerHook"]


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in module.modules())


@HOOKS.register_module()
class GradientCumulativeOptimizerHook(OptimizerHook):
    """`OptimizerHook` that accumulates gradients over ``cumulative_iters`` iterations.

    Args:
        cumulative_iters: Iterations per optimizer step.
        grad_clip: As `OptimizerHook`: clip at the end of each window.
        detect_anomalous_params: As `OptimizerHook` (must stay False).

    Raises:
        ArgumentValueError: ``cumulative_iters`` is not a positive int.

    Example:
        >>> hook = GradientCumulativeOptimizerHook(cumulative_iters=4)
        >>> hook.cumulative_iters, hook.state_dict()
        (4, {})
    """

    def __init__(
        self,
        cumulative_iters: int = 1,
        grad_clip: Mapping[str, float] | None = None,
        detect_anomalous_params: bool = False,
    ) -> None:
        # Not super(): in the fp16 variant's MRO that is Fp16OptimizerHook, whose
        # constructor would rebuild the loss scaler.
        OptimizerHook.__init__(
            self, grad_clip=grad_clip, detect_anomalous_params=detect_anomalous_params
        )
        if (
            not isinstance(cumulative_iters, int)
            or isinstance(cumulative_iters, bool)
            or cumulative_iters < 1
        ):
            raise ArgumentValueError(
                f"must be a positive int, got {cumulative_iters!r}", key_path="cumulative_iters"
            )
        self.cumulative_iters = cumulative_iters
        self.divisible_iters = 0
        self.remainder_iters = 0
        self._params: list[nn.Parameter] = []
        # Gradients of an open window read from a checkpoint, applied in before_run.
        self._restored_grads: list[Tensor | None] | None = None

    # -- stages --------------------------------------------------------------

    def before_run(self, runner: BaseRunner) -> None:
        max_iters = runner.max_iters
        if max_iters is None:
            raise RunnerError("GradientCumulativeOptimizerHook needs runner.max_iters")
        self.divisible_iters = max_iters // self.cumulative_iters * self.cumulative_iters
        self.remainder_iters = max_iters - self.divisible_iters
        self._params = list(runner.model.parameters())
        if self._restored_grads is not None:
            self._apply_restored_grads()
        elif runner.iter % self.cumulative_iters != 0:
            runner.logger.warning(
                "GradientCumulativeOptimizerHook: resumed at iteration %d, inside a window "
                "of %d, from a checkpoint without the window's gradients; they are lost",
                runner.iter,
                self.cumulative_iters,
            )
        if self.cumulative_iters > 1 and _has_batch_norm(runner.model):
            runner.logger.warning(
                "GradientCumulativeOptimizerHook may slightly decrease performance if the "
                "model has BatchNorm layers (their statistics see the small batches)."
            )

    def after_train_iter(self, runner: BaseRunner) -> None:
        loss = _loss(runner) / self._loss_factor(runner)
        self._backward(loss)
        if self.every_n_iters(runner, self.cumulative_iters) or self.is_last_iter(runner):
            optimizers = _optimizer_list(runner)
            self._step(runner, optimizers)
            for optimizer in optimizers:
                optimizer.zero_grad()

    # -- state ---------------------------------------------------------------

    def state_dict(self) -> dict[str, object]:
        """The gradients of the open window (none at a window boundary: they are zeroed)."""
        grads = [p.grad for p in self._params]
        if all(g is None for g in grads):
            return {}
        return {"grads": grads}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Keep the saved window's gradients for ``before_run`` (the model is known then)."""
        grads = state.get("grads")
        if grads is None:
            return
        if not isinstance(grads, list) or not all(
            g is None or isinstance(g, Tensor) for g in grads
        ):
            raise CheckpointError(
                "GradientCumulativeOptimizerHook state: 'grads' is not a list of tensors"
            )
        self._restored_grads = grads

    # -- helpers -------------------------------------------------------------

    def _loss_factor(self, runner: BaseRunner) -> int:
        """``cumulative_iters``, or the length of the last, shorter window (mmcv)."""
        max_iters = runner.max_iters or 0
        if runner.iter < max_iters - self.remainder_iters:
            return self.cumulative_iters
        if runner.iter == self.divisible_iters:  # once, at the start of that window
            runner.logger.warning(
                "the loss is divided by %d in the last %d iterations: too few for "
                "cumulative_iters=%d",
                self.remainder_iters,
                self.remainder_iters,
                self.cumulative_iters,
            )
        return self.remainder_iters

    def _backward(self, loss: Tensor) -> None:
        backward(loss)

    def _step(self, runner: BaseRunner, optimizers: list[torch.optim.Optimizer]) -> None:
        self._clip_and_log(runner)
        for optimizer in optimizers:
            optimizer.step()

    def _apply_restored_grads(self) -> None:
        grads, self._restored_grads = self._restored_grads, None
        if grads is None:
            return
        if len(grads) != len(self._params):
            raise CheckpointError(
                f"GradientCumulativeOptimizerHook state holds gradients of {len(grads)} "
                f"parameters, the model has {len(self._params)}"
            )
        for param, grad in zip(self._params, grads, strict=True):
            if grad is not None and grad.shape != param.shape:
                raise CheckpointError(
                    f"GradientCumulativeOptimizerHook state: a gradient of shape "
                    f"{tuple(grad.shape)} for a parameter of shape {tuple(param.shape)}"
                )
            param.grad = None if grad is None else grad.to(param.device, param.dtype)


@HOOKS.register_module()
class GradientCumulativeFp16OptimizerHook(GradientCumulativeOptimizerHook, Fp16OptimizerHook):
    """`GradientCumulativeOptimizerHook` with `Fp16OptimizerHook`'s loss scaling (mmcv name).

    The scaled gradients accumulate; at the end of a window they are unscaled, clipped
    (if asked), stepped through the scaler, and the scale is updated — as mmcv.

    Args:
        cumulative_iters: Iterations per optimizer step.
        **kwargs: `Fp16OptimizerHook` arguments (``grad_clip``, ``loss_scale``, ...).

    Raises:
        ArgumentValueError: ``cumulative_iters`` is not a positive int, or a bad
            ``loss_scale``.
    """

    def __init__(self, cumulative_iters: int = 1, **kwargs: object) -> None:
        Fp16OptimizerHook.__init__(self, **kwargs)  # type: ignore[arg-type]
        grad_clip = self.grad_clip
        GradientCumulativeOptimizerHook.__init__(
            self, cumulative_iters=cumulative_iters, grad_clip=grad_clip
        )

    def _backward(self, loss: Tensor) -> None:
        backward(self.loss_scaler.scale(loss))

    def _step(self, runner: BaseRunner, optimizers: list[torch.optim.Optimizer]) -> None:
        for optimizer in optimizers:
            self.loss_scaler.unscale_(optimizer)
        self._clip_and_log(runner)
        for optimizer in optimizers:
            self.loss_scaler.step(optimizer)
        self.loss_scaler.update(self._scale_update_param)

    def state_dict(self) -> dict[str, object]:
        """The scaler's state and the open window's (scaled) gradients."""
        return {
            **Fp16OptimizerHook.state_dict(self),
            **GradientCumulativeOptimizerHook.state_dict(self),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what `state_dict` returned."""
        Fp16OptimizerHook.load_state_dict(self, state)
        GradientCumulativeOptimizerHook.load_state_dict(self, state)
