"""EMAHook: an exponential moving average of the model's parameters (mmcv 1.x's numbers).

``custom_hooks=[dict(type='EMAHook', momentum=0.0002, interval=1, warm_up=100)]``.
Every ``interval`` iterations (``runner.iter % interval == 0``) the shadow weights
move towards the parameters, ``shadow = (1 - m) * shadow + m * param`` with
``m = min(momentum ** interval, (1 + iter) / (warm_up + iter))``. As in mmcv, the
shadow and the parameters are *swapped* after every training epoch and back before
the next: whatever runs between (a validation epoch, `EvalHook`, the epoch's
checkpoint) sees the EMA weights — so evaluating the EMA weights is a matter of
having this hook, and an epoch checkpoint's ``state_dict`` holds them.

Where we differ from mmcv, on purpose: the shadow weights are the hook's state
(``hook_states`` of the checkpoint), not ``ema_*`` buffers registered on the model.
mmcv registers those buffers in ``before_run``, which is after ``resume`` loaded the
model, so a plain resume fails on unexpected keys (hence its own ``resume_from``).
The hook also records whether the model holds the EMA weights right now, so a
mid-epoch resume (which re-fires ``before_train_epoch``) does not swap twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from trackcfg.errors import ArgumentValueError, CheckpointError
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.parallel import unwrap_model

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner

__all__ = ["EMAHook"]


@HOOKS.register_module()
class EMAHook(Hook):
    """Keep an exponential moving average of the parameters; swap it in after each epoch.

    Args:
        momentum: Weight of the current parameters in each update, in (0, 1).
        interval: Update every ``interval`` iterations (the momentum is raised to this
            power, as mmcv).
        warm_up: The momentum is at most ``(1 + iter) / (warm_up + iter)``, so early
            updates follow the parameters closely.
        resume_from: A checkpoint to resume the whole run from in ``before_run``
            (mmcv's argument; the config's ``resume_from`` does the same).

    Raises:
        ArgumentValueError: ``momentum`` outside (0, 1) or ``interval`` not a positive int.

    Example:
        >>> hook = EMAHook(momentum=0.5, interval=2, warm_up=10)
        >>> hook.momentum
        0.25
    """

    def __init__(
        self,
        momentum: float = 0.0002,
        interval: int = 1,
        warm_up: int = 100,
        resume_from: str | None = None,
    ) -> None:
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise ArgumentValueError(
                f"must be a positive int, got {interval!r}", key_path="interval"
            )
        if not 0 < momentum < 1:
            raise ArgumentValueError(f"must be in (0, 1), got {momentum!r}", key_path="momentum")
        self.warm_up = warm_up
        self.interval = interval
        self.momentum = momentum**interval
        self.checkpoint = resume_from
        self._params: dict[str, Tensor] = {}
        #: parameter name -> its moving average (or, while swapped, its raw value)
        self.shadow: dict[str, Tensor] = {}
        #: whether the model holds the EMA weights now (between an epoch and the next)
        self.swapped = False
        self._restored: dict[str, Tensor] | None = None

    def before_run(self, runner: BaseRunner) -> None:
        model = unwrap_model(runner.model)
        self._params = dict(model.named_parameters(recurse=True))
        if self.checkpoint is not None:
            runner.resume(self.checkpoint)  # calls load_state_dict below
        restored, self._restored = self._restored, None
        if restored is None:
            self.shadow = {name: p.detach().clone() for name, p in self._params.items()}
            return
        if set(restored) != set(self._params):
            missing = sorted(set(self._params) - set(restored))
            extra = sorted(set(restored) - set(self._params))
            raise CheckpointError(
                f"EMAHook state does not fit the model: missing {missing}, unexpected {extra}"
            )
        self.shadow = {
            name: restored[name].to(p.device, p.dtype) for name, p in self._params.items()
        }

    def after_train_iter(self, runner: BaseRunner) -> None:
        step = runner.iter
        momentum = min(self.momentum, (1 + step) / (self.warm_up + step))
        if step % self.interval != 0:
            return
        with torch.no_grad():
            for name, param in self._params.items():
                self.shadow[name].mul_(1 - momentum).add_(param, alpha=momentum)

    def after_train_epoch(self, runner: BaseRunner) -> None:
        if not self.swapped:
            self._swap()

    def before_train_epoch(self, runner: BaseRunner) -> None:
        if self.swapped:
            self._swap()

    def _swap(self) -> None:
        with torch.no_grad():
            for name, param in self._params.items():
                raw = param.detach().clone()
                param.copy_(self.shadow[name])
                self.shadow[name].copy_(raw)
        self.swapped = not self.swapped

    # -- state ---------------------------------------------------------------

    def state_dict(self) -> dict[str, object]:
        """The shadow weights and whether they are swapped into the model."""
        if not self.shadow:
            return {}
        return {"shadow": dict(self.shadow), "swapped": self.swapped}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what `state_dict` returned (checked against the model in ``before_run``)."""
        shadow = state.get("shadow")
        if shadow is None:
            return
        if not isinstance(shadow, dict) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in shadow.items()
        ):
            raise CheckpointError("EMAHook state: 'shadow' is not a dict of tensors")
        self._restored = dict(shadow)
        self.swapped = bool(state.get("swapped", False))
