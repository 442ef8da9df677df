"""EvalHook / DistEvalHook: evaluate during training and keep the best checkpoint (mmcv 1.x).

``evaluation = dict(interval=1, metric='accuracy', save_best='auto')`` makes `train`
register an `EvalHook` (a `DistEvalHook` under torch.distributed) at priority LOW, on
a loader of ``data.val``. Every ``interval`` epochs (or iterations with
``by_epoch=False``; from epoch ``start`` on, when given) it runs the model over the
loader, calls ``dataset.evaluate(results, logger=..., **eval_kwargs)`` as mmcv does,
and puts the metrics in ``runner.log_buffer.output``: the logger hooks (VERY_LOW, so
after this one) log them as ``val/<metric>`` at the current step, MLflow included.

With ``save_best`` (a metric name, or ``'auto'`` for the first one ``evaluate``
returns) a better score (``rule`` 'greater' or 'less', inferred from the name with
``greater_keys``/``less_keys`` as mmcv) saves ``best_<metric>_epoch_<N>.pth``
(``iter_<N>`` by iteration) through ``runner.save_checkpoint`` — a full checkpoint,
as resumable as any other — and records it in ``runner.meta['hook_msgs']``
(``best_score``, ``best_ckpt``), as mmcv does.

Where we differ from mmcv, on purpose:

- The best score, the best file, the resolved metric and rule, and whether the
  initial evaluation (``start`` <= the first epoch) happened are the hook's state,
  saved in every checkpoint: a resumed run compares against the best score it had,
  and does not evaluate a second time at the resumed epoch.
- The previous best file is deleted only once the new one is durably complete
  (the runner's checkpoint listener), never before: a crash in between leaves a
  best checkpoint on disk. `CheckpointHook`'s keep-last-K only matches its own
  name template, so it never deletes a best file.
- The model's training mode is restored after an evaluation (mmcv left it in eval
  mode until the next epoch).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from torch import nn

from trackcfg.errors import ArgumentTypeError, ArgumentValueError, RunnerError
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.hooks.logger import LoggerHook
from trackcfg.runner.inference import multi_gpu_test, single_gpu_test

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner
    from trackcfg.runner.checkpoint import SavedCheckpoint

__all__ = ["DistEvalHook", "EvalHook"]

TestFn = Callable[[nn.Module, Iterable[object]], list[object]]

_RULES: dict[str, Callable[[float, float], bool]] = {
    "greater": lambda x, y: x > y,
    "less": lambda x, y: x < y,
}
_INIT_VALUE = {"greater": -math.inf, "less": math.inf}


def _evaluating_dataset(dataloader: object) -> object:
    """The dataset with ``evaluate`` behind ``dataloader`` (through wrappers such as
    `trackcfg.runner.sampler.SeededDataset`, which keep theirs in ``.dataset``)."""
    dataset = getattr(dataloader, "dataset", None)
    while dataset is not None and not callable(getattr(dataset, "evaluate", None)):
        dataset = getattr(dataset, "dataset", None)
    return dataset


def _keys(value: str | Sequence[str] | None, default: Sequence[str], key_path: str) -> list[str]:
    if value is None:
        return list(default)
    keys = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(k, str) for k in keys):
        raise ArgumentTypeError(f"must be a str or a list of str, got {value!r}", key_path=key_path)
    return keys


@HOOKS.register_module()
class EvalHook(Hook):
    """Evaluate on ``dataloader`` every ``interval`` epochs/iterations; keep the best checkpoint.

    Args:
        dataloader: Yields the evaluation batches; ``dataloader.dataset.evaluate`` scores
            the results.
        start: First epoch (iteration) to evaluate at; when it is <= the epoch the run
            starts at, the hook also evaluates before training (mmcv).
        interval: Evaluate every ``interval`` epochs (iterations).
        by_epoch: Count in epochs (after each training epoch) or iterations.
        save_best: Metric that picks the best checkpoint; ``'auto'``: the first metric
            ``evaluate`` returns; None: keep no best checkpoint.
        rule: ``'greater'`` or ``'less'``; None infers it from the metric's name.
        test_fn: ``fn(model, dataloader) -> results``; default `single_gpu_test`.
        greater_keys: Names (or parts of names) of metrics where greater is better.
        less_keys: Same, where less is better.
        out_dir: Directory of the best checkpoints; default the work dir (a given
            ``out_dir`` gets the work dir's base name appended, as mmcv).
        file_client_args: Must be None (mmcv's storage backends are not supported).
        **eval_kwargs: Passed to ``dataset.evaluate`` (``metric=...``).

    Raises:
        ArgumentValueError: ``interval < 1``, ``start < 0``, an unknown ``rule``, a
            ``save_best`` whose rule cannot be inferred, or ``file_client_args``.
        ArgumentTypeError: a dataloader without ``dataset.evaluate``, a non-str
            ``save_best`` or keys.
    """

    priority = "LOW"  # mmdet's register_hook(eval_hook, priority='LOW')

    greater_keys_default: tuple[str, ...] = (
        "acc",
        "top",
        "AR@",
        "auc",
        "precision",
        "mAP",
        "mDice",
        "mIoU",
        "mAcc",
        "aAcc",
    )
    less_keys_default: tuple[str, ...] = ("loss",)

    def __init__(
        self,
        dataloader: Iterable[object],
        start: int | None = None,
        interval: int = 1,
        by_epoch: bool = True,
        save_best: str | None = None,
        rule: str | None = None,
        test_fn: TestFn | None = None,
        greater_keys: str | Sequence[str] | None = None,
        less_keys: str | Sequence[str] | None = None,
        out_dir: str | None = None,
        file_client_args: dict[str, object] | None = None,
        **eval_kwargs: object,
    ) -> None:
        self.dataset = _evaluating_dataset(dataloader)
        if self.dataset is None:
            raise ArgumentTypeError(
                f"{type(dataloader).__name__} has no dataset with an evaluate() method",
                key_path="dataloader",
                hint="give the dataset evaluate(results, logger=None, **kwargs) -> dict",
            )
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise ArgumentValueError(
                f"must be a positive int, got {interval!r}", key_path="interval"
            )
        if start is not None and start < 0:
            raise ArgumentValueError(f"must be >= 0, got {start!r}", key_path="start")
        if save_best is not None and not isinstance(save_best, str):
            raise ArgumentTypeError(
                f"must be a metric name or None, got {type(save_best).__name__}",
                key_path="save_best",
            )
        if rule is not None and rule not in _RULES:
            raise ArgumentValueError(
                f"must be 'greater', 'less' or None, got {rule!r}", key_path="rule"
            )
        if file_client_args is not None:
            raise ArgumentValueError(
                "storage backends are not supported", key_path="file_client_args"
            )
        self.dataloader = dataloader
        self.start = start
        self.interval = interval
        self.by_epoch = by_epoch
        self.save_best = save_best
        self.test_fn: TestFn = test_fn if test_fn is not None else single_gpu_test
        self.greater_keys = _keys(greater_keys, self.greater_keys_default, "greater_keys")
        self.less_keys = _keys(less_keys, self.less_keys_default, "less_keys")
        self.out_dir = out_dir
        self.eval_kwargs = eval_kwargs
        self.rule: str | None = rule
        self.key_indicator: str | None = None
        if save_best is not None and save_best != "auto":
            self.rule = self._infer_rule(rule, save_best)
            self.key_indicator = save_best
        #: the best score so far and its checkpoint (hook state)
        self.best_score: float | None = None
        self.best_ckpt_path: str | None = None
        self.initial_flag = True
        self._listening_to: int | None = None
        self._lock = threading.Lock()
        self._superseded: dict[str, str] = {}  # new best path -> the best it replaces

    def _infer_rule(self, rule: str | None, key: str) -> str:
        """mmcv's inference: an exact key, else a key contained in the name."""
        if rule is not None:
            return rule
        lower = key.lower()
        greater = [k.lower() for k in self.greater_keys]
        less = [k.lower() for k in self.less_keys]
        if lower in greater:
            return "greater"
        if lower in less:
            return "less"
        if any(k in lower for k in greater):
            return "greater"
        if any(k in lower for k in less):
            return "less"
        raise ArgumentValueError(
            f"cannot infer whether a greater or a lower {key!r} is better",
            key_path="save_best",
            hint="set rule='greater' or rule='less'",
        )

    # -- stages --------------------------------------------------------------

    def before_run(self, runner: BaseRunner) -> None:
        if runner.work_dir is None:
            raise RunnerError("EvalHook needs runner.work_dir", hint="give the runner a work_dir")
        work_dir = Path(runner.work_dir)
        if not self.out_dir or Path(self.out_dir).resolve() == work_dir.resolve():
            self.out_dir = str(work_dir)
        elif Path(self.out_dir).name != work_dir.name:
            self.out_dir = str(Path(self.out_dir) / work_dir.name)
        if self.best_ckpt_path is not None:
            # restored by a resume as a bare name: the work dir may have moved since
            self.best_ckpt_path = str(Path(self.out_dir) / Path(self.best_ckpt_path).name)
        if self.save_best is None:
            return
        if runner.meta is None:
            runner.meta = {}
        self._publish(runner)
        if self._listening_to != id(runner):
            runner.add_checkpoint_listener(self._on_checkpoint_saved)
            self._listening_to = id(runner)

    def before_train_iter(self, runner: BaseRunner) -> None:
        if not (self.by_epoch and self.initial_flag):
            return
        self.initial_flag = False
        if self.start is not None and runner.epoch >= self.start:
            self.after_train_epoch(runner)

    def after_train_iter(self, runner: BaseRunner) -> None:
        if self.by_epoch or not self._should_evaluate(runner):
            return
        # mmcv: let the loggers log this iteration's training values first
        for hook in runner.hooks:
            if isinstance(hook, LoggerHook):
                hook.after_train_iter(runner)
        runner.log_buffer.clear()
        self._do_evaluate(runner)

    def after_train_epoch(self, runner: BaseRunner) -> None:
        if self.by_epoch and self._should_evaluate(runner):
            self._do_evaluate(runner)

    # -- evaluation ----------------------------------------------------------

    def _should_evaluate(self, runner: BaseRunner) -> bool:
        current = runner.epoch if self.by_epoch else runner.iter
        if self.start is None:
            return (current + 1) % self.interval == 0
        if current + 1 < self.start:
            return False
        return (current + 1 - self.start) % self.interval == 0

    def _results(self, runner: BaseRunner) -> list[object] | None:
        """The model's results on the whole loader (None on ranks that do not evaluate)."""
        return self.test_fn(runner.model, self.dataloader)

    def _do_evaluate(self, runner: BaseRunner) -> None:
        results = self._results(runner)
        if results is None:
            return
        runner.log_buffer.output["eval_iter_num"] = len(self.dataloader)  # type: ignore[arg-type]
        key_score = self.evaluate(runner, results)
        if self.save_best is not None and key_score is not None:
            self._save_ckpt(runner, key_score)

    def evaluate(self, runner: BaseRunner, results: list[object]) -> float | None:
        """Score ``results`` with ``dataset.evaluate``; put the metrics in the log buffer.

        Returns:
            The ``save_best`` metric's value (None without ``save_best`` or metrics).

        Raises:
            RunnerError: ``evaluate`` returned something other than a dict, or lacks the
                ``save_best`` metric.
        """
        dataset = self.dataset
        eval_res = dataset.evaluate(results, logger=runner.logger, **self.eval_kwargs)  # type: ignore[attr-defined]
        if not isinstance(eval_res, dict):
            raise RunnerError(
                f"{type(dataset).__name__}.evaluate must return a dict of metrics, "
                f"got {type(eval_res).__name__}"
            )
        for name, value in eval_res.items():
            runner.log_buffer.output[name] = value
        runner.log_buffer.ready = True
        if self.save_best is None or not eval_res:
            return None
        if self.key_indicator is None:  # 'auto': the first metric, once
            self.key_indicator = str(next(iter(eval_res)))
            self.rule = self._infer_rule(self.rule, self.key_indicator)
        if self.key_indicator not in eval_res:
            raise RunnerError(
                f"save_best={self.key_indicator!r} is not among the metrics "
                f"{type(dataset).__name__}.evaluate returned: {', '.join(map(str, eval_res))}"
            )
        return float(eval_res[self.key_indicator])

    def _save_ckpt(self, runner: BaseRunner, key_score: float) -> None:
        rule = self.rule or "greater"
        if self.by_epoch:
            current, cur_type, cur_time = f"epoch_{runner.epoch + 1}", "epoch", runner.epoch + 1
        else:
            current, cur_type, cur_time = f"iter_{runner.iter + 1}", "iter", runner.iter + 1
        best = self.best_score if self.best_score is not None else _INIT_VALUE[rule]
        if not _RULES[rule](key_score, best):
            return
        name = f"best_{self.key_indicator}_{current}.pth"
        path = str(Path(self.out_dir or str(runner.work_dir)) / name)
        with self._lock:
            if self.best_ckpt_path is not None and self.best_ckpt_path != path:
                self._superseded[path] = self.best_ckpt_path
        self.best_score = key_score
        self.best_ckpt_path = path
        self._publish(runner)
        runner.save_checkpoint(
            self.out_dir or str(runner.work_dir), filename_tmpl=name, create_symlink=False
        )
        runner.logger.info("Now best checkpoint is saved as %s.", name)
        runner.logger.info(
            "Best %s is %.4f at %d %s.", self.key_indicator, key_score, cur_time, cur_type
        )

    def _publish(self, runner: BaseRunner) -> None:
        """mmcv's contract: the best score and file in ``runner.meta['hook_msgs']``."""
        if runner.meta is None or self.best_score is None:
            return
        hook_msgs = cast(dict[str, object], runner.meta.setdefault("hook_msgs", {}))
        hook_msgs["best_score"] = self.best_score
        hook_msgs["best_ckpt"] = self.best_ckpt_path

    def _on_checkpoint_saved(self, saved: SavedCheckpoint) -> None:
        """Runner listener: a new best is durable; the one it replaces can go."""
        with self._lock:
            old = self._superseded.pop(str(saved.path), None)
        if old is not None and old != str(saved.path):
            Path(old).unlink(missing_ok=True)

    # -- state ---------------------------------------------------------------

    def state_dict(self) -> dict[str, object]:
        """Best score and file, the resolved metric and rule, and the initial-evaluation flag."""
        best = None if self.best_ckpt_path is None else Path(self.best_ckpt_path).name
        return {
            "best_score": self.best_score,
            "best_ckpt": best,  # the name: out_dir is the resuming run's
            "key_indicator": self.key_indicator,
            "rule": self.rule,
            "initial_flag": self.initial_flag,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what `state_dict` returned."""
        score = state.get("best_score")
        self.best_score = float(score) if isinstance(score, int | float) else None
        ckpt = state.get("best_ckpt")
        self.best_ckpt_path = ckpt if isinstance(ckpt, str) else None
        key = state.get("key_indicator")
        if isinstance(key, str):
            self.key_indicator = key
        rule = state.get("rule")
        if isinstance(rule, str) and rule in _RULES:
            self.rule = rule
        self.initial_flag = bool(state.get("initial_flag", self.initial_flag))


@HOOKS.register_module()
class DistEvalHook(EvalHook):
    """`EvalHook` under torch.distributed: every rank evaluates its shard, rank 0 scores.

    The results are gathered in dataset order (`multi_gpu_test`); only rank 0 calls
    ``evaluate`` and logs, every rank takes part in the best checkpoint's save (the
    runner gathers every rank's RNG state into it).

    Args:
        dataloader: A loader whose sampler shards the dataset across ranks.
        broadcast_bn_buffer: Broadcast rank 0's BatchNorm running statistics first.
        tmpdir: Accepted for mmcv compatibility (results travel by all_gather_object).
        gpu_collect: Accepted for mmcv compatibility.
        **kwargs: `EvalHook` arguments.
    """

    def __init__(
        self,
        dataloader: Iterable[object],
        broadcast_bn_buffer: bool = True,
        tmpdir: str | None = None,
        gpu_collect: bool = False,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("test_fn", multi_gpu_test)
        super().__init__(dataloader, **kwargs)  # type: ignore[arg-type]
        self.broadcast_bn_buffer = broadcast_bn_buffer
        self.tmpdir = tmpdir
        self.gpu_collect = gpu_collect

    def _results(self, runner: BaseRunner) -> list[object] | None:
        import torch.distributed as dist
        from torch.nn.modules.batchnorm import _BatchNorm

        if self.broadcast_bn_buffer and dist.is_available() and dist.is_initialized():
            for module in runner.model.modules():
                if isinstance(module, _BatchNorm) and module.track_running_stats:
                    for buffer in (module.running_var, module.running_mean):
                        if buffer is not None:
                            dist.broadcast(buffer, 0)
        results = self.test_fn(runner.model, self.dataloader)
        return results if runner.rank == 0 else None

    def _do_evaluate(self, runner: BaseRunner) -> None:
        results = self._results(runner)
        key_score: float | None = None
        if results is not None:
            runner.log_buffer.output["eval_iter_num"] = len(self.dataloader)  # type: ignore[arg-type]
            key_score = self.evaluate(runner, results)
        if self.save_best is None:
            return
        from trackcfg.runner.dist import all_gather_object

        # every rank must call save_checkpoint together: rank 0's score (and, with
        # 'auto', the metric it resolved) decides
        decided = all_gather_object((key_score, self.key_indicator, self.rule))[0]
        key_score, self.key_indicator, self.rule = cast(
            "tuple[float | None, str | None, str | None]", decided
        )
        if key_score is not None:
            self._save_ckpt(runner, key_score)
