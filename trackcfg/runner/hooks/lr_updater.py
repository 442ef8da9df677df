"""LR updater hooks: mmcv 1.x's learning-rate schedules, selected by ``lr_config=dict(policy=...)``.

``lr_config=dict(policy='step', step=[8, 11], warmup='linear', warmup_iters=500,
warmup_ratio=0.001)`` builds `StepLrUpdaterHook` (the runner turns ``policy`` into
``'<Policy>LrUpdaterHook'`` as mmcv does). The numbers are mmcv 1.x's: we follow
mmcv rather than mmengine's ``ParamScheduler`` because the config keys users bring
are mmcv's, and mmengine's schedulers are stateful (``last_epoch``) where mmcv's
are not.

The rule that makes resume exact: every learning rate is a pure function of the
runner's counters (``epoch`` or ``iter``) and the base LR of each param group.
The base LR is stored in the optimizer's own param groups as ``initial_lr`` (the
key torch schedulers use), so it is saved and restored with the optimizer state;
the hooks keep no other state, and their `state_dict` is empty. ``base_lr`` and
``regular_lr`` are recomputed, never trusted across a resume.

Firing (as mmcv): ``before_run`` records base LRs; with ``by_epoch=True`` the
regular LR is set in ``before_train_epoch`` and warmup (counted in iterations)
adjusts it in ``before_train_iter``; with ``by_epoch=False`` both happen in
``before_train_iter``. With ``by_epoch=True`` and no warmup, ``before_train_iter``
returns at once.
"""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Literal, TypedDict, Unpack

from torch.optim import Optimizer

from trackcfg.errors import (
    ArgumentKeyError,
    ArgumentTypeError,
    ArgumentValueError,
    RunnerError,
)
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.hook import Hook

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner

__all__ = [
    "CosineAnnealingLrUpdaterHook",
    "CosineRestartLrUpdaterHook",
    "CyclicLrUpdaterHook",
    "ExpLrUpdaterHook",
    "FixedLrUpdaterHook",
    "FlatCosineAnnealingLrUpdaterHook",
    "InvLrUpdaterHook",
    "LrUpdaterHook",
    "OneCycleLrUpdaterHook",
    "PolyLrUpdaterHook",
    "StepLrUpdaterHook",
    "annealing_cos",
    "annealing_linear",
    "check_cyclic_args",
    "checked_steps",
    "cyclic_phases",
    "cyclic_target_ratio",
    "cyclic_value",
    "steps_passed",
]

#: One LR per param group, or per optimizer name when ``runner.optimizer`` is a dict.
LrGroups = list[float] | dict[str, list[float]]

WarmupKind = Literal["constant", "linear", "exp"]
_WARMUPS: tuple[str, ...] = ("constant", "linear", "exp")


class LrUpdaterArgs(TypedDict, total=False):
    """The `LrUpdaterHook` arguments every schedule accepts as keywords."""

    by_epoch: bool
    warmup: WarmupKind | None
    warmup_iters: int
    warmup_ratio: float
    warmup_by_epoch: bool


def annealing_cos(start: float, end: float, factor: float, weight: float = 1.0) -> float:
    """Cosine interpolation from ``start`` (factor 0) to ``end`` (factor 1), as mmcv.

    Example:
        >>> annealing_cos(1.0, 0.0, 0.5)
        0.5
    """
    cos_out = math.cos(math.pi * factor) + 1
    return end + 0.5 * weight * (start - end) * cos_out


def annealing_linear(start: float, end: float, factor: float) -> float:
    """Linear interpolation from ``start`` (factor 0) to ``end`` (factor 1), as mmcv."""
    return start + (end - start) * factor


def _optimizers(runner: BaseRunner) -> dict[str, Optimizer] | Optimizer:
    optimizer = runner.optimizer
    if optimizer is None:
        raise RunnerError(
            "an LR updater hook needs runner.optimizer", hint="give the runner an optimizer"
        )
    return optimizer


def _epoch_length(runner: BaseRunner) -> int:
    data_loader = runner.data_loader
    if not isinstance(data_loader, Sized):
        raise RunnerError(
            "warmup_by_epoch needs a data loader with a length (len(runner.data_loader))"
        )
    return len(data_loader)


class LrUpdaterHook(Hook, metaclass=ABCMeta):
    """Base class of the LR schedules: warmup, per-epoch or per-iteration updates.

    Subclasses implement `get_lr` (the LR of one param group, without warmup).

    Args:
        by_epoch: Update the LR at every epoch (``runner.epoch`` drives the schedule)
            instead of every iteration (``runner.iter``).
        warmup: ``None``, ``'constant'``, ``'linear'`` or ``'exp'``.
        warmup_iters: Length of the warmup, in iterations (or epochs with
            ``warmup_by_epoch``).
        warmup_ratio: The warmup starts at ``warmup_ratio * regular_lr``.
        warmup_by_epoch: Count ``warmup_iters`` in epochs (converted to iterations with
            ``len(runner.data_loader)``).

    Raises:
        ArgumentValueError: an unknown warmup kind, ``warmup_iters <= 0`` or a ratio
            outside (0, 1].
    """

    priority = "VERY_HIGH"  # mmcv's register_lr_hook priority: before the optimizer steps

    def __init__(
        self,
        by_epoch: bool = True,
        warmup: WarmupKind | None = None,
        warmup_iters: int = 0,
        warmup_ratio: float = 0.1,
        warmup_by_epoch: bool = False,
    ) -> None:
        if warmup is not None:
            if warmup not in _WARMUPS:
                raise ArgumentValueError(
                    f"{warmup!r} is not a supported warmup",
                    key_path="warmup",
                    hint="use one of " + ", ".join(repr(w) for w in _WARMUPS) + " or None",
                )
            if warmup_iters <= 0:
                raise ArgumentValueError(
                    f"must be a positive integer, got {warmup_iters!r}", key_path="warmup_iters"
                )
            if not 0 < warmup_ratio <= 1.0:
                raise ArgumentValueError(
                    f"must be in (0, 1], got {warmup_ratio!r}", key_path="warmup_ratio"
                )
        self.by_epoch = by_epoch
        self.warmup = warmup
        self.warmup_ratio = warmup_ratio
        self.warmup_by_epoch = warmup_by_epoch
        # mmcv's attributes: with warmup_by_epoch, warmup_iters is None until the epoch
        # length is known.
        self.warmup_epochs: int | None = warmup_iters if warmup_by_epoch else None
        self.warmup_iters: int | None = None if warmup_by_epoch else warmup_iters
        self.base_lr: LrGroups = []  # initial LR of every param group
        self.regular_lr: LrGroups = []  # the scheduled LR without warmup

    # -- the schedule --------------------------------------------------------

    @abstractmethod
    def get_lr(self, runner: BaseRunner, base_lr: float) -> float:
        """The LR of a param group whose base LR is ``base_lr`` at the runner's counters."""

    def get_regular_lr(self, runner: BaseRunner) -> LrGroups:
        """`get_lr` for every param group (of every optimizer)."""
        if isinstance(self.base_lr, dict):
            return {
                name: [self.get_lr(runner, lr) for lr in lrs] for name, lrs in self.base_lr.items()
            }
        # a loop, not a comprehension: in Python 3.11 a comprehension is one more
        # function call, and this runs at every iteration of a per-iteration schedule
        get_lr = self.get_lr
        lrs: list[float] = []
        for lr in self.base_lr:
            lrs.append(get_lr(runner, lr))
        return lrs

    def get_warmup_lr(self, cur_iters: int) -> LrGroups:
        """The regular LRs scaled by the warmup factor at iteration ``cur_iters``."""

        def scale(regular: list[float]) -> list[float]:
            warmup_iters = self.warmup_iters or 1
            if self.warmup == "constant":
                return [lr * self.warmup_ratio for lr in regular]
            if self.warmup == "linear":
                k = (1 - cur_iters / warmup_iters) * (1 - self.warmup_ratio)
                return [lr * (1 - k) for lr in regular]
            # 'exp'
            k = self.warmup_ratio ** (1 - cur_iters / warmup_iters)
            return [lr * k for lr in regular]

        if isinstance(self.regular_lr, dict):
            return {name: scale(lrs) for name, lrs in self.regular_lr.items()}
        return scale(self.regular_lr)

    # -- stages --------------------------------------------------------------

    def before_run(self, runner: BaseRunner) -> None:
        # setdefault: after a resume the optimizer state already carries the original
        # initial_lr, and the base LR must come from it, not from the current (decayed) lr.
        optimizer = _optimizers(runner)
        if isinstance(optimizer, dict):
            base: dict[str, list[float]] = {}
            for name, optim in optimizer.items():
                for group in optim.param_groups:
                    group.setdefault("initial_lr", group["lr"])
                base[name] = [float(group["initial_lr"]) for group in optim.param_groups]
            self.base_lr = base
        else:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
            self.base_lr = [float(group["initial_lr"]) for group in optimizer.param_groups]

    def before_train_epoch(self, runner: BaseRunner) -> None:
        self._resolve_warmup_iters(runner)
        if not self.by_epoch:
            return
        self.regular_lr = self.get_regular_lr(runner)
        self._set_lr(runner, self.regular_lr)

    def before_train_iter(self, runner: BaseRunner) -> None:
        if self.by_epoch and self.warmup is None:
            return  # the LR changes only per epoch: nothing to do each iteration
        cur_iter = runner.iter
        warmup_iters = self.warmup_iters
        if warmup_iters is None:  # (`_resolve_warmup_iters` inline: runs every iteration)
            warmup_iters = self._resolve_warmup_iters(runner)
        if not self.by_epoch:
            self.regular_lr = self.get_regular_lr(runner)
            if self.warmup is None or cur_iter >= warmup_iters:
                self._set_lr(runner, self.regular_lr)
            else:
                self._set_lr(runner, self.get_warmup_lr(cur_iter))
            return
        if self.warmup is None or cur_iter > warmup_iters:
            return
        # mmcv reuses the regular LR computed in before_train_epoch; we recompute it (a pure
        # function of runner.epoch) because after a mid-epoch resume that stage did not run.
        self.regular_lr = self.get_regular_lr(runner)
        if cur_iter == warmup_iters:
            self._set_lr(runner, self.regular_lr)
        else:
            self._set_lr(runner, self.get_warmup_lr(cur_iter))

    # -- helpers -------------------------------------------------------------

    def _resolve_warmup_iters(self, runner: BaseRunner) -> int:
        if self.warmup_iters is None:
            self.warmup_iters = (self.warmup_epochs or 0) * _epoch_length(runner)
        return self.warmup_iters

    @staticmethod
    def _set_lr(runner: BaseRunner, lr_groups: LrGroups) -> None:
        optimizer = runner.optimizer
        if optimizer is None:
            optimizer = _optimizers(runner)  # raises
        if isinstance(optimizer, dict):
            if not isinstance(lr_groups, dict):
                raise _optimizer_changed()
            for name, optim in optimizer.items():
                for group, lr in zip(optim.param_groups, lr_groups[name], strict=True):
                    group["lr"] = lr
        else:
            if isinstance(lr_groups, dict):
                raise _optimizer_changed()
            for group, lr in zip(optimizer.param_groups, lr_groups, strict=True):
                group["lr"] = lr


def _optimizer_changed() -> RunnerError:
    return RunnerError(
        "runner.optimizer changed between a dict of optimizers and a single one since "
        "before_run, so its base LRs no longer fit",
        hint="set runner.optimizer before the run starts",
    )


def _progress(hook: LrUpdaterHook, runner: BaseRunner) -> int:
    return int(runner.epoch if hook.by_epoch else runner.iter)


def _max_progress(hook: LrUpdaterHook, runner: BaseRunner) -> int:
    max_progress = runner.max_epochs if hook.by_epoch else runner.max_iters
    if max_progress is None:
        unit = "max_epochs" if hook.by_epoch else "max_iters"
        raise RunnerError(
            f"{type(hook).__name__} needs runner.{unit}",
            hint="use by_epoch=False with an IterBasedRunner" if hook.by_epoch else None,
        )
    return max_progress


def _check_min_lr(min_lr: float | None, min_lr_ratio: float | None) -> None:
    if (min_lr is None) == (min_lr_ratio is None):
        raise ArgumentValueError(
            "give exactly one of min_lr and min_lr_ratio",
            key_path="min_lr_ratio" if min_lr_ratio is not None else "min_lr",
        )


@HOOKS.register_module()
class FixedLrUpdaterHook(LrUpdaterHook):
    """Constant LR (warmup still applies): ``lr_config=dict(policy='fixed')``."""

    def get_lr(self, runner: BaseRunner, base_lr: float) -> float:
        return base_lr


def checked_steps(step: object) -> int | list[int]:
    """A step schedule's ``step`` argument, checked: an int or a list of positive ints.

    Shared by the LR and momentum step policies.

    Raises:
        ArgumentTypeError: ``step`` is neither an int nor a list of ints.
        ArgumentValueError: a step is not positive.
    """
    if isinstance(step, bool) or not isinstance(step, int | list | tuple):
        raise ArgumentTypeError(
            f"must be an int or a list of ints, got {type(step).__name__}", key_path="step"
        )
    steps = [step] if isinstance(step, int) else list(step)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in steps):
        raise ArgumentTypeError(f"must be an int or a list of ints, got {step!r}", key_path="step")
    if not all(s > 0 for s in steps):
        raise ArgumentValueError(f"every step must be positive, got {step!r}", key_path="step")
    return step if isinstance(step, int) else steps


def steps_passed(step: int | list[int], progress: int) -> int:
    """How many decays ``progress`` epochs/iterations have reached: every ``step``, or
    the number of milestones already reached."""
    if isinstance(step, int):
        return progress // step
    return next((i for i, s in enumerate(step) if progress < s), len(step))


@HOOKS.register_module()
class StepLrUpdaterHook(LrUpdaterHook):
    """Multiply the LR by ``gamma`` at every step: ``lr_config=dict(policy='step', step=[8, 11])``.

    Args:
        step: An int decays every ``step`` epochs/iterations; a list decays at each listed
            epoch/iteration.
        gamma: Decay factor.
        min_lr: Clip the LR from below, if given.
        **kwargs: `LrUpdaterHook` arguments (``by_epoch``, ``warmup``, ...).

    Raises:
        ArgumentTypeError: ``step`` is neither an int nor a list of ints.
        ArgumentValueError: a step is not positive.
    """

    def __init__(
        self,
        step: int | Sequence[int],
        gamma: float = 0.1,
        min_lr: float | None = None,
        **kwargs: Unpack[LrUpdaterArgs],
    ) -> None:
        self.step = checked_steps(step)
        self.gamma = gamma
        self.min_lr = min_lr
        super().__init__(**kwargs)

    def get_lr(self, runner: BaseRunner, base_lr: float) -> float:
        progress = _progress(self, runner)
        lr = base_lr * self.gamma ** steps_passed(self.step, progress)
        if self.min_lr is not None:
            lr = max(lr, self.min_lr)
        return lr


@HOOKS.register_module()
class ExpLrUpdaterHook(LrUpdaterHook):
    """``lr = base_lr * gamma ** progress``: ``lr_config=dict(policy='exp', gamma=0.9)``."""

    def __init__(self, gamma: float, **kwargs: Unpack[LrUpdaterArgs]) -> None:
        self.gamma = gamma
        super().__init__(**kwargs)

    def get_lr(self, runner: BaseRunner, base_lr: float) -> float:
        return float(base_lr * self.gamma ** _progress(self, runner))


@HOOKS.register_module()
class PolyLrUpdaterHook(LrUpdaterHook):
    """``(base_lr - min_lr) * (1 - progress / max_progress) ** power + min_lr``."""

    def __init__(
        self, power: float = 1.0, min_lr: float = 0.0, **kwargs: Unpack[LrUpdaterArgs]
    ) -> None:
        self.power = power
        self.min_lr = min_lr
        super().__init__(**kwargs)

    def get_lr(self, runner: BaseRunner, base_lr: float) -> float:
        coeff = (1 - _progress(self, runner) / _max_progress(self, runner)) ** self.power
        return float((base_lr - self.min_lr) * coeff + self.min_lr)


@HOOKS.register_module()
class InvLrUpdaterHook(LrUpdaterHook):
    """``base_lr * (1 + gamma * progress) ** -power`` (Caffe's "inv" policy)."""

    def __init__(self, gamma: float, power: float = 1.0, **kwargs: Unpack[LrUpdaterArgs]) -> None:
        self.gamma = gamma
        self.power = power
        super().__init__(**kwargs)

    def get_lr(self, runner: BaseRunner, base_lr: float) -> float:
        return float(base_lr * (1 + self.gamma * _progress(self, runner)) ** (-self.power))


@HOOKS.register_module()
class CosineAnnealingLrUpdaterHook(LrUpdaterHook):
    """Cosine decay from the base LR to ``min_lr`` (or ``base_lr * min_lr_ratio``).

    ``lr_config=dict(policy='CosineAnnealing', min_lr=0)``. The LR reaches its minimum at
    ``progress == max_progress`` (one past the last epoch/iteration), as in mmcv.

    Raises:
        ArgumentValueError: both or neither of ``min_lr`` and ``min_lr_ratio`` are given.
    """

    def __init__(
        self,
        min_lr: float | None = None,
        min_lr_ratio: float | None = None,
        **kwargs: Unpack[LrUpdaterArgs],
    ) -> None:
        _check_min_lr(min_lr, min_lr_ratio)
        self.min_lr = min_lr
        self.min_lr_ratio = min_lr_ratio
        super().__init__(**kwargs)

    def get_lr(self, runner: BaseRunner, base_lr: float) -> float:
        target = _target_lr(base_lr, self.min_lr, self.min_lr_ratio)
        return annealing_cos(base_lr, target, _progress(self, runner) / _max_progress(self, runner))


@HOOKS.register_module()
class FlatCosineAnnealingLrUpdaterHook(LrUpdaterHook):
    """Flat at the base LR for ``start_percent`` of training, then cosine to the minimum.

    Raises:
        ArgumentValueError: ``start_percent`` outside [0, 1], or both/neither of the minimums.
    """

    def __init__(
        self,
        start_percent: float = 0.75,
        min_lr: float | None = None,
        min_lr_ratio: float | None = None,
        **kwargs: Unpack[LrUpdaterArgs],
    ) -> None:
        _check_min_lr(min_lr, min_lr_ratio)
        if not 0 <= start_percent <= 1:
            raise ArgumentValueError(
                f"must be in [0, 1], got {start_percent!r}", key_path="start_percent"
            )
        self.start_percent = start_percent
        self.min_lr = min_lr
        self.min_lr_ratio = min_lr_ratio
        super().__init__(**kwargs)

    def get_lr(self, runner: BaseRunner, base_lr: float) -> float:
        max_progress = _max_progress(self, runner)
        start = round(max_progress * self.start_percent)
        progress = _progress(self, runner) - start
        if progress < 0:
            return base_lr
        target = _target_lr(base_lr, self.min_lr, self.min_lr_ratio)
        return annealing_cos(base_lr, target, progress / (max_progress - start))


@HOOKS.register_module()
class CosineRestartLrUpdaterHook(LrUpdaterHook):
    """Cosine annealing restarted after each period (SGDR).

    Args:
        periods: Length of each cosine cycle, in epochs/iterations.
        restart_weights: Scale of the LR at each restart (same length as ``periods``).
        min_lr: The LR at the end of every cycle, or
        min_lr_ratio: ... that LR as a ratio of the base LR.
        **kwargs: `LrUpdaterHook` arguments.

    Raises:
        ArgumentValueError: mismatched lengths, both/neither minimums, or (from
            `get_lr`) a progress beyond the sum of the periods.
    """

    def __init__(
        self,
        periods: Sequence[int],
        restart_weights: Sequence[float] = (1,),
        min_lr: float | None = None,
        min_lr_ratio: float | None = None,
        **kwargs: Unpack[LrUpdaterArgs],
    ) -> None:
        _check_min_lr(min_lr, min_lr_ratio)
        if len(periods) != len(restart_weights):
            raise ArgumentValueError(
                f"must have the same length as periods ({len(periods)}), "
                f"got {len(restart_weights)} value(s)",
                key_path="restart_weights",
            )
        self.periods = list(periods)
        self.restart_weights = list(restart_weights)
        self.min_lr = min_lr
        self.min_lr_ratio = min_lr_ratio
        self.cumulative_periods = [sum(self.periods[: i + 1]) for i in range(len(self.periods))]
        super().__init__(**kwargs)

    def get_lr(self, runner: BaseRunner, base_lr: float) -> float:
        progress = _progress(self, runner)
        target = _target_lr(base_lr, self.min_lr, self.min_lr_ratio)
        idx = next((i for i, end in enumerate(self.cumulative_periods) if progress < end), None)
        if idx is None:
            raise ArgumentValueError(
                f"cover {self.cumulative_periods[-1]} step(s) in all, the run reached {progress}",
                key_path="periods",
                hint="make the periods cover the whole run",
            )
        nearest_restart = 0 if idx == 0 else self.cumulative_periods[idx - 1]
        alpha = min((progress - nearest_restart) / self.periods[idx], 1)
        return annealing_cos(base_lr, target, alpha, self.restart_weights[idx])


def _target_lr(base_lr: float, min_lr: float | None, min_lr_ratio: float | None) -> float:
    if min_lr_ratio is not None:
        return base_lr * min_lr_ratio
    return float(min_lr or 0.0)


def cyclic_target_ratio(target_ratio: float | Sequence[float]) -> tuple[float, float]:
    """mmcv's ``target_ratio`` forms: a float ``r`` means ``(r, r / 1e5)``."""
    if isinstance(target_ratio, int | float) and not isinstance(target_ratio, bool):
        return float(target_ratio), float(target_ratio) / 1e5
    if isinstance(target_ratio, Sequence) and len(target_ratio) in (1, 2):
        if len(target_ratio) == 1:
            return float(target_ratio[0]), float(target_ratio[0]) / 1e5
        return float(target_ratio[0]), float(target_ratio[1])
    raise ArgumentValueError(
        f"must be a float or a tuple of one or two floats, got {target_ratio!r}",
        key_path="target_ratio",
    )


def cyclic_phases(
    max_iters: int, cyclic_times: int, step_ratio_up: float, target_ratio: tuple[float, float]
) -> tuple[int, list[tuple[int, int, float, float]]]:
    """mmcv's cyclic schedule: (iterations per cycle, [(start, end, start ratio, end ratio)]).

    Shared by `CyclicLrUpdaterHook` and ``CyclicMomentumUpdaterHook``.

    Raises:
        ArgumentValueError: a cycle shorter than one iteration.
    """
    per_cycle = max_iters // cyclic_times
    if per_cycle < 1:
        raise ArgumentValueError(
            f"{cyclic_times} cycles do not fit in {max_iters} iteration(s)",
            key_path="cyclic_times",
        )
    up = int(step_ratio_up * per_cycle)
    return per_cycle, [(0, up, 1.0, target_ratio[0]), (up, per_cycle, *target_ratio)]


def cyclic_value(
    base: float,
    cur_iter: int,
    per_cycle: int,
    phases: list[tuple[int, int, float, float]],
    gamma: float,
    anneal: Callable[[float, float, float], float],
) -> float:
    """The cyclic schedule's value at ``cur_iter`` (mmcv's ``get_lr``/``get_momentum``)."""
    curr_iter = cur_iter % per_cycle
    scale = gamma ** (cur_iter // per_cycle)
    for start_iter, end_iter, start_ratio, end_ratio in phases:
        if start_iter <= curr_iter < end_iter:
            if start_iter == 0:
                end_ratio = 1 - scale + end_ratio * scale
            else:
                start_ratio = 1 - scale + start_ratio * scale
            return anneal(
                base * start_ratio,
                base * end_ratio,
                (curr_iter - start_iter) / (end_iter - start_iter),
            )
    raise RunnerError(f"the cyclic schedule has no phase for iteration {cur_iter}")


def check_cyclic_args(
    step_ratio_up: float, gamma: float, anneal_strategy: str, by_epoch: bool
) -> None:
    """Reject the cyclic arguments mmcv asserts on.

    Raises:
        ArgumentValueError: ``step_ratio_up`` outside [0, 1), ``gamma`` outside (0, 1],
            an unknown ``anneal_strategy``, or ``by_epoch=True``.
    """
    if not 0 <= step_ratio_up < 1.0:
        raise ArgumentValueError(
            f"must be in [0, 1), got {step_ratio_up!r}", key_path="step_ratio_up"
        )
    if not 0 < gamma <= 1:
        raise ArgumentValueError(f"must be in (0, 1], got {gamma!r}", key_path="gamma")
    if anneal_strategy not in ("cos", "linear"):
        raise ArgumentValueError(
            f"must be 'cos' or 'linear', got {anneal_strategy!r}", key_path="anneal_strategy"
        )
    if by_epoch:
        raise ArgumentValueError(
            "cyclic schedules only support by_epoch=False", key_path="by_epoch"
        )


@HOOKS.register_module()
class CyclicLrUpdaterHook(LrUpdaterHook):
    """Cyclic LR (Smith 2017): ``lr_config=dict(policy='cyclic', target_ratio=(10, 1e-4))``.

    Each of ``cyclic_times`` cycles goes from the base LR to ``target_ratio[0]`` times
    it over ``step_ratio_up`` of the cycle, then to ``target_ratio[1]`` times it; with
    ``gamma < 1`` each cycle's amplitude shrinks. Per iteration only, as in mmcv.

    Args:
        target_ratio: (high, low) relative to the base LR; a float ``r`` is ``(r, r / 1e5)``.
        cyclic_times: Number of cycles in ``runner.max_iters``.
        step_ratio_up: Fraction of a cycle spent in the first phase.
        anneal_strategy: ``'cos'`` or ``'linear'``.
        gamma: Cycle decay ratio, in (0, 1].
        **kwargs: `LrUpdaterHook` arguments; ``by_epoch`` must be False (the default).

    Raises:
        ArgumentValueError: as `check_cyclic_args`, or a bad ``target_ratio``.
    """

    def __init__(
        self,
        target_ratio: float | Sequence[float] = (10.0, 1e-4),
        cyclic_times: int = 1,
        step_ratio_up: float = 0.4,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        gamma: float = 1.0,
        **kwargs: Unpack[LrUpdaterArgs],
    ) -> None:
        check_cyclic_args(
            step_ratio_up, gamma, anneal_strategy, kwargs.setdefault("by_epoch", False)
        )
        self.target_ratio = cyclic_target_ratio(target_ratio)
        self.cyclic_times = cyclic_times
        self.step_ratio_up = step_ratio_up
        self.gamma = gamma
        self.anneal_func = annealing_cos if anneal_strategy == "cos" else annealing_linear
        self.max_iter_per_phase = 1
        self.lr_phases: list[tuple[int, int, float, float]] = []
        super().__init__(**kwargs)

    def before_run(self, runner: BaseRunner) -> None:
        super().before_run(runner)
        max_iters = runner.max_iters
        if max_iters is None:
            raise RunnerError("CyclicLrUpdaterHook needs runner.max_iters")
        # rebuilt, not appended to as in mmcv: a second run must not follow stale phases
        self.max_iter_per_phase, self.lr_phases = cyclic_phases(
            max_iters, self.cyclic_times, self.step_ratio_up, self.target_ratio
        )

    def get_lr(self, runner: BaseRunner, base_lr: float) -> float:
        return cyclic_value(
            base_lr,
            runner.iter,
            self.max_iter_per_phase,
            self.lr_phases,
            self.gamma,
            self.anneal_func,
        )


#: ``max_lr`` of `OneCycleLrUpdaterHook`: one value, one per param group, or per optimizer.
MaxLr = float | Sequence[float] | Mapping[str, float | Sequence[float]]


@HOOKS.register_module()
class OneCycleLrUpdaterHook(LrUpdaterHook):
    """The 1cycle policy (Smith & Topin), per iteration, with mmcv's (and torch's) phases.

    ``lr_config=dict(policy='OneCycle', max_lr=0.01)``: the LR rises from
    ``max_lr / div_factor`` to ``max_lr`` over ``pct_start`` of the steps, then falls to
    ``max_lr / div_factor / final_div_factor``. Same numbers as
    ``torch.optim.lr_scheduler.OneCycleLR`` (which mmcv mirrors), but a pure function
    of ``runner.iter``. Unlike the other schedules, the base LR comes from ``max_lr``,
    not from the optimizer's configured LR.

    Args:
        max_lr: The peak LR: one float, one per param group, or a dict per optimizer name.
        total_steps: Length of the cycle; default ``runner.max_iters``.
        pct_start: Fraction of the cycle spent increasing the LR.
        anneal_strategy: ``'cos'`` or ``'linear'``.
        div_factor: The starting LR is ``max_lr / div_factor``.
        final_div_factor: The final LR is the starting LR / ``final_div_factor``.
        three_phase: Rise, fall back symmetrically, then anneal to the final LR.
        **kwargs: `LrUpdaterHook` arguments; ``by_epoch`` must be False (the default).

    Raises:
        ArgumentValueError: ``by_epoch=True``, ``pct_start`` outside [0, 1], an unknown
            ``anneal_strategy``, or (in ``before_run``) ``total_steps < max_iters`` or a
            ``max_lr`` list whose length differs from the number of param groups.
        ArgumentKeyError: (in ``before_run``) a ``max_lr`` dict without an entry for
            one of the optimizers.
    """

    def __init__(
        self,
        max_lr: MaxLr,
        total_steps: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        **kwargs: Unpack[LrUpdaterArgs],
    ) -> None:
        if kwargs.setdefault("by_epoch", False):
            raise ArgumentValueError(
                "OneCycleLrUpdaterHook only supports by_epoch=False", key_path="by_epoch"
            )
        if not 0 <= pct_start <= 1:
            raise ArgumentValueError(f"must be in [0, 1], got {pct_start!r}", key_path="pct_start")
        if anneal_strategy not in ("cos", "linear"):
            raise ArgumentValueError(
                f"must be 'cos' or 'linear', got {anneal_strategy!r}", key_path="anneal_strategy"
            )
        self.max_lr = max_lr
        self.total_steps = total_steps
        self.pct_start = pct_start
        self.anneal_func: Callable[[float, float, float], float] = (
            annealing_cos if anneal_strategy == "cos" else annealing_linear
        )
        self.div_factor = div_factor
        self.final_div_factor = final_div_factor
        self.three_phase = three_phase
        #: (end iteration, start factor, end factor) of each phase; from before_run
        self.lr_phases: list[tuple[float, float, float]] = []
        super().__init__(**kwargs)

    def before_run(self, runner: BaseRunner) -> None:
        max_iters = _max_progress(self, runner)
        total_steps = self.total_steps if self.total_steps is not None else max_iters
        if total_steps < max_iters:
            raise ArgumentValueError(
                f"must be at least the runner's max_iters {max_iters}, got {total_steps}",
                key_path="total_steps",
            )
        optimizer = _optimizers(runner)
        if isinstance(optimizer, dict):
            base: dict[str, list[float]] = {}
            for name, optim in optimizer.items():
                base[name] = [lr / self.div_factor for lr in self._max_lrs(name, optim)]
                for group, lr in zip(optim.param_groups, base[name], strict=True):
                    group.setdefault("initial_lr", lr)
            self.base_lr = base
        else:
            lrs = [lr / self.div_factor for lr in self._max_lrs(None, optimizer)]
            for group, lr in zip(optimizer.param_groups, lrs, strict=True):
                group.setdefault("initial_lr", lr)
            self.base_lr = lrs
        up_end = float(self.pct_start * total_steps) - 1
        if self.three_phase:
            self.lr_phases = [
                (up_end, 1.0, self.div_factor),
                (float(2 * self.pct_start * total_steps) - 2, self.div_factor, 1.0),
                (total_steps - 1, 1.0, 1 / self.final_div_factor),
            ]
        else:
            self.lr_phases = [
                (up_end, 1.0, self.div_factor),
                (total_steps - 1, self.div_factor, 1 / self.final_div_factor),
            ]

    def get_lr(self, runner: BaseRunner, base_lr: float) -> float:
        cur_iter = int(runner.iter)
        start_iter = 0.0
        for end_iter, start_factor, end_factor in self.lr_phases:
            if cur_iter <= end_iter:
                pct = (cur_iter - start_iter) / (end_iter - start_iter)
                return self.anneal_func(base_lr * start_factor, base_lr * end_factor, pct)
            start_iter = end_iter
        raise ArgumentValueError(
            f"the one-cycle schedule ends before iteration {cur_iter}", key_path="total_steps"
        )

    def _max_lrs(self, name: str | None, optimizer: Optimizer) -> list[float]:
        """``max_lr`` as one float per param group of ``optimizer`` (mmcv's format_param)."""
        value = self.max_lr
        if isinstance(value, Mapping):
            if name is None or name not in value:
                raise ArgumentKeyError(f"no entry for optimizer {name!r}", key_path="max_lr")
            value = value[name]
        groups = len(optimizer.param_groups)
        if isinstance(value, int | float):
            return [float(value)] * groups
        if len(value) != groups:
            where = "" if name is None else f" of optimizer {name!r}"
            raise ArgumentValueError(
                f"expected one value per param group{where} ({groups}), got {len(value)}",
                key_path="max_lr" if name is None else f"max_lr.{name}",
            )
        return [float(v) for v in value]
