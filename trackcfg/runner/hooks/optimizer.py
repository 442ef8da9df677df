"""Optimizer hooks: backward, optional gradient clipping, and the optimizer step.

``optimizer_config=dict(grad_clip=dict(max_norm=35, norm_type=2))`` builds
`OptimizerHook` (mmcv 1.x name and keys). After every train iteration it zeroes
the gradients, back-propagates ``runner.outputs['loss']``, clips the global
gradient norm if asked (and logs the pre-clip norm as ``grad_norm``, weighted by
``num_samples``, as mmcv does) and steps the optimizer.

`Fp16OptimizerHook` adds dynamic or static loss scaling with
``torch.amp.GradScaler``. Its scaler state is the hook's `state_dict`, so the
runner checkpoints it with every other hook (mmcv kept it in ``runner.meta``;
the hook state is where a resume looks for it here). The model's own
``torch.autocast`` regions decide what runs in half precision; mmcv's
``auto_fp16`` decorators and ``wrap_fp16_model`` are not reproduced.

Unlike mmcv (whose OptimizerHook fails on a dict of optimizers), a dict is
handled by zeroing and stepping every optimizer in it, in key order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.autograd import backward
from torch.nn.utils import clip_grad_norm_
from torch.optim import Optimizer

from trackcfg.errors import ArgumentValueError, RunnerError
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.hook import Hook

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner

__all__ = ["Fp16OptimizerHook", "OptimizerHook"]


def _optimizer_list(runner: BaseRunner) -> list[Optimizer]:
    optimizer = runner.optimizer
    if optimizer is None:
        raise RunnerError(
            "OptimizerHook needs runner.optimizer", hint="give the runner an optimizer"
        )
    if isinstance(optimizer, Mapping):
        return list(optimizer.values())
    return [optimizer]


def _loss(runner: BaseRunner) -> torch.Tensor:
    loss = runner.outputs.get("loss")
    if not isinstance(loss, torch.Tensor):
        raise _not_a_loss(loss)
    return loss


def _not_a_loss(loss: object) -> TypeError:
    return TypeError(
        "OptimizerHook needs runner.outputs['loss'] to be a tensor "
        f"(train_step must return dict(loss=..., log_vars=..., num_samples=...)), "
        f"got {type(loss).__name__}"
    )


def _num_samples(runner: BaseRunner) -> int:
    outputs: Mapping[str, object] = runner.outputs
    n = outputs.get("num_samples", 1)
    return int(n) if isinstance(n, int | float) else 1


@HOOKS.register_module()
class OptimizerHook(Hook):
    """Zero grads, backward, clip (optional), step — once per train iteration.

    Args:
        grad_clip: Keyword arguments of `torch.nn.utils.clip_grad_norm_` (``max_norm``,
            ``norm_type``, ...), or None for no clipping.
        detect_anomalous_params: Accepted for mmcv config compatibility; mmcv uses it to
            debug unused parameters in distributed training. Here it must stay False.

    Raises:
        ArgumentValueError: ``grad_clip`` lacks ``max_norm``, or anomalous-parameter
            detection is requested.
    """

    priority = "ABOVE_NORMAL"  # mmcv's register_optimizer_hook priority

    def __init__(
        self,
        grad_clip: Mapping[str, float] | None = None,
        detect_anomalous_params: bool = False,
    ) -> None:
        if grad_clip is not None and "max_norm" not in grad_clip:
            raise ArgumentValueError(
                f"needs max_norm, got {dict(grad_clip)!r}",
                key_path="grad_clip",
                hint="e.g. grad_clip=dict(max_norm=35, norm_type=2)",
            )
        if detect_anomalous_params:
            raise ArgumentValueError(
                "not supported by trackcfg's OptimizerHook", key_path="detect_anomalous_params"
            )
        self.grad_clip = dict(grad_clip) if grad_clip is not None else None

    def clip_grads(self, params: Iterable[torch.nn.Parameter]) -> torch.Tensor | None:
        """Clip the total gradient norm of ``params`` (those with a gradient).

        Returns:
            The total norm before clipping, or None when no parameter has a gradient.
        """
        if self.grad_clip is None:
            return None
        with_grad = [p for p in params if p.requires_grad and p.grad is not None]
        if not with_grad:
            return None
        return clip_grad_norm_(with_grad, **self.grad_clip)  # type: ignore[arg-type]

    def after_train_iter(self, runner: BaseRunner) -> None:
        optimizer = runner.optimizer
        if isinstance(optimizer, Optimizer):
            # The common case without the list, the Mapping (ABC) check and the `_loss`
            # call: this runs every iteration.
            loss = runner.outputs.get("loss")
            if not isinstance(loss, Tensor):
                raise _not_a_loss(loss)
            optimizer.zero_grad()
            backward(loss)  # Tensor.backward without its frame (and typed for mypy)
            if self.grad_clip is not None:
                self._clip_and_log(runner)
            optimizer.step()
            return
        optimizers = _optimizer_list(runner)
        for each in optimizers:
            each.zero_grad()
        backward(_loss(runner))
        self._clip_and_log(runner)
        for each in optimizers:
            each.step()

    def _clip_and_log(self, runner: BaseRunner) -> None:
        if self.grad_clip is None:
            return
        grad_norm = self.clip_grads(runner.model.parameters())
        if grad_norm is not None:
            runner.log_buffer.update({"grad_norm": float(grad_norm)}, _num_samples(runner))


@HOOKS.register_module()
class Fp16OptimizerHook(OptimizerHook):
    """`OptimizerHook` with loss scaling for mixed precision (mmcv 1.x name and keys).

    Args:
        grad_clip: As `OptimizerHook`; gradients are unscaled before clipping.
        coalesce: Accepted for mmcv compatibility (gradient all-reduce is DDP's job here).
        bucket_size_mb: Accepted for mmcv compatibility.
        loss_scale: ``'dynamic'``, a fixed float scale, or a dict of ``GradScaler``
            arguments (``init_scale``, ``growth_factor``, ``backoff_factor``,
            ``growth_interval``).
        distributed: Accepted for mmcv compatibility.
        device: The device type the scaler works on (``'cuda'`` or ``'cpu'``); default:
            ``'cuda'`` when available.

    Raises:
        ValueError: an unknown ``loss_scale``.
    """

    def __init__(
        self,
        grad_clip: Mapping[str, float] | None = None,
        coalesce: bool = True,
        bucket_size_mb: int = -1,
        loss_scale: str | float | Mapping[str, float] = 512.0,
        distributed: bool = True,
        device: str | None = None,
    ) -> None:
        super().__init__(grad_clip=grad_clip)
        device_type = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # A fixed scale is mmcv's "static" mode: GradScaler.update(new_scale) pins it.
        self._scale_update_param: float | None = None
        if loss_scale == "dynamic":
            self.loss_scaler = torch.amp.GradScaler(device_type)
        elif isinstance(loss_scale, int | float) and not isinstance(loss_scale, bool):
            self._scale_update_param = float(loss_scale)
            self.loss_scaler = torch.amp.GradScaler(device_type, init_scale=float(loss_scale))
        elif isinstance(loss_scale, Mapping):
            self.loss_scaler = torch.amp.GradScaler(device_type, **loss_scale)  # type: ignore[arg-type]
        else:
            raise ArgumentValueError(
                f"must be 'dynamic', a float or a dict, got {loss_scale!r}", key_path="loss_scale"
            )

    def after_train_iter(self, runner: BaseRunner) -> None:
        optimizers = _optimizer_list(runner)
        for optimizer in optimizers:
            optimizer.zero_grad()
        torch.autograd.backward(self.loss_scaler.scale(_loss(runner)))
        if self.grad_clip is not None:
            # clip the true gradients, not the scaled ones
            for optimizer in optimizers:
                self.loss_scaler.unscale_(optimizer)
        self._clip_and_log(runner)
        for optimizer in optimizers:
            self.loss_scaler.step(optimizer)
        self.loss_scaler.update(self._scale_update_param)

    def state_dict(self) -> dict[str, object]:
        """The GradScaler state (scale, growth tracker, factors): plain numbers only."""
        return {"loss_scaler": dict(self.loss_scaler.state_dict())}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore the GradScaler state saved by `state_dict`."""
        scaler_state = state.get("loss_scaler")
        if isinstance(scaler_state, dict) and scaler_state:
            self.loss_scaler.load_state_dict(scaler_state)
