"""Distributed model wrapper: DistributedDataParallel that keeps mmcv's train_step/val_step.

The runner calls ``model.train_step(data_batch, optimizer)``; plain DDP only
synchronises what goes through its ``forward``. `StepDistributedDataParallel`
wraps the model in a tiny module whose ``forward(step, ...)`` calls the model's
``train_step``/``val_step``, and puts DDP around that, so every step runs
inside DDP's forward (gradient all-reduce hooks armed, buffers broadcast from
rank 0) without touching DDP's private methods (mmcv's
``MMDistributedDataParallel`` re-implements them). `unwrap_model` returns the
user's model, whose ``state_dict`` keys carry no ``module.`` prefix.
"""

from __future__ import annotations

from typing import cast

from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["StepDistributedDataParallel", "unwrap_model"]


class _StepDispatch(nn.Module):
    """``forward(step, *args)`` = ``module.<step>(*args)``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, step: str, *args: object, **kwargs: object) -> object:
        return getattr(self.module, step)(*args, **kwargs)


class StepDistributedDataParallel(DistributedDataParallel):
    """DDP around a model with mmcv's ``train_step``/``val_step`` protocol.

    Args:
        module: The model (its parameters are broadcast from rank 0 here, as DDP does).
        **kwargs: Passed to `DistributedDataParallel` (``device_ids``,
            ``broadcast_buffers``, ``find_unused_parameters``, ...).
    """

    def __init__(self, module: nn.Module, **kwargs: object) -> None:
        super().__init__(_StepDispatch(module), **kwargs)  # type: ignore[arg-type]

    def train_step(self, *args: object, **kwargs: object) -> object:
        """The model's ``train_step`` through DDP's forward."""
        return self("train_step", *args, **kwargs)

    def val_step(self, *args: object, **kwargs: object) -> object:
        """The model's ``val_step`` through DDP's forward."""
        return self("val_step", *args, **kwargs)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's model inside DataParallel / DistributedDataParallel wrappers."""
    while True:
        if isinstance(model, nn.DataParallel | DistributedDataParallel):
            model = cast(nn.Module, model.module)
        elif isinstance(model, _StepDispatch):
            model = model.module
        else:
            return model
