"""Momentum updater hooks: mmcv 1.x's momentum schedules, selected by ``momentum_config``.

``momentum_config=dict(policy='CosineAnnealing', min_momentum_ratio=0.85 / 0.95)``
builds `CosineAnnealingMomentumUpdaterHook` (the runner turns ``policy`` into
``'<Policy>MomentumUpdaterHook'`` as mmcv does). The numbers are mmcv 1.7.2's, value
for value (tests/unit/runner/hooks/test_momentum_updater_vs_mmcv.py). The
momentum is a param group's ``momentum`` (SGD, RMSprop) or ``betas[0]`` (Adam).

The rule that makes resume exact is the LR hooks' (`trackcfg.runner.hooks.lr_updater`):
every momentum is a pure function of the runner's counters and of values kept in the
optimizer's own param groups (``initial_momentum``; ``base_momentum`` and
``max_momentum`` for one-cycle), which the optimizer's state dict saves and restores.
The hooks keep no other state (their `state_dict` is empty).

Where we differ from mmcv: the cyclic and one-cycle hooks *rebuild* their phases in
``before_run`` (mmcv appends to them, so a second ``run`` of the same hook would
follow stale phases), and bad arguments raise `ArgumentValueError` naming the
argument instead of a bare ``assert``.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, TypedDict, Unpack

from torch.optim import Optimizer

from trackcfg.errors import ArgumentKeyError, ArgumentValueError, RunnerError
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.hooks.lr_updater import (
    annealing_cos,
    annealing_linear,
    check_cyclic_args,
    checked_steps,
    cyclic_phases,
    cyclic_target_ratio,
    cyclic_value,
    steps_passed,
)

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner

__all__ = [
    "CosineAnnealingMomentumUpdaterHook",
    "CyclicMomentumUpdaterHook",
    "LinearAnnealingMomentumUpdaterHook",
    "MomentumUpdaterHook",
    "OneCycleMomentumUpdaterHook",
    "StepMomentumUpdaterHook",
]

#: One momentum per param group, or per optimizer name when ``runner.optimizer`` is a dict.
MomentumGroups = list[float] | dict[str, list[float]]

_WARMUPS: tuple[str, ...] = ("constant", "linear", "exp")


class MomentumUpdaterArgs(TypedDict, total=False):
    """The `MomentumUpdaterHook` arguments every schedule accepts as keywords."""

    by_epoch: bool
    warmup: Literal["constant", "linear", "exp"] | None
    warmup_iters: int
    warmup_ratio: float


def _optimizers(runner: BaseRunner) -> dict[str, Optimizer] | Optimizer:
    optimizer = runner.optimizer
    if optimizer is None:
        raise RunnerError(
            "a momentum updater hook needs runner.optimizer", hint="give the runner an optimizer"
        )
    return optimizer


def _group_momentum(group: dict[str, object], optimizer: str | None) -> float:
    if "momentum" in group:
        return float(group["momentum"])  # type: ignore[arg-type]
    if "betas" in group:
        return float(group["betas"][0])  # type: ignore[index]
    where = "" if optimizer is None else f" of optimizer {optimizer!r}"
    raise RunnerError(
        f"a param group{where} has neither 'momentum' nor 'betas', so it has no momentum "
        "to schedule",
        hint="remove momentum_config, or use an optimizer with momentum (SGD, Adam, ...)",
    )


def _set_group_momentum(group: dict[str, object], momentum: float) -> None:
    if "momentum" in group:
        group["momentum"] = momentum
    elif "betas" in group:
        group["betas"] = (momentum, group["betas"][1])  # type: ignore[index]


def _progress(hook: MomentumUpdaterHook, runner: BaseRunner) -> tuple[int, int]:
    """(progress, max progress) in epochs or iterations, as the hook counts."""
    progress = runner.epoch if hook.by_epoch else runner.iter
    max_progress = runner.max_epochs if hook.by_epoch else runner.max_iters
    if max_progress is None:
        unit = "max_epochs" if hook.by_epoch else "max_iters"
        raise RunnerError(f"{type(hook).__name__} needs runner.{unit}")
    return int(progress), int(max_progress)


def _check_min(value: float | None, ratio: float | None) -> None:
    if (value is None) == (ratio is None):
        raise ArgumentValueError(
            "give exactly one of min_momentum and min_momentum_ratio",
            key_path="min_momentum_ratio" if ratio is not None else "min_momentum",
        )


class MomentumUpdaterHook(Hook, metaclass=ABCMeta):
    """Base class of the momentum schedules: warmup, per-epoch or per-iteration updates.

    Subclasses implement `get_momentum`. A warmup *divides* the regular momentum by
    the warmup factor (mmcv: the momentum starts high and comes down as the LR rises).

    Args:
        by_epoch: Update at every epoch (``runner.epoch``) instead of every iteration.
        warmup: ``None``, ``'constant'``, ``'linear'`` or ``'exp'``.
        warmup_iters: Length of the warmup, in iterations.
        warmup_ratio: The warmup starts at ``regular_momentum / warmup_ratio``.

    Raises:
        ArgumentValueError: an unknown warmup, ``warmup_iters <= 0`` or a ratio
            outside (0, 1].
    """

    priority = "HIGH"  # mmcv's register_momentum_hook priority

    def __init__(
        self,
        by_epoch: bool = True,
        warmup: Literal["constant", "linear", "exp"] | None = None,
        warmup_iters: int = 0,
        warmup_ratio: float = 0.9,
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
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        self.base_momentum: MomentumGroups = []
        self.regular_momentum: MomentumGroups = []

    @abstractmethod
    def get_momentum(self, runner: BaseRunner, base_momentum: float) -> float:
        """The momentum of a param group whose base momentum is ``base_momentum``."""

    def get_regular_momentum(self, runner: BaseRunner) -> MomentumGroups:
        """`get_momentum` for every param group (of every optimizer)."""
        if isinstance(self.base_momentum, dict):
            return {
                name: [self.get_momentum(runner, m) for m in moms]
                for name, moms in self.base_momentum.items()
            }
        return [self.get_momentum(runner, m) for m in self.base_momentum]

    def get_warmup_momentum(self, cur_iters: int) -> MomentumGroups:
        """The regular momentums divided by the warmup factor at iteration ``cur_iters``."""

        def scale(regular: list[float]) -> list[float]:
            if self.warmup == "constant":
                return [m / self.warmup_ratio for m in regular]
            if self.warmup == "linear":
                k = (1 - cur_iters / self.warmup_iters) * (1 - self.warmup_ratio)
                return [m / (1 - k) for m in regular]
            k = self.warmup_ratio ** (1 - cur_iters / self.warmup_iters)  # 'exp'
            return [m / k for m in regular]

        if isinstance(self.regular_momentum, dict):
            return {name: scale(moms) for name, moms in self.regular_momentum.items()}
        return scale(self.regular_momentum)

    # -- stages --------------------------------------------------------------

    def before_run(self, runner: BaseRunner) -> None:
        # setdefault: after a resume the optimizer's groups already carry the original value
        optimizer = _optimizers(runner)
        if isinstance(optimizer, dict):
            base: dict[str, list[float]] = {}
            for name, optim in optimizer.items():
                for group in optim.param_groups:
                    group.setdefault("initial_momentum", _group_momentum(group, name))
                base[name] = [float(g["initial_momentum"]) for g in optim.param_groups]
            self.base_momentum = base
        else:
            for group in optimizer.param_groups:
                group.setdefault("initial_momentum", _group_momentum(group, None))
            self.base_momentum = [float(g["initial_momentum"]) for g in optimizer.param_groups]

    def before_train_epoch(self, runner: BaseRunner) -> None:
        if not self.by_epoch:
            return
        self.regular_momentum = self.get_regular_momentum(runner)
        self._set_momentum(runner, self.regular_momentum)

    def before_train_iter(self, runner: BaseRunner) -> None:
        cur_iter = runner.iter
        if not self.by_epoch:
            self.regular_momentum = self.get_regular_momentum(runner)
            if self.warmup is None or cur_iter >= self.warmup_iters:
                self._set_momentum(runner, self.regular_momentum)
            else:
                self._set_momentum(runner, self.get_warmup_momentum(cur_iter))
            return
        if self.warmup is None or cur_iter > self.warmup_iters:
            return
        # before_train_epoch set regular_momentum (it re-fires on a mid-epoch resume too)
        if cur_iter == self.warmup_iters:
            self._set_momentum(runner, self.regular_momentum)
        else:
            self._set_momentum(runner, self.get_warmup_momentum(cur_iter))

    @staticmethod
    def _set_momentum(runner: BaseRunner, groups: MomentumGroups) -> None:
        optimizer = _optimizers(runner)
        if isinstance(optimizer, dict):
            if not isinstance(groups, dict):
                raise _optimizer_changed()
            for name, optim in optimizer.items():
                for group, momentum in zip(optim.param_groups, groups[name], strict=True):
                    _set_group_momentum(group, momentum)
        else:
            if isinstance(groups, dict):
                raise _optimizer_changed()
            for group, momentum in zip(optimizer.param_groups, groups, strict=True):
                _set_group_momentum(group, momentum)


def _optimizer_changed() -> RunnerError:
    return RunnerError(
        "runner.optimizer changed between a dict of optimizers and a single one since "
        "before_run, so its base momentums no longer fit",
        hint="set runner.optimizer before the run starts",
    )


@HOOKS.register_module()
class StepMomentumUpdaterHook(MomentumUpdaterHook):
    """Multiply the momentum by ``gamma`` at every step (mmcv's default gamma is 0.5).

    Args:
        step: An int decays every ``step`` epochs/iterations; a list at each listed one.
        gamma: Decay factor.
        min_momentum: Clip the momentum from below, if given.
        **kwargs: `MomentumUpdaterHook` arguments.

    Raises:
        ArgumentTypeError: ``step`` is neither an int nor a list of ints.
        ArgumentValueError: a step is not positive.
    """

    def __init__(
        self,
        step: int | Sequence[int],
        gamma: float = 0.5,
        min_momentum: float | None = None,
        **kwargs: Unpack[MomentumUpdaterArgs],
    ) -> None:
        self.step = checked_steps(step)
        self.gamma = gamma
        self.min_momentum = min_momentum
        super().__init__(**kwargs)

    def get_momentum(self, runner: BaseRunner, base_momentum: float) -> float:
        progress = runner.epoch if self.by_epoch else runner.iter
        momentum = base_momentum * self.gamma ** steps_passed(self.step, progress)
        if self.min_momentum is not None:
            momentum = max(momentum, self.min_momentum)
        return momentum


class _AnnealingMomentumUpdaterHook(MomentumUpdaterHook):
    """From the base momentum to ``min_momentum`` (or ``base * min_momentum_ratio``)."""

    anneal: Callable[[float, float, float], float]

    def __init__(
        self,
        min_momentum: float | None = None,
        min_momentum_ratio: float | None = None,
        **kwargs: Unpack[MomentumUpdaterArgs],
    ) -> None:
        _check_min(min_momentum, min_momentum_ratio)
        self.min_momentum = min_momentum
        self.min_momentum_ratio = min_momentum_ratio
        super().__init__(**kwargs)

    def get_momentum(self, runner: BaseRunner, base_momentum: float) -> float:
        progress, max_progress = _progress(self, runner)
        if self.min_momentum_ratio is not None:
            target = base_momentum * self.min_momentum_ratio
        else:
            target = float(self.min_momentum or 0.0)
        return self.anneal(base_momentum, target, progress / max_progress)


@HOOKS.register_module()
class CosineAnnealingMomentumUpdaterHook(_AnnealingMomentumUpdaterHook):
    """Cosine from the base momentum to the minimum, reached one past the last step.

    Args:
        min_momentum: The final momentum, or
        min_momentum_ratio: ... the final momentum as a ratio of the base one.
        **kwargs: `MomentumUpdaterHook` arguments.

    Raises:
        ArgumentValueError: both or neither of the minimums are given.
    """

    anneal = staticmethod(annealing_cos)


@HOOKS.register_module()
class LinearAnnealingMomentumUpdaterHook(_AnnealingMomentumUpdaterHook):
    """Linear from the base momentum to the minimum (arguments as the cosine one)."""

    anneal = staticmethod(annealing_linear)


@HOOKS.register_module()
class CyclicMomentumUpdaterHook(MomentumUpdaterHook):
    """Cyclic momentum (Smith 2017), usually paired with ``lr_config=dict(policy='cyclic')``.

    Each of ``cyclic_times`` cycles goes from the base momentum to ``target_ratio[0]``
    times it over ``step_ratio_up`` of the cycle, then to ``target_ratio[1]`` times it.

    Args:
        target_ratio: (low, high) relative to the base momentum; a float ``r`` is
            ``(r, r / 1e5)``.
        cyclic_times: Number of cycles in ``runner.max_iters``.
        step_ratio_up: Fraction of a cycle spent in the first phase.
        anneal_strategy: ``'cos'`` or ``'linear'``.
        gamma: Each cycle's amplitude is ``gamma`` times the previous one's.
        **kwargs: `MomentumUpdaterHook` arguments; ``by_epoch`` must be False (the default).

    Raises:
        ArgumentValueError: as `check_cyclic_args`, or a bad ``target_ratio``.
    """

    def __init__(
        self,
        target_ratio: float | Sequence[float] = (0.85 / 0.95, 1.0),
        cyclic_times: int = 1,
        step_ratio_up: float = 0.4,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        gamma: float = 1.0,
        **kwargs: Unpack[MomentumUpdaterArgs],
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
        self.momentum_phases: list[tuple[int, int, float, float]] = []
        super().__init__(**kwargs)

    def before_run(self, runner: BaseRunner) -> None:
        super().before_run(runner)
        max_iters = runner.max_iters
        if max_iters is None:
            raise RunnerError("CyclicMomentumUpdaterHook needs runner.max_iters")
        self.max_iter_per_phase, self.momentum_phases = cyclic_phases(
            max_iters, self.cyclic_times, self.step_ratio_up, self.target_ratio
        )

    def get_momentum(self, runner: BaseRunner, base_momentum: float) -> float:
        return cyclic_value(
            base_momentum,
            runner.iter,
            self.max_iter_per_phase,
            self.momentum_phases,
            self.gamma,
            self.anneal_func,
        )


#: ``base_momentum``/``max_momentum`` of `OneCycleMomentumUpdaterHook`.
MomentumBound = float | Sequence[float] | Mapping[str, float | Sequence[float]]


@HOOKS.register_module()
class OneCycleMomentumUpdaterHook(MomentumUpdaterHook):
    """The 1cycle momentum, inverse to ``lr_config=dict(policy='OneCycle')``.

    The momentum falls from ``max_momentum`` to ``base_momentum`` over ``pct_start``
    of ``runner.max_iters``, then rises back (with ``three_phase``: falls, rises,
    then stays). Both bounds are kept in the optimizer's param groups, as in mmcv.

    Args:
        base_momentum: Lower bound: a float, one per param group, or a dict per optimizer.
        max_momentum: Upper bound, same forms.
        pct_start: Fraction of the cycle spent falling.
        anneal_strategy: ``'cos'`` or ``'linear'``.
        three_phase: mmcv's three-phase variant.
        **kwargs: `MomentumUpdaterHook` arguments; ``by_epoch`` must be False.

    Raises:
        ArgumentValueError: ``by_epoch=True``, ``pct_start`` outside [0, 1], an unknown
            ``anneal_strategy``; in ``before_run``, an optimizer without momentum or a
            list whose length differs from the number of param groups.
        ArgumentKeyError: (in ``before_run``) a dict without an entry for an optimizer.
    """

    def __init__(
        self,
        base_momentum: MomentumBound = 0.85,
        max_momentum: MomentumBound = 0.95,
        pct_start: float = 0.3,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        three_phase: bool = False,
        **kwargs: Unpack[MomentumUpdaterArgs],
    ) -> None:
        if kwargs.setdefault("by_epoch", False):
            raise ArgumentValueError(
                "OneCycleMomentumUpdaterHook only supports by_epoch=False", key_path="by_epoch"
            )
        if not 0 <= pct_start <= 1:
            raise ArgumentValueError(f"must be in [0, 1], got {pct_start!r}", key_path="pct_start")
        if anneal_strategy not in ("cos", "linear"):
            raise ArgumentValueError(
                f"must be 'cos' or 'linear', got {anneal_strategy!r}", key_path="anneal_strategy"
            )
        self._base_momentum = base_momentum
        self._max_momentum = max_momentum
        self.pct_start = pct_start
        self.anneal_func = annealing_cos if anneal_strategy == "cos" else annealing_linear
        self.three_phase = three_phase
        #: (end iteration, start key, end key) of each phase; keys of the param group
        self.momentum_phases: list[tuple[float, str, str]] = []
        super().__init__(**kwargs)

    def before_run(self, runner: BaseRunner) -> None:
        optimizer = _optimizers(runner)
        named = optimizer.items() if isinstance(optimizer, dict) else [(None, optimizer)]
        for name, optim in named:
            if "momentum" not in optim.defaults and "betas" not in optim.defaults:
                raise ArgumentValueError(
                    f"optimizer {type(optim).__name__} has no momentum to cycle",
                    key_path="base_momentum",
                )
            key = name if name is not None else type(optim).__name__
            lows = _per_group(self._base_momentum, key, optim, "base_momentum")
            highs = _per_group(self._max_momentum, key, optim, "max_momentum")
            for group, low, high in zip(optim.param_groups, lows, highs, strict=True):
                _set_group_momentum(group, high)
                group["base_momentum"] = low
                group["max_momentum"] = high
        max_iters = runner.max_iters
        if max_iters is None:
            raise RunnerError("OneCycleMomentumUpdaterHook needs runner.max_iters")
        up_end = float(self.pct_start * max_iters) - 1
        if self.three_phase:
            self.momentum_phases = [
                (up_end, "max_momentum", "base_momentum"),
                (float(2 * self.pct_start * max_iters) - 2, "base_momentum", "max_momentum"),
                (max_iters - 1, "max_momentum", "max_momentum"),
            ]
        else:
            self.momentum_phases = [
                (up_end, "max_momentum", "base_momentum"),
                (max_iters - 1, "base_momentum", "max_momentum"),
            ]

    def get_momentum(self, runner: BaseRunner, base_momentum: float) -> float:
        """Not used: one-cycle reads both bounds from each param group (`get_regular_momentum`).

        Raises:
            RunnerError: always.
        """
        raise RunnerError(
            "OneCycleMomentumUpdaterHook schedules from each param group's bounds; "
            "call get_regular_momentum"
        )

    def get_regular_momentum(self, runner: BaseRunner) -> MomentumGroups:
        optimizer = _optimizers(runner)
        if isinstance(optimizer, dict):
            return {
                name: [self._group_value(runner, g) for g in optim.param_groups]
                for name, optim in optimizer.items()
            }
        return [self._group_value(runner, g) for g in optimizer.param_groups]

    def _group_value(self, runner: BaseRunner, group: dict[str, object]) -> float:
        cur_iter = runner.iter
        start_iter = 0.0
        last = len(self.momentum_phases) - 1
        for i, (end_iter, start_key, end_key) in enumerate(self.momentum_phases):
            if cur_iter <= end_iter or i == last:
                pct = (cur_iter - start_iter) / (end_iter - start_iter)
                return self.anneal_func(
                    float(group[start_key]),  # type: ignore[arg-type]
                    float(group[end_key]),  # type: ignore[arg-type]
                    pct,
                )
            start_iter = end_iter
        return 0.0  # no phases: before_run has not run (mmcv returns 0. too)


def _per_group(value: MomentumBound, name: str, optimizer: Optimizer, key: str) -> list[float]:
    """``value`` as one float per param group (mmcv's ``format_param``)."""
    if isinstance(value, Mapping):
        if name not in value:
            raise ArgumentKeyError(f"no entry for optimizer {name!r}", key_path=key)
        value = value[name]
    groups = len(optimizer.param_groups)
    if isinstance(value, int | float):
        return [float(value)] * groups
    if len(value) != groups:
        raise ArgumentValueError(
            f"expected one value per param group ({groups}), got {len(value)}", key_path=key
        )
    return [float(v) for v in value]
