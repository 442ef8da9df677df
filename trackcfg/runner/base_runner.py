"""BaseRunner: hook registration and dispatch, and the checkpoint/resume plumbing.

The two loops live in `EpochBasedRunner` and `IterBasedRunner`; everything they
share is here, with mmcv 1.x's names and constructor.

Checkpoint timing. ``save_checkpoint`` called from a hook during
``after_train_iter``/``after_train_epoch``/``after_val_epoch`` does not copy the
state on the spot: the request is queued and the loop *commits* it at the next
boundary — after every hook of that stage has run and the counters have moved
on. A checkpoint therefore always describes a point *between* iterations (or
epochs), whatever the hook priorities are, and resuming from it continues at
exactly the next iteration. Called anywhere else, it copies at once. In both
cases the copy is made on the training thread and written by a background
thread (see `trackcfg.runner.checkpoint`).

Resume order. `resume` restores model, optimizer(s), schedulers, AMP scaler,
counters, ``meta['hook_msgs']`` and hook states at once, but keeps the RNG
states pending: the loop applies them at the very boundary where they were
captured (right before the next epoch's ``before_train_epoch``, or before the
next iteration of a partial epoch, after ``before_run`` and the re-fired
``before_train_epoch``), so anything that draws random numbers while the run
starts up cannot shift the stream.

Distributed runs: every rank must call ``save_checkpoint`` (the RNG states of all
ranks are gathered into rank 0's file); only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, TypeVar, cast

import torch
from torch import nn
from torch.optim import Optimizer

from trackcfg.errors import (
    ArgumentError,
    CheckpointError,
    CheckpointFormatError,
    HookRegistrationError,
    RunnerError,
    WorldSizeMismatchError,
)
from trackcfg.runner.checkpoint import (
    CheckpointWriter,
    SavedCheckpoint,
    copy_state,
    load_checkpoint_file,
)
from trackcfg.runner.dist import all_gather_object, get_dist_info, is_main_process
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.priority import Priority, get_priority
from trackcfg.runner.rng import (
    capture_rng_state,
    check_rng_state,
    restore_rng_state,
    rng_state_for_rank,
)
from trackcfg.runner.stage import GENERIC_STAGES, Stage
from trackcfg.runner.workflow import Workflow, check_workflow

__all__ = ["CHECKPOINT_FORMAT", "BaseRunner"]

#: Version of our own checkpoint keys (``runner``, ``rng``, ``hook_states`` ...).
CHECKPOINT_FORMAT = 1

_STAGE_NAMES = frozenset(s.value for s in Stage) | frozenset(GENERIC_STAGES)

# Stages whose checkpoint requests the loop commits after moving its counters on.
_BOUNDARY_STAGES = frozenset(
    {Stage.AFTER_TRAIN_ITER, Stage.AFTER_TRAIN_EPOCH, Stage.AFTER_VAL_EPOCH}
)

_ITERATION_STAGES = frozenset({Stage.BEFORE_TRAIN_ITER, Stage.AFTER_TRAIN_ITER})

HookConfig = Mapping[str, object]
_HookFn = Callable[["BaseRunner"], None]
_C = TypeVar("_C", bound="HookConfig | Hook | None")

# mmcv's default for register_training_hooks(timer_config=...); read-only (copied before use).
DEFAULT_TIMER_CONFIG: HookConfig = MappingProxyType({"type": "IterTimerHook"})


class _BatchProcessor(Protocol):
    def __call__(
        self, model: nn.Module, data_batch: object, train_mode: bool, **kwargs: object
    ) -> dict[str, object]: ...


@dataclass(frozen=True, slots=True)
class _CheckpointRequest:
    path: Path
    link: Path | None
    save_optimizer: bool
    meta: dict[str, object]


class BaseRunner:
    """Common part of the runners (mmcv 1.x constructor and attributes).

    Args:
        model: The model; it implements ``train_step``/``val_step`` unless a
            ``batch_processor`` is given (mmcv's older protocol).
        batch_processor: ``fn(model, data_batch, train_mode, **kwargs) -> dict``.
        optimizer: One optimizer, a dict of them (name -> optimizer), or None.
        work_dir: Directory for checkpoints and logs (created).
        logger: Where progress goes; default ``logging.getLogger('trackcfg')``.
        meta: Extra data saved in every checkpoint's ``meta`` (e.g. ``config_hash``).
        max_iters: Total training iterations (`IterBasedRunner`).
        max_epochs: Total training epochs (`EpochBasedRunner`).

    Raises:
        TypeError: a wrong type for ``optimizer``, ``batch_processor`` or ``meta``.
        RunnerError: both or neither of ``batch_processor`` and ``model.train_step``;
            both ``max_iters`` and ``max_epochs``.
    """

    #: ``filename_tmpl`` of `save_checkpoint` when none is given.
    default_filename_tmpl = "epoch_{}.pth"
    #: ``by_epoch`` of the LR, momentum, checkpoint and logger hooks that
    #: `register_training_hooks` builds from configs that do not say (mmcv: False
    #: for IterBasedRunner).
    hooks_by_epoch = True

    def __init__(
        self,
        model: nn.Module,
        batch_processor: _BatchProcessor | None = None,
        optimizer: Optimizer | dict[str, Optimizer] | None = None,
        work_dir: str | Path | None = None,
        logger: logging.Logger | None = None,
        meta: dict[str, object] | None = None,
        max_iters: int | None = None,
        max_epochs: int | None = None,
    ) -> None:
        from trackcfg.runner.log_buffer import LogBuffer
        from trackcfg.runner.state import RunnerState

        inner = _unwrap(model)
        if batch_processor is not None:
            if not callable(batch_processor):
                raise TypeError(
                    f"batch_processor must be callable, got {type(batch_processor).__name__}"
                )
            if hasattr(inner, "train_step") or hasattr(inner, "val_step"):
                raise RunnerError(
                    "batch_processor and model.train_step()/model.val_step() cannot both be given"
                )
        elif not hasattr(inner, "train_step"):
            raise RunnerError(
                f"{type(inner).__name__} has no train_step()",
                hint="implement train_step(data_batch, optimizer) -> dict(loss, log_vars, "
                "num_samples), or pass batch_processor",
            )
        if isinstance(optimizer, dict):
            for name, opt in optimizer.items():
                if not isinstance(opt, Optimizer):
                    raise TypeError(
                        f"optimizer[{name!r}] must be a torch Optimizer, got {type(opt).__name__}"
                    )
        elif optimizer is not None and not isinstance(optimizer, Optimizer):
            raise TypeError(
                "optimizer must be an Optimizer, a dict of them or None, "
                f"got {type(optimizer).__name__}"
            )
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
        if max_epochs is not None and max_iters is not None:
            raise RunnerError("only one of max_epochs and max_iters can be set")

        self.model = model
        self.batch_processor = batch_processor
        self.optimizer = optimizer
        self.logger = logger if logger is not None else logging.getLogger("trackcfg")
        self.meta = meta
        self.work_dir: str | None = None
        if work_dir is not None:
            Path(work_dir).mkdir(parents=True, exist_ok=True)
            self.work_dir = str(Path(work_dir).resolve())
        self.rank, self.world_size = get_dist_info()
        self.timestamp = time.strftime("%Y%m%d_%H%M%S", time.localtime())
        self.mode: str | None = None
        # The loader of the current epoch (DataLoader, or IterLoader in IterBasedRunner);
        # hooks call len() on it, so it is typed loosely like mmcv's attribute.
        self.data_loader: Any = None
        self.data_batch: object = None
        self.outputs: dict[str, object] = {}
        self.log_buffer = LogBuffer()
        #: Torch LR schedulers (or anything with state_dict/load_state_dict) to checkpoint.
        self.schedulers: list[object] = []
        #: An AMP ``GradScaler`` to checkpoint, if the run uses one.
        self.scaler: object = None
        #: The exception that ended `run`, visible to ``after_run`` hooks (None on success).
        self.error: BaseException | None = None
        self.state = RunnerState(max_epochs=max_epochs, max_iters=max_iters)
        # mmcv's counters, as plain attributes (mmcv has read-only properties): hooks read
        # them every iteration, and a property is a function call each time (issue 3's
        # overhead budget). The loops advance them; `RunnerState` checkpoints them.
        #: Completed training epochs; during an epoch, its 0-based index.
        self.epoch = 0
        #: Completed training iterations; in ``after_train_iter``, the 0-based index just run.
        self.iter = 0
        #: Index of the current iteration within the epoch.
        self.inner_iter = 0
        self._hooks: list[Hook] = []
        # Per stage, the bound methods to call, in priority order (see register_hook).
        self._hooks_at: dict[Stage, tuple[_HookFn, ...]] = {s: () for s in Stage}
        # id(hook) -> the config key path it was built from (`_note_hook_failure`).
        self._hook_key_paths: dict[int, str] = {}
        self._writer = CheckpointWriter()
        self._pending: list[_CheckpointRequest] = []
        self._dispatching: Stage | None = None

    # -- mmcv's read-only attributes -------------------------------------------

    @property
    def model_name(self) -> str:
        """Class name of the (unwrapped) model."""
        return type(_unwrap(self.model)).__name__

    @property
    def hooks(self) -> list[Hook]:
        """Registered hooks in calling order (a copy)."""
        return list(self._hooks)

    @property
    def max_epochs(self) -> int | None:
        """Training epochs of the run (None for an iteration-based run)."""
        return self.state.max_epochs

    @property
    def max_iters(self) -> int | None:
        """Training iterations of the run (derived from epochs by `EpochBasedRunner`)."""
        return self.state.max_iters

    # -- hooks -------------------------------------------------------------------

    def register_hook(self, hook: Hook, priority: int | str | Priority | None = None) -> None:
        """Add ``hook``, ordered by priority; equal priorities keep registration order.

        Args:
            hook: A `Hook` instance.
            priority: Name (``'HIGH'``), int 0–100 or `Priority`; default ``hook.priority``.

        Raises:
            HookRegistrationError: not a Hook, a bad priority, or a public
                ``before_*``/``after_*`` method that names no stage.
        """
        if not isinstance(hook, Hook):
            raise HookRegistrationError(
                f"expected a Hook instance, got {type(hook).__name__}",
                hint="subclass trackcfg.Hook",
            )
        _check_stage_methods(hook)
        value = get_priority(hook.priority if priority is None else priority)
        hook.priority = value  # mmcv stores the resolved priority on the hook
        position = len(self._hooks)
        while position > 0 and get_priority(self._hooks[position - 1].priority) > value:
            position -= 1
        self._hooks.insert(position, hook)
        self._hooks_at = _stage_table(self._hooks)

    def register_hook_from_cfg(self, hook_cfg: HookConfig, key_path: str | None = None) -> None:
        """Build a hook from ``dict(type=..., priority=..., **args)`` in ``HOOKS`` and register it.

        The caller's dict is not modified (mmcv pops ``priority`` out of it).

        Args:
            hook_cfg: The hook's config.
            key_path: Where ``hook_cfg`` sits in the config (``custom_hooks.0``), for
                errors: an `ArgumentError` of the hook, raised when it is built or
                at any stage, names ``<key_path>.<argument>``.
        """
        self._build_and_register(hook_cfg, "NORMAL", key_path=key_path)

    def _build_and_register(
        self,
        hook_cfg: HookConfig,
        priority: int | str,
        default_args: HookConfig | None = None,
        key_path: str | None = None,
    ) -> None:
        """Build ``hook_cfg`` from HOOKS and register it; its own ``priority`` wins."""
        from trackcfg.registry import HOOKS

        cfg = dict(copy.deepcopy(hook_cfg))
        hook_priority = cast(int | str, cfg.pop("priority", priority))
        hook = cast(Hook, HOOKS.build(cfg, default_args=default_args, key_path=key_path))
        self.register_hook(hook, priority=hook_priority)
        if key_path is not None:
            self._hook_key_paths[id(hook)] = key_path

    def register_training_hooks(
        self,
        lr_config: HookConfig | Hook | None,
        optimizer_config: HookConfig | Hook | None = None,
        checkpoint_config: HookConfig | Hook | None = None,
        log_config: HookConfig | None = None,
        momentum_config: HookConfig | Hook | None = None,
        timer_config: HookConfig | Hook | None = DEFAULT_TIMER_CONFIG,
        custom_hooks_config: Sequence[HookConfig | Hook] | HookConfig | Hook | None = None,
    ) -> None:
        """Register mmcv's default training hooks from their config sections.

        Priorities (as mmcv): LR updater VERY_HIGH, momentum updater HIGH,
        optimizer ABOVE_NORMAL, checkpoint NORMAL, timer LOW, loggers VERY_LOW,
        custom hooks their own ``priority`` (default NORMAL). ``lr_config`` /
        ``momentum_config`` name a ``policy`` (``'step'`` -> ``StepLrUpdaterHook``,
        ``'CosineAnnealing'`` -> ``CosineAnnealingLrUpdaterHook``).
        ``timer_config`` defaults to ``dict(type='IterTimerHook')``; None registers
        no timer (as in mmcv). The LR, momentum, checkpoint and logger hooks get
        ``by_epoch=hooks_by_epoch`` unless their config says otherwise. The caller's
        dicts are never modified.

        The parameters are named like the config's keys, and errors name them:
        a hook that rejects an argument raises an `ArgumentError` with the key
        path ``lr_config.warmup_iters`` (``log_config.hooks.0.interval``,
        ``custom_hooks.1.x``).
        """
        self._register_policy_hook(lr_config, "LrUpdaterHook", "VERY_HIGH", "lr_config")
        self._register_policy_hook(
            momentum_config, "MomentumUpdaterHook", "HIGH", "momentum_config"
        )
        self._register_typed_hook(
            optimizer_config, "OptimizerHook", "ABOVE_NORMAL", "optimizer_config"
        )
        self._register_typed_hook(
            self._by_epoch_default(checkpoint_config),
            "CheckpointHook",
            "NORMAL",
            "checkpoint_config",
        )
        self._register_typed_hook(timer_config, "IterTimerHook", "LOW", "timer_config")
        if log_config is not None:
            interval = {"interval": log_config.get("interval", 10)}
            for i, info in enumerate(cast(Sequence[HookConfig], log_config.get("hooks", ()))):
                self._build_and_register(
                    self._by_epoch_default(info), "VERY_LOW", interval, f"log_config.hooks.{i}"
                )
        if custom_hooks_config is None:
            return
        if isinstance(custom_hooks_config, Hook | Mapping):
            custom_hooks_config = [custom_hooks_config]
        for i, item in enumerate(custom_hooks_config):
            if isinstance(item, Hook):
                self.register_hook(item)
            else:
                self.register_hook_from_cfg(item, key_path=f"custom_hooks.{i}")

    def _by_epoch_default(self, config: _C) -> _C:
        """``config`` with ``by_epoch=hooks_by_epoch`` unless it says (a hook: unchanged)."""
        if self.hooks_by_epoch or not isinstance(config, Mapping):
            return config
        return cast(_C, {"by_epoch": False, **config})

    def _register_policy_hook(
        self, config: HookConfig | Hook | None, suffix: str, priority: str, key_path: str
    ) -> None:
        if isinstance(config, Mapping) and "type" not in config:
            cfg = dict(config)  # a shallow copy is enough: only `policy`/`type` change here
            policy = cfg.pop("policy", None)
            if not isinstance(policy, str):
                raise HookRegistrationError(
                    f"expected a 'policy' name, got {policy!r}",
                    key_path=key_path,
                    hint="e.g. policy='step' or policy='CosineAnnealing'",
                )
            # mmcv: an all-lowercase policy is title-cased ('step' -> 'Step'); others verbatim.
            if policy == policy.lower():
                policy = policy.title()
            cfg["type"] = policy + suffix
            config = cfg
        self._register_typed_hook(self._by_epoch_default(config), suffix, priority, key_path)

    def _register_typed_hook(
        self, config: HookConfig | Hook | None, default_type: str, priority: str, key_path: str
    ) -> None:
        if config is None:
            return
        if isinstance(config, Hook):
            self.register_hook(config, priority=priority)
            return
        self._build_and_register({"type": default_type, **config}, priority, key_path=key_path)

    def call_hook(self, stage: Stage) -> None:
        """Call every registered hook's method for ``stage``, in priority order.

        Raises:
            HookRegistrationError: ``stage`` is not a `Stage` (a string would
                silently skip a misspelled name, as in mmcv).
        """
        if type(stage) is not Stage:
            raise HookRegistrationError(
                f"call_hook expects a Stage, got {type(stage).__name__} {stage!r}",
                hint=f"use e.g. Stage.{Stage.AFTER_TRAIN_ITER.name}",
            )
        self._fire(stage)

    def _fire(self, stage: Stage) -> None:
        """`call_hook` without the type check (the loops' own calls)."""
        fns = self._hooks_at[stage]
        if fns:
            previous, self._dispatching = self._dispatching, stage
            fn: _HookFn | None = None
            try:
                for fn in fns:
                    fn(self)
            except BaseException as exc:
                self._note_hook_failure(exc, stage, fn)
                raise
            finally:
                self._dispatching = previous
        if self._pending and stage not in _BOUNDARY_STAGES:
            self._commit_checkpoints()

    def _note_hook_failure(self, exc: BaseException, stage: Stage, fn: _HookFn | None) -> None:
        """Name the hook, the stage and the counters on an exception raised by a hook.

        An `ArgumentError` of a hook built from a config section gets the section's
        key path (``lr_config.total_steps``), as when it is raised while building.
        """
        owner = getattr(fn, "__self__", None)
        if isinstance(exc, ArgumentError):
            exc.locate(self._hook_key_paths.get(id(owner)))
        exc.add_note(
            f"in {type(owner).__name__}.{stage.value} "
            f"(epoch={self.epoch}, iter={self.iter}, inner_iter={self.inner_iter})"
        )

    def get_hook_info(self) -> str:
        """mmcv's table: for each stage, the hooks that fire there with their priorities."""
        by_stage: dict[Stage, list[str]] = {s: [] for s in Stage}
        for hook in self._hooks:
            value = get_priority(hook.priority)
            try:
                label = Priority(value).name
            except ValueError:
                label = str(value)
            info = f"({label:<12}) {type(hook).__name__:<35}"
            for name in hook.get_triggered_stages():
                by_stage[Stage(name)].append(info)
        blocks = []
        for stage, infos in by_stage.items():
            if infos:
                blocks.append(f"{stage.value}:\n" + "\n".join(infos) + "\n -------------------- ")
        return "\n".join(blocks)

    # -- one iteration -------------------------------------------------------------

    def _train_iter(self, data_batch: object, kwargs: dict[str, object]) -> None:
        """One training iteration between its hooks, then ``iter`` moves on (both loops)."""
        self.data_batch = data_batch
        self._fire(Stage.BEFORE_TRAIN_ITER)
        self.run_iter(data_batch, True, **kwargs)
        self._fire(Stage.AFTER_TRAIN_ITER)
        self.data_batch = None
        self.iter += 1

    def _val_iter(self, data_batch: object, kwargs: dict[str, object]) -> None:
        """One validation iteration between its hooks (both loops)."""
        self.data_batch = data_batch
        self._fire(Stage.BEFORE_VAL_ITER)
        self.run_iter(data_batch, False, **kwargs)
        self._fire(Stage.AFTER_VAL_ITER)
        self.data_batch = None

    def run_iter(self, data_batch: object, train_mode: bool, **kwargs: object) -> None:
        """Run ``train_step``/``val_step`` (or the batch processor) and keep its outputs.

        Raises:
            TypeError: the step returned something other than a dict.
        """
        outputs: object  # checked below: the step is user code
        if self.batch_processor is not None:
            outputs = self.batch_processor(self.model, data_batch, train_mode=train_mode, **kwargs)
        elif train_mode:
            outputs = self.model.train_step(data_batch, self.optimizer, **kwargs)  # type: ignore[operator]
        else:
            outputs = self.model.val_step(data_batch, self.optimizer, **kwargs)  # type: ignore[operator]
        if not isinstance(outputs, dict):
            mode = "train" if train_mode else "val"
            raise TypeError(f"{mode}_step must return a dict, got {type(outputs).__name__}")
        if "log_vars" in outputs:
            self.log_buffer.update(
                cast(Mapping[str, object], outputs["log_vars"]), cast(int, outputs["num_samples"])
            )
        self.outputs = outputs

    # -- learning rate / momentum ----------------------------------------------------

    def current_lr(self) -> list[float] | dict[str, list[float]]:
        """LR of every param group (a dict per optimizer name for dict optimizers).

        Raises:
            RunnerError: the runner has no optimizer.
        """
        return self._group_values("lr")

    def current_momentum(self) -> list[float] | dict[str, list[float]]:
        """Momentum (or Adam's beta1) of every param group, as `current_lr`."""

        def momentum(group: dict[str, object]) -> float:
            if "momentum" in group:
                return float(cast(float, group["momentum"]))
            if "betas" in group:
                return float(cast(tuple[float, float], group["betas"])[0])
            return 0.0

        return self._map_groups(momentum)

    def _group_values(self, key: str) -> list[float] | dict[str, list[float]]:
        return self._map_groups(lambda g: float(cast(float, g[key])))

    def _map_groups(
        self, fn: Callable[[dict[str, object]], float]
    ) -> list[float] | dict[str, list[float]]:
        if self.optimizer is None:
            raise RunnerError("the runner has no optimizer")
        if isinstance(self.optimizer, Optimizer):
            return [fn(g) for g in self.optimizer.param_groups]
        return {n: [fn(g) for g in o.param_groups] for n, o in self.optimizer.items()}

    # -- checkpoints ------------------------------------------------------------------

    def _checkpoint_number(self) -> int:
        """The number ``filename_tmpl`` is formatted with (epoch + 1 here, as mmcv)."""
        return self.epoch + 1

    def add_checkpoint_listener(
        self, listener: Callable[[SavedCheckpoint], None], *, pin_dir: Path | None = None
    ) -> None:
        """Call ``listener(SavedCheckpoint)`` (on the writer thread) after each durable write.

        Given ``pin_dir``, the listener also gets a pin of each checkpoint's bytes
        there (``SavedCheckpoint.pinned``; see `trackcfg.runner.checkpoint`).
        """
        self._writer.add_listener(listener, pin_dir=pin_dir)

    def wait_for_checkpoints(self) -> None:
        """Block until every requested checkpoint is durably written.

        Raises:
            CheckpointError: a background write failed.
        """
        if self._pending:
            self._commit_checkpoints()
        self._writer.wait()

    def save_checkpoint(
        self,
        out_dir: str | Path,
        filename_tmpl: str | None = None,
        save_optimizer: bool = True,
        meta: dict[str, object] | None = None,
        create_symlink: bool = True,
    ) -> None:
        """Checkpoint the run to ``out_dir/filename_tmpl.format(n)`` (mmcv's signature).

        The file holds mmcv's keys (``meta``, ``state_dict``, ``optimizer``) and ours
        (``runner`` counters and data position, ``schedulers``, ``amp_scaler``,
        ``hook_states``, ``log_buffer``, ``rng`` per rank, ``trackcfg_format``). From a hook at a
        boundary stage the state is copied once the stage is over (see the module
        docstring); the file is written in the background — call
        `wait_for_checkpoints` to be sure it exists.

        Args:
            out_dir: Directory of the checkpoint (created).
            filename_tmpl: Name template with one ``{}``; default ``'epoch_{}.pth'``
                formatted with ``epoch + 1`` (mmcv), but ``'iter_{}.pth'`` with
                ``iter + 1`` for `IterBasedRunner` and for any call from a
                training-iteration stage (mmengine).
            save_optimizer: Include the optimizer state (needed for exact resume).
            meta: Extra ``meta`` entries; ``runner.meta`` is merged over it, then
                ``epoch``/``iter`` (completed counts) and ``time`` are set.
            create_symlink: Point ``out_dir/latest.pth`` at it once it is complete.

        Raises:
            TypeError: ``meta`` is not a dict.
            CheckpointError: an earlier background write failed.
        """
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
        # An iteration-interval checkpoint is named by its iteration even in an
        # epoch-based run (mmengine's rule; mmcv would overwrite epoch_{n}.pth).
        by_iter = self._dispatching in _ITERATION_STAGES
        if filename_tmpl is not None:
            tmpl = filename_tmpl
        else:
            tmpl = "iter_{}.pth" if by_iter else self.default_filename_tmpl
        number = self.iter + 1 if by_iter else self._checkpoint_number()
        directory = Path(out_dir)
        merged: dict[str, object] = dict(meta or {})
        request = _CheckpointRequest(
            path=directory / tmpl.format(number),
            link=directory / "latest.pth" if create_symlink else None,
            save_optimizer=save_optimizer,
            meta=merged,
        )
        self._pending.append(request)
        if self._dispatching not in _BOUNDARY_STAGES:
            self._commit_checkpoints()

    def _commit_checkpoints(self) -> None:
        """Copy the state once for every pending request and hand the copies to the writer."""
        requests, self._pending = self._pending, []
        if not requests:
            return
        # Side checkpoints (no ``latest.pth`` link: EvalHook's best) are written first:
        # the checkpoints written with them record them in their hook state, so a crash
        # between two writes must never leave a checkpoint naming a side file that is
        # not there. (A side file is itself a full checkpoint of the same point.)
        requests.sort(key=lambda r: r.link is not None)
        # Every rank takes part (RNG gather); only rank 0 copies the rest and writes.
        rng = all_gather_object(capture_rng_state())
        if not is_main_process():
            return
        shared = self._shared_checkpoint_state(rng)
        optimizer_state = (
            copy_state(self._optimizer_state(), "optimizer")
            if any(r.save_optimizer for r in requests) and self.optimizer is not None
            else None
        )
        for request in requests:
            meta = dict(request.meta)
            meta.update(copy.deepcopy(self.meta or {}))  # runner meta wins, as in mmcv
            meta.update(epoch=self.epoch, iter=self.iter, time=time.asctime())
            checkpoint: dict[str, object] = {"meta": copy_state(meta, "meta"), **shared}
            if request.save_optimizer and optimizer_state is not None:
                checkpoint["optimizer"] = optimizer_state
            request.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer.submit(
                checkpoint, request.path, link=request.link, epoch=self.epoch, iter=self.iter
            )

    def _shared_checkpoint_state(self, rng: list[object]) -> dict[str, object]:
        hook_states = {key: hook.state_dict() for key, hook in self._keyed_hooks()}
        scaler = self.scaler
        return {
            "state_dict": copy_state(_unwrap(self.model).state_dict(), "state_dict"),
            "trackcfg_format": CHECKPOINT_FORMAT,
            "runner_type": type(self).__name__,
            "runner": self.state.state_dict(
                epoch=self.epoch, iter=self.iter, inner_iter=self.inner_iter
            ),
            "schedulers": [
                copy_state(s.state_dict(), f"schedulers.{i}")  # type: ignore[attr-defined]
                for i, s in enumerate(self.schedulers)
            ],
            "amp_scaler": None if scaler is None else copy_state(scaler.state_dict(), "amp_scaler"),  # type: ignore[attr-defined]
            "hook_states": copy_state(hook_states, "hook_states"),
            "log_buffer": copy_state(self.log_buffer.state_dict(), "log_buffer"),
            "rng": copy_state(rng, "rng"),
        }

    def _optimizer_state(self) -> dict[str, object]:
        if isinstance(self.optimizer, Optimizer):
            return self.optimizer.state_dict()
        optimizers = self.optimizer or {}
        return {name: opt.state_dict() for name, opt in optimizers.items()}

    def _keyed_hooks(self) -> list[tuple[str, Hook]]:
        """Hooks keyed ``ClassName#k`` (k-th hook of that class), stable across processes."""
        seen: dict[str, int] = {}
        keyed = []
        for hook in self._hooks:
            name = type(hook).__name__
            keyed.append((f"{name}#{seen.get(name, 0)}", hook))
            seen[name] = seen.get(name, 0) + 1
        return keyed

    def load_checkpoint(
        self,
        filename: str | Path,
        map_location: str = "cpu",
        strict: bool = False,
        revise_keys: Sequence[tuple[str, str]] = ((r"^module\.", ""),),
    ) -> dict[str, object]:
        """Load model weights only (mmcv's ``load_from``); the digest is checked if present.

        Args:
            filename: A checkpoint file (ours, or a plain mmcv/torch ``.pth``).
            map_location: Kept for mmcv compatibility; tensors are loaded to CPU
                and copied into the model's parameters wherever they live.
            strict: Require the keys to match exactly.
            revise_keys: ``(pattern, replacement)`` regexes applied to every key.

        Returns:
            The whole checkpoint dict.
        """
        import re

        del map_location  # loading always maps to CPU; load_state_dict copies to the device
        checkpoint = load_checkpoint_file(filename, require_digest=False)
        weights = checkpoint.get("state_dict", checkpoint)
        if not isinstance(weights, dict):
            raise CheckpointFormatError(f"{filename}: malformed 'state_dict' entry: not a dict")
        for pattern, replacement in revise_keys:
            weights = {re.sub(pattern, replacement, str(k)): v for k, v in weights.items()}
        incompatible = _unwrap(self.model).load_state_dict(weights, strict=strict)
        if incompatible.missing_keys or incompatible.unexpected_keys:
            self.logger.warning(
                "load_checkpoint %s: missing keys %s, unexpected keys %s",
                filename,
                incompatible.missing_keys,
                incompatible.unexpected_keys,
            )
        self.logger.info("load checkpoint from %s", filename)
        return checkpoint

    def resume(
        self,
        checkpoint: str | Path,
        resume_optimizer: bool = True,
        map_location: str = "default",
        *,
        allow_world_size_change: bool = False,
    ) -> None:
        """Restore the whole run from a checkpoint written by `save_checkpoint`.

        The next `run` continues exactly where the checkpointed process would
        have: same counters, data position, hook states, and RNG streams.

        A checkpoint of a job with another world size is refused: each rank's RNG
        streams and data shard position belong to that world size. Forced with
        ``allow_world_size_change=True`` the run continues reproducibly (two such
        resumes of one checkpoint at one world size are bitwise equal) but is no
        longer bit-identical to an uninterrupted run; a warning says so and
        ``meta['world_size_changes']`` (kept in later checkpoints) records
        ``{'checkpoint', 'epoch', 'iter', 'from', 'to'}``. What it does:

        * RNG: `rng_state_for_rank` — every rank takes the checkpoint's common state
          if its ranks had one (``diff_rank_seed`` off); otherwise an existing rank
          keeps its own and a new rank ``r`` is seeded with
          ``derive_seed(meta['seed'], iter, r)``.
        * Data: each loader's position within its epoch (``b`` batches per rank,
          i.e. the first ``b * batch * old`` samples of the epoch's order) becomes
          ``b * old // new`` batches at the new world size: the epoch goes on from
          the first sample not yet seen, rounded down to a whole batch (at most one
          batch per rank is seen twice, none is skipped). Later epochs are whole.
        * Everything else (weights, optimizer, schedulers, counters, hook states)
          is restored as usual.

        Args:
            checkpoint: Path of the checkpoint (or ``latest.pth``); its digest must verify.
            resume_optimizer: Also restore the optimizer state (needed for exactness).
            map_location: Kept for mmcv compatibility (tensors load to CPU, then
                ``load_state_dict`` moves them to the model's device).
            allow_world_size_change: Resume a checkpoint of another world size (see above).

        Raises:
            CheckpointCorruptError: the file is incomplete or fails its digest.
            CheckpointFormatError: the checkpoint lacks trackcfg's keys, or its runner
                counters, log buffer or RNG states are malformed.
            WorldSizeMismatchError: the checkpoint's world size is not this job's (and
                ``allow_world_size_change`` is False); nothing was restored.
            CheckpointError: the checkpoint does not fit the run.
        """
        del map_location
        path = Path(checkpoint)
        data = load_checkpoint_file(path)
        if data.get("trackcfg_format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{path}: not a trackcfg checkpoint (format {data.get('trackcfg_format')!r})",
                hint="use load_from / load_checkpoint to start from its weights instead",
            )
        missing = [k for k in ("meta", "state_dict", "runner", "rng") if k not in data]
        if missing:
            raise CheckpointFormatError(f"{path}: malformed trackcfg checkpoint, missing {missing}")
        rng = data["rng"]
        if not isinstance(rng, list) or not all(isinstance(r, dict) for r in rng) or not rng:
            raise CheckpointFormatError(
                f"{path}: malformed 'rng' entry: expected a list of dicts (one per rank), "
                f"got {type(rng).__name__}"
            )
        saved_world = len(rng)
        if saved_world != self.world_size and not allow_world_size_change:
            # Checked before anything is restored: a refused resume leaves the runner as is.
            raise world_size_mismatch(path, saved_world, self.world_size)
        saved_type = data.get("runner_type", type(self).__name__)
        if saved_type != type(self).__name__:
            # The counters and data positions of one loop mean nothing to the other.
            raise CheckpointError(
                f"{path}: written by a {saved_type}, cannot resume a {type(self).__name__}",
                hint="resume with the runner type the run was started with",
            )
        _unwrap(self.model).load_state_dict(cast(dict[str, torch.Tensor], data["state_dict"]))
        if resume_optimizer and "optimizer" in data and self.optimizer is not None:
            state = cast(dict[str, object], data["optimizer"])
            if isinstance(self.optimizer, Optimizer):
                self.optimizer.load_state_dict(state)
            else:
                for name, opt in self.optimizer.items():
                    opt.load_state_dict(cast(dict[str, object], state[name]))
        schedulers = cast(list[dict[str, object]], data.get("schedulers", []))
        if len(schedulers) != len(self.schedulers):
            raise CheckpointError(
                f"{path}: holds {len(schedulers)} scheduler state(s), the runner has "
                f"{len(self.schedulers)}"
            )
        for scheduler, sched_state in zip(self.schedulers, schedulers, strict=True):
            scheduler.load_state_dict(sched_state)  # type: ignore[attr-defined]
        if self.scaler is not None and data.get("amp_scaler") is not None:
            self.scaler.load_state_dict(data["amp_scaler"])  # type: ignore[attr-defined]
        with _reading(path, "runner"):
            self.epoch, self.iter, self.inner_iter = self.state.load_state_dict(
                cast(dict[str, object], data["runner"])
            )
        saved_meta = cast(dict[str, object], data.get("meta", {}))
        if self.meta is None:
            self.meta = {}
        hook_msgs = cast(dict[str, object], self.meta.setdefault("hook_msgs", {}))
        hook_msgs.update(cast(dict[str, object], saved_meta.get("hook_msgs", {})))
        if "world_size_changes" in saved_meta:
            # A forced resume earlier in the run's life: it stays on record.
            self.meta["world_size_changes"] = copy.deepcopy(saved_meta["world_size_changes"])
        if "log_buffer" in data:
            with _reading(path, "log_buffer"):
                self.log_buffer.load_state_dict(cast(dict[str, object], data["log_buffer"]))
        hook_states = cast(dict[str, dict[str, object]], data.get("hook_states", {}))
        for key, hook in self._keyed_hooks():
            if key in hook_states:
                hook.load_state_dict(hook_states[key])
            elif hook.state_dict():
                self.logger.info("resume: no saved state for hook %s, it starts fresh", key)
        rng_state = rng_state_for_rank(
            cast(list[dict[str, object]], rng),
            self.rank,
            self.world_size,
            seed=_int_or_zero(saved_meta.get("seed")),
            iteration=self.iter,
        )
        if saved_world != self.world_size:
            self._record_world_size_change(path, saved_world, saved_meta)
        cuda_states = cast(list[object], rng_state.get("cuda") or [])
        cuda_seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if cuda_states and len(cuda_states) != cuda_seen:
            raise CheckpointError(
                f"{path}: holds RNG states of {len(cuda_states)} CUDA "
                f"device(s), this process sees {cuda_seen}",
                hint="resume on the same number of GPUs for a bit-identical result",
            )
        with _reading(path, "rng"):
            check_rng_state(rng_state)
        # Applied by the loop at the boundary the checkpoint was taken at (module docstring).
        self.state.pending_rng = dict(rng_state)
        self.logger.info("resumed from %s: epoch %d, iter %d", path, self.epoch, self.iter)

    def _record_world_size_change(
        self, path: Path, saved_world: int, saved_meta: Mapping[str, object]
    ) -> None:
        """A forced resume at another world size: move the data position, record, warn."""
        # b batches per rank of the old job = the epoch's first b * batch * old samples.
        self.state.data_batch = {
            phase: batch * saved_world // self.world_size
            for phase, batch in self.state.data_batch.items()
        }
        changes = list(cast(list[object], saved_meta.get("world_size_changes", [])))
        changes.append(
            {
                "checkpoint": str(path),
                "epoch": self.epoch,
                "iter": self.iter,
                "from": saved_world,
                "to": self.world_size,
            }
        )
        assert self.meta is not None
        self.meta["world_size_changes"] = changes
        self.logger.warning(
            "resume from %s: world size changed from %d to %d (forced); the run continues "
            "reproducibly but is no longer bit-identical to an uninterrupted run",
            path,
            saved_world,
            self.world_size,
        )

    def _apply_pending_rng(self) -> None:
        """Restore the resumed RNG states now (a no-op unless `resume` left some)."""
        pending = self.state.pending_rng
        if pending is not None:
            self.state.pending_rng = None
            restore_rng_state(pending)

    # -- running ----------------------------------------------------------------------

    def _start(
        self,
        data_loaders: Sequence[object],
        workflow: Workflow,
        budget_name: str,
        budget: int | None,
    ) -> int:
        """Check a `run` call's workflow and training budget; log them; return the budget.

        Raises:
            RunnerError: a bad workflow, or no budget (``budget_name``, e.g.
                ``max_epochs``) given to the constructor or to `run`.
        """
        check_workflow(workflow, data_loaders)
        if budget is None:
            raise RunnerError(f"{budget_name} must be given (constructor or run())")
        unit = budget_name.removeprefix("max_")
        self.logger.info("workflow: %s, max: %d %s", list(workflow), budget, unit)
        return budget

    def _run_workflow(
        self,
        workflow: Workflow,
        run_once: Callable[[str, int], None],
        training_done: Callable[[], bool],
    ) -> None:
        """Cycle through ``workflow`` until ``training_done()`` (both runners' loop).

        ``run_once(mode, phase)`` runs one unit (an epoch, or an iteration) of entry
        ``phase``; a ``train`` entry stops early once training is done, and
        checkpoints requested during a unit are committed right after it. The
        workflow position (entry ``state.phase``, repetition ``state.phase_repeat``)
        lives in `RunnerState`, so a resumed run starts from the restored position
        instead of (0, 0); one resumed in the middle of the workflow (e.g. before the
        'val' that follows the last training epoch) finishes that pass first, as the
        interrupted run would have.
        """
        state = self.state
        mid_workflow = state.phase != 0 or state.phase_repeat != 0
        while not training_done() or mid_workflow:
            mid_workflow = False
            while state.phase < len(workflow):
                mode, repeats = workflow[state.phase]
                while state.phase_repeat < repeats:
                    if mode == "train" and training_done():
                        break
                    run_once(mode, state.phase)
                    state.phase_repeat += 1
                    # Unit boundary: commit checkpoints requested in after_*_epoch/iter.
                    self._commit_checkpoints()
                state.phase += 1
                state.phase_repeat = 0
            state.phase = 0

    def _run_with_hooks(self, loop: Callable[[], None]) -> None:
        """``before_run``, the loop, ``after_run`` (also on failure, with ``self.error`` set)."""
        self.error = None
        self.call_hook(Stage.BEFORE_RUN)
        try:
            loop()
        except BaseException as exc:
            self.error = exc
            try:
                self.call_hook(Stage.AFTER_RUN)
                self.wait_for_checkpoints()
            except BaseException as cleanup_exc:  # never hide the original failure
                exc.add_note(f"while finishing the failed run: {cleanup_exc!r}")
            raise
        self.call_hook(Stage.AFTER_RUN)
        self.wait_for_checkpoints()


@contextlib.contextmanager
def _reading(path: Path, key: str) -> Iterator[None]:
    """Report a malformed entry ``key`` of checkpoint ``path`` as a `CheckpointFormatError`.

    Only around trackcfg's own readers (counters, log buffer, RNG states), whose
    built-in errors mean "not shaped like what we write"; errors of hooks and
    torch's ``load_state_dict`` keep their type.
    """
    try:
        yield
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CheckpointFormatError(f"{path}: malformed {key!r} entry: {detail}") from exc


def _int_or_zero(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DataParallel/DistributedDataParallel wrappers."""
    from trackcfg.runner.parallel import unwrap_model

    return unwrap_model(model)


def _stage_table(hooks: Sequence[Hook]) -> dict[Stage, tuple[_HookFn, ...]]:
    """For every stage, the bound methods of the ``hooks`` (in order) that act there."""
    table: dict[Stage, list[_HookFn]] = {s: [] for s in Stage}
    for hook in hooks:
        for name in hook.get_triggered_stages():
            table[Stage(name)].append(getattr(hook, name))
    return {stage: tuple(fns) for stage, fns in table.items()}


def _check_stage_methods(hook: Hook) -> None:
    """Reject public ``before_*``/``after_*`` methods that name no stage (likely typos)."""
    for name in dir(type(hook)):
        if name.startswith("_") or not name.startswith(("before_", "after_")):
            continue
        if name in _STAGE_NAMES or not callable(getattr(type(hook), name, None)):
            continue
        close = difflib.get_close_matches(name, sorted(_STAGE_NAMES), n=1)
        raise HookRegistrationError(
            f"{type(hook).__name__}.{name} is not a hook stage, so it would never be called",
            hint=f"did you mean {close[0]!r}?" if close else "see trackcfg.Stage for the stages",
        )


def world_size_mismatch(path: Path, saved_world: int, world_size: int) -> WorldSizeMismatchError:
    """The refusal to resume ``path`` (saved by ``saved_world`` ranks) in ``world_size`` ranks."""
    return WorldSizeMismatchError(
        f"{path}: saved by a job of {saved_world} rank(s), this job has "
        f"{world_size}: the per-rank RNG streams and each rank's data shard "
        f"position cannot be carried over",
        hint=f"resume with {saved_world} rank(s) for a bit-identical run, or force it "
        "(runner.resume(..., allow_world_size_change=True), `trackcfg resume "
        "--force-world-size`): reproducible, no longer bit-identical",
    )


def saved_world_size(path: str | Path) -> int:
    """How many ranks the job that wrote checkpoint ``path`` had (its per-rank RNG states).

    Raises:
        CheckpointCorruptError: the file does not verify or does not load.
        CheckpointFormatError: it has no per-rank RNG list.
    """
    rng = load_checkpoint_file(path).get("rng")
    if not isinstance(rng, list) or not rng:
        raise CheckpointFormatError(f"{path}: malformed 'rng' entry: expected a list per rank")
    return len(rng)
