"""train: the config-driven entry point (mmdet 2.x's ``train_detector`` layout).

Reads, from a resolved config::

    model, data=dict(samples_per_gpu, workers_per_gpu, train, val),
    optimizer, optimizer_config, fp16, lr_config, momentum_config,
    runner=dict(type='EpochBasedRunner', max_epochs=N) | dict(type='IterBasedRunner', max_iters=N),
    checkpoint_config, log_config, custom_hooks, evaluation, workflow, seed, deterministic,
    diff_rank_seed, ddp (DistributedDataParallel arguments), work_dir, resume_from, load_from

Under torchrun (world size > 1) the model is wrapped in
`StepDistributedDataParallel` (gloo on CPU, NCCL on GPU is the launcher's choice),
which reduces gradients exactly (the same bits whatever DDP's bucket layout, so a
resume is bit-identical at any rank count) unless ``ddp=dict(exact_reduction=False)``.

``evaluation=dict(interval=1, save_best='auto', metric=...)`` registers an
`EvalHook` (`DistEvalHook` under torchrun) at priority LOW on a loader of
``data.val`` in dataset order (``data.val.samples_per_gpu`` or the training batch
size), as mmdet 2.x's ``train_detector``.

It builds everything through the registries (``MODELS``, ``DATASETS``,
``OPTIMIZERS``, ``HOOKS``, ``RUNNERS``). Order matters for reproducibility:
the seed is applied *before* the model is built (so its initial weights are
a function of the seed) and data loaders draw nothing from the global RNGs
(their order and augmentation come from `trackcfg.runner.sampler`).

``resume_from='auto'`` picks the newest complete checkpoint in the work dir
(skipping torn or corrupt files, falling back to older ones); with none, the
run starts from scratch.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import secrets
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from trackcfg.errors import (
    ArgumentError,
    CheckpointCorruptError,
    ConfigBuildError,
    ConfigError,
    RunnerError,
    TrackcfgError,
)
from trackcfg.runner.plan import TrainingPlan, config_section

if TYPE_CHECKING:
    from trackcfg.config.config import Config
    from trackcfg.config.location import Assignment, Location
    from trackcfg.runner.base_runner import BaseRunner
    from trackcfg.runner.hooks.hook import Hook

__all__ = ["TextLogFile", "resolve_resume_checkpoint", "train"]

_LOG = "trackcfg.train"
# mmcv's log line format, for the run's text log in the work dir.
_LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


class TextLogFile(logging.FileHandler):
    """The run's text log file: a line it cannot write (a full disk) costs a warning, once.

    `logging` would print a traceback for every line that fails; the run goes on
    either way (its metrics are journaled elsewhere), so one line on stderr says
    what the file misses.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._failed = False

    def flush(self) -> None:
        # Called by close() too: a full disk at the end is no traceback either.
        try:
            super().flush()
        except OSError:
            self.handleError(None)

    def handleError(self, record: logging.LogRecord | None) -> None:
        if not self._failed:
            self._failed = True
            error = sys.exc_info()[1]
            sys.stderr.write(
                f"trackcfg: cannot write the text log {self.baseFilename} ({error}); lines "
                "are missing from it while this lasts, the run goes on\n"
            )


def _config_dict(cfg: object) -> dict[str, object]:
    to_dict = getattr(cfg, "to_dict", None)
    if callable(to_dict):
        return cast(dict[str, object], to_dict())
    if isinstance(cfg, Mapping):
        return copy.deepcopy(dict(cfg))
    raise TypeError(f"train() expects a Config or a dict, got {type(cfg).__name__}")


def _config_hash(cfg: object, data: dict[str, object]) -> str:
    value = getattr(cfg, "hash", None)
    if isinstance(value, str):
        return value
    from trackcfg.config.canonical import digest, to_canonical_bytes

    return digest(to_canonical_bytes(data))


def _location(cfg: object, key_path: str) -> Location | None:
    """Where ``key_path`` was last set (file:line), if ``cfg`` records provenance."""
    provenance = getattr(cfg, "provenance", None)
    if not callable(provenance):
        return None
    try:
        history = cast("tuple[Assignment, ...]", provenance(key_path))
    except (KeyError, ValueError):
        return None
    return history[-1].location if history else None


def _locate(cfg: object, error: ArgumentError) -> None:
    """Give ``error`` the file and line of its key path, or of the nearest key above it.

    A hook argument that comes from defaults (e.g. ``log_config.interval`` handed to
    each logger) has no line of its own; the enclosing section's is the nearest one
    the provenance backs.
    """
    if error.location is not None or not error.key_path:
        return
    from trackcfg.config.keypath import KeyPath

    path = KeyPath.parse(error.key_path)
    while len(path):
        location = _location(cfg, str(path))
        if location is not None:
            error.locate(location=location)
            return
        path = path.parent


@contextlib.contextmanager
def _building(cfg: object, data: Mapping[str, object], key_path: str | None) -> Iterator[None]:
    """Turn what a constructor raises while ``key_path`` is built into one located error.

    ``trackcfg run`` prints a `TrackcfgError` as one message; a constructor's own
    exception (``TypeError: SGD.__init__() got an unexpected keyword argument``) would
    be a traceback naming trackcfg's frames. The error names where the section's type
    was set and the options that changed the section; the original exception is its
    ``__cause__`` (type and traceback kept, printed with ``--debug``).
    """
    try:
        yield
    except TrackcfgError:
        raise
    except Exception as exc:
        raise _build_error(cfg, data, key_path, exc) from exc


def _build_error(
    cfg: object, data: Mapping[str, object], key_path: str | None, exc: Exception
) -> ConfigBuildError:
    section: object = data
    for part in (key_path or "").split(".") if key_path else ():
        section = section.get(part) if isinstance(section, Mapping) else None
    what = "the training hooks" if key_path is None else key_path
    if isinstance(section, Mapping) and "type" in section:
        what = repr(section["type"])
    location = None if key_path is None else _location(cfg, f"{key_path}.type")
    if location is None and key_path is not None:
        location = _location(cfg, key_path)
    details: list[str] = []
    options = getattr(cfg, "options", None)
    if isinstance(options, Mapping):
        details += [
            f"set by --cfg-options: {key}={value!r}"
            for key, value in options.items()
            if key_path is None or key == key_path or key.startswith(key_path + ".")
        ]
    if key_path is None:
        # The hook sections are built by the runner; the registry's note names which.
        details += [note for note in getattr(exc, "__notes__", ()) if isinstance(note, str)]
    return ConfigBuildError(
        f"cannot build {what}: {type(exc).__name__}: {exc}",
        location=location,
        key_path=key_path,
        details=details,
    )


def resolve_resume_checkpoint(
    resume_from: str | Path | None, work_dir: Path, logger: logging.Logger
) -> Path | None:
    """Turn ``resume_from`` into a verified checkpoint path (``'auto'``: newest complete one).

    Raises:
        CheckpointError: an explicit path that does not exist.
        CheckpointCorruptError: an explicit path that fails its digest.
    """
    from trackcfg.runner.checkpoint import (
        list_checkpoints,
        remove_stale_temp_files,
        verify_checkpoint_file,
    )

    if resume_from is None:
        return None
    if str(resume_from) != "auto":
        return Path(resume_from)
    for stale in remove_stale_temp_files(work_dir):
        logger.info("resume_from='auto': removed %s (a write interrupted by a crash)", stale)
    for path, _record in list_checkpoints(work_dir):
        try:
            # The digest alone: `resume` loads the chosen file (torch.load once, not twice).
            verify_checkpoint_file(path)
        except CheckpointCorruptError as exc:
            logger.warning("resume_from='auto': skipping %s: %s", path, exc)
            continue
        return path
    logger.info("resume_from='auto': no complete checkpoint in %s, starting fresh", work_dir)
    return None


def _register_eval_hook(
    runner: BaseRunner,
    cfg: object,
    data_cfg: Mapping[str, object],
    evaluation: Mapping[str, object],
    samples_per_gpu: int,
    data_seed: int,
) -> None:
    """Register the ``evaluation`` section's hook on a ``data.val`` loader (mmdet 2.x).

    Raises:
        ConfigError: no ``data.val``.
    """
    from trackcfg.registry import DATASETS, HOOKS
    from trackcfg.runner.dist import get_dist_info
    from trackcfg.runner.sampler import build_dataloader

    if "val" not in data_cfg:
        raise ConfigError("evaluation needs data.val", key_path="data.val")
    val_cfg = dict(cast(Mapping[str, object], data_cfg["val"]))
    per_gpu = cast(int, val_cfg.pop("samples_per_gpu", samples_per_gpu))
    dataset = DATASETS.build(val_cfg, key_path="data.val", location=_location(cfg, "data.val.type"))
    loader = build_dataloader(
        dataset,
        per_gpu,
        cast(int, data_cfg.get("workers_per_gpu", 0)),
        seed=data_seed,
        shuffle=False,
        persistent_workers=False,
    )
    hook_type = "DistEvalHook" if get_dist_info()[1] > 1 else "EvalHook"
    hook = HOOKS.build(
        {"type": hook_type, **evaluation},
        default_args={"dataloader": loader},
        key_path="evaluation",
        location=_location(cfg, "evaluation"),
    )
    runner.register_hook(cast("Hook", hook), "LOW")


def train(
    cfg: Config | Mapping[str, object],
    work_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    extra_hooks: Sequence[tuple[Hook, int | str]] = (),
    load_from: str | Path | None = None,
    *,
    allow_world_size_change: bool = False,
) -> BaseRunner:
    """Build model, data, optimizer, runner and hooks from ``cfg`` and run the workflow.

    Args:
        cfg: The resolved config (a `Config`, or a plain dict of the same layout).
        work_dir: Overrides ``cfg.work_dir``.
        resume_from: Overrides ``cfg.resume_from``: a checkpoint path or ``'auto'``.
        extra_hooks: ``(hook, priority)`` pairs registered after the config's hooks
            (how ``trackcfg run`` attaches MLflow hooks the config does not name).
        load_from: Overrides ``cfg.load_from`` (a local file; ``trackcfg run`` resolves a
            ``'run:<RUN_ID>'`` or URI ``load_from`` to one and passes it here).
        allow_world_size_change: Resume a checkpoint written by a job of another world
            size (see `BaseRunner.resume`: reproducible, no longer bit-identical, recorded
            in ``runner.meta['world_size_changes']``). Without it such a resume raises
            `WorldSizeMismatchError`.

    Returns:
        The runner, after the run finished (checkpoints flushed).

    Raises:
        ConfigError: a missing or malformed section (``model``, ``data``, ``work_dir``...).
        ConfigBuildError: a constructor the config names raised while model, data,
            optimizer, runner or hooks were built (the original is its ``__cause__``).
        CheckpointError: an explicit ``resume_from`` that cannot be loaded.
        WorldSizeMismatchError: the checkpoint to resume is of another world size.
    """
    from trackcfg.registry import DATASETS, MODELS, OPTIMIZERS, RUNNERS
    from trackcfg.runner.determinism import apply_determinism
    from trackcfg.runner.dist import get_dist_info
    from trackcfg.runner.sampler import build_dataloader

    data = _config_dict(cfg)
    config_hash = _config_hash(cfg, data)
    plan = TrainingPlan.from_config(data)
    work_dir = work_dir if work_dir is not None else plan.work_dir
    if work_dir is None:
        raise ConfigError("no work_dir", key_path="work_dir", hint="set work_dir in the config")
    work_path = Path(work_dir).resolve()
    work_path.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(_LOG)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)  # as mmcv's get_logger; handlers still filter

    seed = data.get("seed")
    if seed is None:
        # Recorded in meta, so even an unseeded run can be repeated.
        seed = secrets.randbits(31)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"expected an int, got {seed!r}", key_path="seed")
    data_seed = seed  # one data order for all ranks (each takes its shard of it)
    if data.get("diff_rank_seed", False):
        # mmengine's randomness.diff_rank_seed / mmdet's --diff-seed: each rank its own
        # stream (dropout differs per rank); the data order stays that of `seed`.
        seed += get_dist_info()[0]
    settings = apply_determinism(seed, bool(data.get("deterministic", False)))

    for key in ("model", "data", "optimizer"):
        if key not in data:
            raise ConfigError("missing section", key_path=key)
    with _building(cfg, data, "model"):
        model = MODELS.build(data["model"], key_path="model", location=_location(cfg, "model.type"))

    data_cfg = config_section(data, "data") or {}
    workflow = list(plan.workflow)
    samples_per_gpu = cast(int, data_cfg.get("samples_per_gpu", 1))
    workers_per_gpu = cast(int, data_cfg.get("workers_per_gpu", 0))
    persistent = bool(data_cfg.get("persistent_workers", True))
    loaders = []
    for mode, _count in workflow:
        split = "train" if mode == "train" else "val"
        if split not in data_cfg:
            raise ConfigError(f"workflow needs data.{split}", key_path=f"data.{split}")
        with _building(cfg, data, f"data.{split}"):
            dataset = DATASETS.build(
                data_cfg[split],
                key_path=f"data.{split}",
                location=_location(cfg, f"data.{split}.type"),
            )
        with _building(cfg, data, "data"):
            loaders.append(
                build_dataloader(
                    dataset,
                    samples_per_gpu,
                    workers_per_gpu,
                    seed=data_seed,
                    shuffle=split == "train",
                    persistent_workers=persistent,
                )
            )

    with _building(cfg, data, "optimizer"):
        optimizer = OPTIMIZERS.build(
            data["optimizer"],
            default_args={"params": model.parameters()},
            key_path="optimizer",
            location=_location(cfg, "optimizer.type"),
        )
    if get_dist_info()[1] > 1:
        # mmdet's MMDistributedDataParallel: gradients averaged, rank 0's parameters and
        # buffers broadcast; the optimizer holds the same Parameter objects.
        from trackcfg.runner.parallel import StepDistributedDataParallel

        ddp_args = dict(config_section(data, "ddp") or {})
        # Ours, not DDP's: the comm hook that makes a resume bit-identical at >= 3 ranks.
        exact = ddp_args.pop("exact_reduction", True)
        if not isinstance(exact, bool):
            raise ConfigError(
                f"expected True or False, got {exact!r}",
                key_path="ddp.exact_reduction",
                location=_location(cfg, "ddp.exact_reduction"),
            )
        with _building(cfg, data, "ddp"):
            model = StepDistributedDataParallel(model, exact_reduction=exact, **ddp_args)
    runner_cfg = dict(plan.runner)
    meta: dict[str, object] = {
        "config_hash": config_hash,
        "seed": seed,
        "determinism": settings.to_dict(),
        "exp_name": Path(str(getattr(cfg, "filename", None) or "config")).name,
    }
    with _building(cfg, data, "runner"):
        runner = cast(
            "BaseRunner",
            RUNNERS.build(
                runner_cfg,
                default_args={
                    "model": model,
                    "optimizer": optimizer,
                    "work_dir": str(work_path),
                    "logger": logger,
                    "meta": meta,
                },
                key_path="runner",
                location=_location(cfg, "runner.type"),
            ),
        )
    optimizer_config = config_section(data, "optimizer_config")
    fp16 = config_section(data, "fp16")
    if fp16 is not None:
        # mmdet 2.x: `fp16=dict(loss_scale=...)` turns the optimizer hook into Fp16OptimizerHook
        # (an accumulating one into its fp16 variant).
        accumulating = (optimizer_config or {}).get("type") == "GradientCumulativeOptimizerHook"
        fp16_type = "GradientCumulativeFp16OptimizerHook" if accumulating else "Fp16OptimizerHook"
        optimizer_config = {**(optimizer_config or {}), **fp16, "type": fp16_type}
    # The run's text log, `{timestamp}.log` next to TextLoggerHook's `.log.json` (rank 0).
    handler: logging.Handler | None = None
    if runner.rank == 0:
        handler = TextLogFile(work_path / f"{runner.timestamp}.log")
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        logger.addHandler(handler)
    try:
        with _building(cfg, data, None):
            runner.register_training_hooks(
                config_section(data, "lr_config"),
                optimizer_config,
                config_section(data, "checkpoint_config"),
                config_section(data, "log_config"),
                momentum_config=config_section(data, "momentum_config"),
                custom_hooks_config=cast(
                    "Sequence[Mapping[str, object]] | None", data.get("custom_hooks")
                ),
            )
        if plan.evaluation is not None:
            with _building(cfg, data, "evaluation"):
                _register_eval_hook(
                    runner, cfg, data_cfg, plan.evaluation, samples_per_gpu, data_seed
                )
        for hook, priority in extra_hooks:
            runner.register_hook(hook, priority)

        resume = (
            resume_from if resume_from is not None else cast(str | None, data.get("resume_from"))
        )
        checkpoint = resolve_resume_checkpoint(resume, work_path, logger)
        if checkpoint is not None:
            runner.resume(checkpoint, allow_world_size_change=allow_world_size_change)
        else:
            initial = load_from if load_from is not None else data.get("load_from")
            if initial:
                spec = str(initial)
                if spec.startswith("run:") or ":/" in spec:
                    raise ConfigError(
                        f"{spec!r} names a tracked run or a URI, which train() cannot fetch",
                        key_path="load_from",
                        hint="use `trackcfg run`, which downloads and verifies it first",
                    )
                runner.load_checkpoint(spec)

        run = getattr(runner, "run", None)
        if not callable(run):
            raise RunnerError(f"{type(runner).__name__} has no run()")
        run(loaders, workflow)
    except ArgumentError as exc:
        # A hook rejected an argument (when built or later): the runner named its key
        # path (``lr_config.warmup_iters``), the config knows where that was set.
        _locate(cfg, exc)
        raise
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
    return runner
