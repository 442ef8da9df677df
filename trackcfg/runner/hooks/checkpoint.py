"""CheckpointHook: save checkpoints every N epochs/iterations and keep only the newest K.

Config keys are mmcv 1.x's: ``checkpoint_config=dict(interval=1, by_epoch=True,
max_keep_ckpts=3, save_last=True, out_dir=None, filename_tmpl=...)``. The hook
decides *when*; ``runner.save_checkpoint`` decides *how* (atomic, verified, in the
background).

Keep-last-K is where we differ from mmcv. mmcv deletes older files right after
``save_checkpoint`` returns, computing their names from the interval; with a
background writer that could leave no complete checkpoint at all if the process
dies before the new file is durable, and with ``save_last`` at an off-interval
step it keeps more than K. Here old files are deleted only from the runner's
checkpoint listener, i.e. after a newer checkpoint is durably complete, and the
K kept are the K highest-numbered files of this hook's name template in its
directory (older ones from before a resume included).
"""

from __future__ import annotations

import re
import string
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch.distributed as dist

from trackcfg.config.keypath import suggest
from trackcfg.errors import ArgumentValueError, RunnerError
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.hook import Hook

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner
    from trackcfg.runner.checkpoint import SavedCheckpoint

__all__ = ["CheckpointHook"]

# The keywords mmcv's CheckpointHook forwards to runner.save_checkpoint.
_SAVE_ARGS = frozenset({"filename_tmpl", "meta", "create_symlink"})
# Its own arguments (for "did you mean" on a misspelled one).
_OWN_ARGS = (
    "interval",
    "by_epoch",
    "save_optimizer",
    "out_dir",
    "max_keep_ckpts",
    "save_last",
    "sync_buffer",
    "file_client_args",
)


def _name_pattern(filename_tmpl: str) -> re.Pattern[str]:
    """A regex matching the names ``filename_tmpl.format(n)`` produces, capturing ``n``.

    Raises:
        ArgumentValueError: the template does not have exactly one ``{}`` field.
    """
    parts: list[str] = []
    fields = 0
    for literal, field_name, _spec, _conversion in string.Formatter().parse(filename_tmpl):
        parts.append(re.escape(literal))
        if field_name is not None:
            fields += 1
            parts.append(r"(\d+)")
    if fields != 1:
        raise ArgumentValueError(
            f"must contain exactly one '{{}}' field, got {filename_tmpl!r}",
            key_path="filename_tmpl",
        )
    return re.compile("".join(parts))


@HOOKS.register_module()
class CheckpointHook(Hook):
    """Save a checkpoint every ``interval`` epochs (or iterations) and at the end.

    Args:
        interval: Save every ``interval`` epochs (``by_epoch``) or iterations; -1: only
            the last one (with ``save_last``).
        by_epoch: Count ``interval`` in epochs, saving in ``after_train_epoch``;
            otherwise in iterations, saving in ``after_train_iter``.
        save_optimizer: Include the optimizer state.
        out_dir: Directory for the files; default ``runner.work_dir``. As in mmcv, a given
            ``out_dir`` gets the work dir's base name appended.
        max_keep_ckpts: Keep only the newest this-many checkpoints; -1 keeps all.
        save_last: Also save after the last epoch/iteration, whatever the interval.
        sync_buffer: All-reduce (average) the model's buffers across ranks first.
        file_client_args: Must be None (mmcv's storage backends are not supported).
        **kwargs: Passed to ``runner.save_checkpoint`` (``filename_tmpl``, ``meta``,
            ``create_symlink``).

    Raises:
        ArgumentValueError: ``file_client_args`` or an unknown keyword given, a
            ``filename_tmpl`` that is not a str (or, with ``max_keep_ckpts > 0``, has
            not exactly one ``{}`` field), or a ``meta`` that is not a dict.
    """

    priority = "NORMAL"  # mmcv's register_checkpoint_hook priority

    def __init__(
        self,
        interval: int = -1,
        by_epoch: bool = True,
        save_optimizer: bool = True,
        out_dir: str | None = None,
        max_keep_ckpts: int = -1,
        save_last: bool = True,
        sync_buffer: bool = False,
        file_client_args: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        if file_client_args is not None:
            raise ArgumentValueError(
                "storage backends are not supported",
                key_path="file_client_args",
                hint="use out_dir",
            )
        self.interval = interval
        self.by_epoch = by_epoch
        self.save_optimizer = save_optimizer
        self.out_dir = out_dir
        self.max_keep_ckpts = max_keep_ckpts
        self.save_last = save_last
        self.sync_buffer = sync_buffer
        unknown = sorted(set(kwargs) - _SAVE_ARGS)
        if unknown:
            close = suggest(unknown[0], [*_SAVE_ARGS, *_OWN_ARGS])
            raise ArgumentValueError(
                f"unknown argument(s) {', '.join(unknown)} of CheckpointHook; extra keywords "
                f"go to runner.save_checkpoint, which takes {', '.join(sorted(_SAVE_ARGS))}",
                key_path=unknown[0],
                hint=f"did you mean {close[0]!r}?" if close else None,
            )
        self.args: dict[str, object] = dict(kwargs)
        tmpl = self.args.get("filename_tmpl")
        meta = self.args.get("meta")
        if tmpl is not None and not isinstance(tmpl, str):
            raise ArgumentValueError(
                f"must be a str, got {type(tmpl).__name__}", key_path="filename_tmpl"
            )
        if meta is not None and not isinstance(meta, dict):
            raise ArgumentValueError(f"must be a dict, got {type(meta).__name__}", key_path="meta")
        self._meta: dict[str, object] | None = meta
        self._create_symlink = bool(self.args.get("create_symlink", True))
        # The runner's own default when not given (known in before_run); mmcv guessed it
        # from by_epoch, which deletes the wrong names when the two disagree.
        self.filename_tmpl: str | None = tmpl
        self._pattern = _name_pattern(tmpl) if tmpl is not None and max_keep_ckpts > 0 else None
        # Listener calls come from the runner's writer thread; one deletion pass at a time.
        self._lock = threading.Lock()
        self._listening_to: int | None = None
        self._out_dir_resolved = False

    # -- stages --------------------------------------------------------------

    def before_run(self, runner: BaseRunner) -> None:
        if runner.work_dir is None:
            raise RunnerError(
                "CheckpointHook needs runner.work_dir", hint="give the runner a work_dir"
            )
        work_dir = Path(runner.work_dir)
        if not self._out_dir_resolved:
            # mmcv: an out_dir other than the work dir gets a sub-directory named like it
            if not self.out_dir or Path(self.out_dir).resolve() == work_dir.resolve():
                self.out_dir = str(work_dir)
            else:
                self.out_dir = str(Path(self.out_dir) / work_dir.resolve().name)
            self._out_dir_resolved = True
        if self.filename_tmpl is None:
            # mmcv's default names; the runner's own when counting epochs (IterBasedRunner
            # names by iteration whatever by_epoch says).
            self.filename_tmpl = (
                str(runner.default_filename_tmpl) if self.by_epoch else "iter_{}.pth"
            )
            if self.max_keep_ckpts > 0:
                self._pattern = _name_pattern(self.filename_tmpl)
        runner.logger.info(
            f"Checkpoints will be saved to {self.out_dir} by {runner.__class__.__name__}."
        )
        if self.max_keep_ckpts > 0 and self._listening_to != id(runner):
            runner.add_checkpoint_listener(self._on_checkpoint_saved)
            self._listening_to = id(runner)

    def after_train_epoch(self, runner: BaseRunner) -> None:
        if not self.by_epoch:
            return
        if self.every_n_epochs(runner, self.interval) or (
            self.save_last and self.is_last_epoch(runner)
        ):
            runner.logger.info(f"Saving checkpoint at {runner.epoch + 1} epochs")
            self._save_checkpoint(runner)

    def after_train_iter(self, runner: BaseRunner) -> None:
        if self.by_epoch:
            return
        if self.every_n_iters(runner, self.interval) or (
            self.save_last and self.is_last_iter(runner)
        ):
            runner.logger.info(f"Saving checkpoint at {runner.iter + 1} iterations")
            self._save_checkpoint(runner)

    # -- helpers -------------------------------------------------------------

    def _save_checkpoint(self, runner: BaseRunner) -> None:
        if self.sync_buffer:
            _allreduce_buffers(runner)
        out_dir = self.out_dir or str(runner.work_dir)
        runner.save_checkpoint(
            out_dir,
            filename_tmpl=self.filename_tmpl,
            save_optimizer=self.save_optimizer,
            meta=self._meta,
            create_symlink=self._create_symlink,
        )
        step = runner.epoch + 1 if self.by_epoch else runner.iter + 1
        meta = runner.meta
        if isinstance(meta, dict) and self.filename_tmpl is not None:
            # mmcv's contract with EvalHook and friends: where the newest checkpoint is
            hook_msgs = cast(dict[str, object], meta.setdefault("hook_msgs", {}))
            hook_msgs["last_ckpt"] = str(Path(out_dir) / self.filename_tmpl.format(step))

    def _on_checkpoint_saved(self, saved: SavedCheckpoint) -> None:
        """Runner listener: a checkpoint is durably complete; drop all but the newest K."""
        if self._pattern is None or self.out_dir is None or self.filename_tmpl is None:
            return
        path = Path(saved.path)
        out_dir = Path(self.out_dir)
        match = self._pattern.fullmatch(path.name)
        if match is None or path.parent.resolve() != out_dir.resolve():
            return
        newest = int(match.group(1))
        with self._lock:
            found: list[tuple[int, Path]] = []
            for candidate in out_dir.iterdir():
                m = self._pattern.fullmatch(candidate.name)
                if m is None or candidate.is_symlink() or not candidate.is_file():
                    continue
                step = int(m.group(1))
                # Only files this template would write for that step, and never one newer
                # than the checkpoint just completed (e.g. left over from a later, abandoned run).
                if step <= newest and self.filename_tmpl.format(step) == candidate.name:
                    found.append((step, candidate))
            found.sort()
            for _step, stale in found[: -self.max_keep_ckpts]:
                stale.unlink(missing_ok=True)


def _allreduce_buffers(runner: BaseRunner) -> None:
    """Average the model's buffers over all ranks (mmcv's ``allreduce_params``)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    world_size = dist.get_world_size()
    for buffer in runner.model.buffers():
        # integer buffers (BatchNorm's num_batches_tracked) cannot be averaged in place
        if buffer.is_floating_point():
            dist.all_reduce(buffer.data.div_(world_size))
