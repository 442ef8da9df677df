"""TrainingPlan: the config's training sections, interpreted once.

`train` and the application layer (`trackcfg.session`) both need to know where a
run writes (work dir), which runner drives it with what budget, how often it logs
and whether by epoch, and which checkpoints it keeps. They read it here, from one
interpretation of the resolved config, instead of each re-deriving the defaults.

Defaults follow mmcv 1.x: an ``EpochBasedRunner`` unless ``runner.type`` says
otherwise (``total_epochs`` of mmdet 1.x configs still names its budget), logger
hooks log by epoch under an epoch-based runner and by iteration under an
``IterBasedRunner`` unless a ``log_config`` hook sets ``by_epoch``, every 10
iterations unless ``log_config.interval`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from trackcfg.errors import ConfigError

__all__ = ["DEFAULT_LOG_INTERVAL", "TrainingPlan", "config_section"]

#: mmcv's ``log_config.interval`` default.
DEFAULT_LOG_INTERVAL = 10


@dataclass(frozen=True, slots=True)
class TrainingPlan:
    """What a resolved config asks of training, read once.

    Attributes:
        work_dir: ``work_dir`` of the config (None: not set; callers decide).
        runner: The ``runner`` section (from ``total_epochs`` in mmdet 1.x configs).
        workflow: ``workflow`` phases, e.g. ``(('train', 1), ('val', 1))``.
        log_interval: Iterations between log lines.
        log_by_epoch: Whether the logger hooks count by epoch.
        keep_last: ``checkpoint_config.max_keep_ckpts`` (None: keep every checkpoint).
        evaluation: The ``evaluation`` section (`EvalHook` arguments), with ``by_epoch``
            set from the runner type as mmdet's ``train_detector`` does; None: no
            evaluation during training.

    Example:
        >>> plan = TrainingPlan.from_config({"runner": {"type": "IterBasedRunner",
        ...     "max_iters": 100}, "log_config": {"interval": 5}})
        >>> plan.by_epoch, plan.log_interval, plan.log_by_epoch, plan.keep_last
        (False, 5, False, None)
    """

    work_dir: Path | None
    runner: Mapping[str, object]
    workflow: tuple[tuple[str, int], ...]
    log_interval: int
    log_by_epoch: bool
    keep_last: int | None
    evaluation: Mapping[str, object] | None = None

    @property
    def by_epoch(self) -> bool:
        """Whether the runner counts epochs (not iterations)."""
        return self.runner.get("type") != "IterBasedRunner"

    @classmethod
    def from_config(cls, data: Mapping[str, object]) -> TrainingPlan:
        """Interpret a resolved config (``cfg.to_dict()``).

        Raises:
            ConfigError: a section is not a dict, or no runner budget is given.
        """
        runner = config_section(data, "runner")
        if runner is None:
            if "total_epochs" not in data:
                raise ConfigError("missing section", key_path="runner")
            runner = {"type": "EpochBasedRunner", "max_epochs": data["total_epochs"]}
        work_dir = data.get("work_dir")
        if work_dir is not None and not isinstance(work_dir, (str, Path)):
            raise ConfigError(f"expected a path, got {work_dir!r}", key_path="work_dir")
        log_config = config_section(data, "log_config") or {}
        interval = log_config.get("interval", DEFAULT_LOG_INTERVAL)
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise ConfigError(
                f"expected a positive int, got {interval!r}", key_path="log_config.interval"
            )
        log_by_epoch = runner.get("type") != "IterBasedRunner"
        hooks = log_config.get("hooks")
        if isinstance(hooks, Sequence) and not isinstance(hooks, str):
            for hook in hooks:
                if isinstance(hook, Mapping) and isinstance(hook.get("by_epoch"), bool):
                    log_by_epoch = bool(hook["by_epoch"])
                    break
        keep = (config_section(data, "checkpoint_config") or {}).get("max_keep_ckpts")
        workflow = data.get("workflow", [("train", 1)])
        if not isinstance(workflow, Sequence) or isinstance(workflow, str):
            raise ConfigError(
                f"expected a list of (mode, count), got {workflow!r}", key_path="workflow"
            )
        evaluation = config_section(data, "evaluation")
        if evaluation is not None:
            # mmdet 2.x: the runner type decides, whatever the section says
            evaluation["by_epoch"] = runner.get("type") != "IterBasedRunner"
        return cls(
            work_dir=None if not work_dir else Path(work_dir),
            runner=runner,
            workflow=tuple(_phase(entry, i) for i, entry in enumerate(workflow)),
            log_interval=interval,
            log_by_epoch=log_by_epoch,
            keep_last=keep
            if isinstance(keep, int) and not isinstance(keep, bool) and keep > 0
            else None,
            evaluation=evaluation,
        )


def config_section(data: Mapping[str, object], key: str) -> dict[str, object] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a dict, got {type(value).__name__}", key_path=key)
    return dict(value)


def _phase(entry: object, index: int) -> tuple[str, int]:
    if (
        isinstance(entry, Sequence)
        and not isinstance(entry, str)
        and len(entry) == 2
        and isinstance(entry[0], str)
        and isinstance(entry[1], int)
    ):
        return entry[0], entry[1]
    raise ConfigError(f"expected (mode, count), got {entry!r}", key_path=f"workflow.{index}")
