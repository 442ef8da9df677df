"""LoggerHook: the base of every logger hook — when to average the log buffer and log.

Stage logic and helper names are mmcv 1.x's (``LoggerHook`` in
``mmcv/runner/hooks/logger/base.py``), which mmengine replaced with
``LoggerHook`` + ``MessageHub``; we keep mmcv's because ``log_config=dict(
interval=50, hooks=[...])`` configs and third-party logger hooks expect it:

- ``before_run``: the last logger hook (in priority order) gets ``reset_flag``, so
  the buffer's output is cleared once every logger has seen it;
- ``before_epoch``: clear the log buffer (history and output) — except when a
  resumed run re-fires ``before_train_epoch`` inside an epoch the interrupted
  process had already started (the buffer's checkpointed ``in_epoch`` flag says
  so): its restored history must stay, or the next averages would differ;
- ``after_train_iter``: every ``interval`` iterations (inner iterations when
  ``by_epoch``) average the last ``interval`` values, then `log`; at the end of an
  epoch also when ``ignore_last`` is False;
- ``after_train_epoch``: log whatever is ready; ``after_val_epoch``: average the
  whole val epoch and log.

Counters: in ``after_train_iter`` ``runner.iter`` is the 0-based index of the
iteration that just ran, so `get_iter` (the number logged) is ``runner.iter + 1``.

Tags (`get_loggable_tags`) are plain floats (tensors and NumPy scalars converted;
non-scalar, non-text values dropped — mmcv passed them through to backends that
then failed), plus ``learning_rate`` and ``momentum`` of the first param group.
"""

from __future__ import annotations

import numbers
from abc import ABCMeta, abstractmethod
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal, overload

import numpy as np
import torch
from torch.optim import Optimizer

from trackcfg.runner.hooks.hook import Hook

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner

__all__ = ["LoggerHook"]


class LoggerHook(Hook, metaclass=ABCMeta):
    """Base class of logger hooks (mmcv 1.x).

    Args:
        interval: Log every ``interval`` iterations.
        ignore_last: Skip the partial interval at the end of an epoch.
        reset_flag: Clear the buffer's output after logging (set automatically on the
            last logger hook in ``before_run``).
        by_epoch: Count ``interval`` within each epoch (``runner.inner_iter``) rather than
            over the whole run (``runner.iter``).
    """

    priority = "VERY_LOW"  # mmcv's register_logger_hooks priority: after everything else

    #: Whether `after_train_iter` calls `draw_progress` (a subclass with a live display,
    #: such as TextLoggerHook's progress line, sets it for its run). A flag instead of an
    #: overriding ``after_train_iter``: that stage runs every iteration, and one function
    #: less there counts against the overhead budget of issue 3.
    _show_progress: bool | None = False

    def __init__(
        self,
        interval: int = 10,
        ignore_last: bool = True,
        reset_flag: bool = False,
        by_epoch: bool = True,
    ) -> None:
        self.interval = interval
        self.ignore_last = ignore_last
        self.reset_flag = reset_flag
        self.by_epoch = by_epoch

    @abstractmethod
    def log(self, runner: BaseRunner) -> object:
        """Write ``runner.log_buffer.output`` (and counters) somewhere."""

    # -- helpers (mmcv names) ------------------------------------------------

    @staticmethod
    def is_scalar(val: object, include_np: bool = True, include_torch: bool = True) -> bool:
        """True for a number, a 0-d NumPy array, or a one-element tensor."""
        if isinstance(val, numbers.Number):
            return True
        if include_np and isinstance(val, np.ndarray) and val.ndim == 0:
            return True
        return include_torch and isinstance(val, torch.Tensor) and val.numel() == 1

    def get_mode(self, runner: BaseRunner) -> str:
        """``'train'`` or ``'val'`` (a val hook logging during training has no 'time').

        Raises:
            ValueError: ``runner.mode`` is neither ``'train'`` nor ``'val'``.
        """
        if runner.mode == "train":
            return "train" if "time" in runner.log_buffer.output else "val"
        if runner.mode == "val":
            return "val"
        raise ValueError(f"runner mode should be 'train' or 'val', but got {runner.mode!r}")

    def get_epoch(self, runner: BaseRunner) -> int:
        """The 1-based epoch being logged (in val mode the runner has already counted it).

        Raises:
            ValueError: ``runner.mode`` is neither ``'train'`` nor ``'val'``.
        """
        if runner.mode == "train":
            return int(runner.epoch) + 1
        if runner.mode == "val":
            return int(runner.epoch)
        raise ValueError(f"runner mode should be 'train' or 'val', but got {runner.mode!r}")

    def get_iter(self, runner: BaseRunner, inner_iter: bool = False) -> int:
        """The 1-based iteration: within the epoch if ``by_epoch and inner_iter``, else global."""
        if self.by_epoch and inner_iter:
            return int(runner.inner_iter) + 1
        return int(runner.iter) + 1

    def get_lr_tags(self, runner: BaseRunner) -> dict[str, float]:
        """``{'learning_rate': lr}`` or ``{'learning_rate/<name>': lr}`` per optimizer."""
        if runner.optimizer is None:
            return {}
        lrs: list[float] | Mapping[str, list[float]] = runner.current_lr()
        if isinstance(lrs, Mapping):
            return {f"learning_rate/{name}": float(value[0]) for name, value in lrs.items()}
        return {"learning_rate": float(lrs[0])}

    def get_momentum_tags(self, runner: BaseRunner) -> dict[str, float]:
        """``{'momentum': m}`` (``betas[0]`` for Adam-like optimizers, 0 when there is none)."""
        optimizer: Optimizer | Mapping[str, Optimizer] | None = runner.optimizer
        if optimizer is None:
            return {}
        if isinstance(optimizer, Mapping):
            return {
                f"momentum/{name}": _momentums(optim.param_groups)[0]
                for name, optim in optimizer.items()
            }
        return {"momentum": _momentums(optimizer.param_groups)[0]}

    @overload
    def get_loggable_tags(
        self,
        runner: BaseRunner,
        allow_scalar: bool = ...,
        allow_text: Literal[False] = ...,
        add_mode: bool = ...,
        tags_to_skip: Iterable[str] = ...,
    ) -> dict[str, float]: ...

    @overload
    def get_loggable_tags(
        self,
        runner: BaseRunner,
        allow_scalar: bool = ...,
        *,
        allow_text: bool,
        add_mode: bool = ...,
        tags_to_skip: Iterable[str] = ...,
    ) -> dict[str, float | str]: ...

    @overload
    def get_loggable_tags(
        self,
        runner: BaseRunner,
        allow_scalar: bool,
        allow_text: bool,
        add_mode: bool = ...,
        tags_to_skip: Iterable[str] = ...,
    ) -> dict[str, float | str]: ...

    def get_loggable_tags(
        self,
        runner: BaseRunner,
        allow_scalar: bool = True,
        allow_text: bool = False,
        add_mode: bool = True,
        tags_to_skip: Iterable[str] = ("time", "data_time"),
    ) -> dict[str, float] | dict[str, float | str]:
        """The buffer's output as ``'<mode>/<name>'`` tags, plus LR and momentum tags.

        Args:
            runner: The runner whose ``log_buffer.output`` is read.
            allow_scalar: Include numeric values.
            allow_text: Include string values.
            add_mode: Prefix names with ``train/`` or ``val/`` (see `get_mode`).
            tags_to_skip: Names left out (timings by default).

        Returns:
            Tag name to value; numbers as Python floats.
        """
        skip = set(tags_to_skip)
        tags: dict[str, float | str] = {}
        mode = self.get_mode(runner) if add_mode else ""
        for var, val in runner.log_buffer.output.items():
            if var in skip:
                continue
            value: float | str
            if self.is_scalar(val):
                if not allow_scalar:
                    continue
                value = _as_float(val)
            elif isinstance(val, str):
                if not allow_text:
                    continue
                value = val
            else:
                continue  # lists, dicts, tensors: no logger backend takes them as a tag
            tags[f"{mode}/{var}" if add_mode else var] = value
        tags.update(self.get_lr_tags(runner))
        tags.update(self.get_momentum_tags(runner))
        return tags

    # -- stages --------------------------------------------------------------

    def before_run(self, runner: BaseRunner) -> None:
        # The last logger hook clears the output, after every logger has read it.
        for hook in reversed(list(runner.hooks)):
            if isinstance(hook, LoggerHook):
                hook.reset_flag = True
                break

    def before_epoch(self, runner: BaseRunner) -> None:
        runner.log_buffer.clear()  # logs of the previous epoch

    def before_train_epoch(self, runner: BaseRunner) -> None:
        buffer = runner.log_buffer
        if buffer.in_epoch:
            # Re-fired by a resume from inside this epoch (or already cleared by another
            # logger hook this epoch): keep the history.
            return
        self.before_epoch(runner)
        buffer.in_epoch = True

    def after_train_iter(self, runner: BaseRunner) -> None:
        # Runs every iteration and logs only every `interval`: the cheap tests come first
        # (same conditions as Hook.every_n_inner_iters/every_n_iters, inlined), and
        # end_of_epoch (a len() of the loader) is only asked when ignore_last is False.
        interval = self.interval
        count = runner.inner_iter if self.by_epoch else runner.iter
        if (interval > 0 and (count + 1) % interval == 0) or (
            not self.ignore_last and self.end_of_epoch(runner)
        ):
            # a short last interval still averages `interval` values (mmcv: "not precise
            # but more stable")
            runner.log_buffer.average(interval)
        if runner.log_buffer.ready:
            self.log(runner)
            if self.reset_flag:
                runner.log_buffer.clear_output()
        if self._show_progress:
            self.draw_progress(runner)

    def draw_progress(self, runner: BaseRunner) -> None:
        """Update a live display after each training iteration (when ``_show_progress``)."""

    def after_train_epoch(self, runner: BaseRunner) -> None:
        runner.log_buffer.in_epoch = False
        if runner.log_buffer.ready:
            self.log(runner)
            if self.reset_flag:
                runner.log_buffer.clear_output()

    def after_val_epoch(self, runner: BaseRunner) -> None:
        runner.log_buffer.average()
        self.log(runner)
        if self.reset_flag:
            runner.log_buffer.clear_output()


def _as_float(val: object) -> float:
    if isinstance(val, torch.Tensor):
        return float(val.item())
    if isinstance(val, np.ndarray):
        return float(val.reshape(()))
    if isinstance(val, numbers.Real):
        return float(val)
    if isinstance(val, numbers.Complex):
        raise TypeError(f"cannot log a complex number as a tag: {val!r}")
    raise TypeError(f"not a scalar: {type(val).__name__}")


def _momentums(param_groups: list[dict[str, object]]) -> list[float]:
    """mmcv's ``current_momentum``: ``momentum``, else ``betas[0]``, else 0."""
    out: list[float] = []
    for group in param_groups:
        momentum = group.get("momentum")
        betas = group.get("betas")
        if isinstance(momentum, int | float):
            out.append(float(momentum))
        elif isinstance(betas, tuple | list) and betas:
            out.append(float(betas[0]))
        else:
            out.append(0.0)
    return out
