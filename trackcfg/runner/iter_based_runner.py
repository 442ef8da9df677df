"""IterBasedRunner: the iteration loop of mmcv 1.x, resumable at any iteration.

``workflow=[('train', 100), ('val', 10)]`` runs 100 training iterations, then 10
validation iterations, over and over until ``max_iters`` training iterations
are done. Data loaders are endless (`IterLoader`): when one runs out, its
epoch advances and it starts the next pass.

As in mmengine (mmcv calls its generic ``before_epoch``/``after_epoch``
instead), ``before_train_epoch`` fires once before the first iteration and
``after_train_epoch`` once after the last; a resumed run fires
``before_train_epoch`` again. Each loader's (epoch, next batch) and the
workflow position are in `RunnerState`, so a resume continues with exactly
the next batch, skipped by index. As in mmcv, `register_training_hooks` makes
the LR, momentum, checkpoint and logger hooks count iterations (``by_epoch=False``)
unless their config says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import cast

import torch

from trackcfg.errors import RunnerError
from trackcfg.registry import RUNNERS
from trackcfg.runner.base_runner import DEFAULT_TIMER_CONFIG, BaseRunner, HookConfig
from trackcfg.runner.epoch_based_runner import Workflow, check_workflow
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.sampler import resumable_batch_sampler
from trackcfg.runner.stage import Stage

__all__ = ["IterBasedRunner", "IterLoader"]


class IterLoader:
    """An endless view of a data loader that knows its (epoch, position).

    Args:
        data_loader: The loader to cycle through.
        epoch: Epoch to start in (restored on resume).
        position: Next batch index within that epoch (restored on resume).
    """

    def __init__(self, data_loader: Iterable[object], epoch: int = 0, position: int = 0) -> None:
        self._dataloader = data_loader
        self.epoch = epoch
        self.position = position
        self._iterator: Iterator[object] | None = None

    def __len__(self) -> int:
        return len(cast(Sized, self._dataloader))

    @property
    def data_loader(self) -> Iterable[object]:
        """The wrapped loader."""
        return self._dataloader

    def __iter__(self) -> IterLoader:
        return self

    def __next__(self) -> object:
        if self._iterator is None or self.position >= len(self):
            if self.position >= len(self):
                # The pass is complete: move to the next epoch without waiting for
                # StopIteration, so the position (len == epoch done) is exact.
                self.epoch += 1
                self.position = 0
            self._iterator = self._open()
        batch = next(self._iterator)
        self.position += 1
        return batch

    def _open(self) -> Iterator[object]:
        sampler = resumable_batch_sampler(self._dataloader)
        if sampler is not None:
            sampler.set_epoch(self.epoch)
            sampler.set_start(self.position)  # skip by index, nothing is loaded
            return iter(self._dataloader)
        set_epoch = getattr(getattr(self._dataloader, "sampler", None), "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch)
        iterator = iter(self._dataloader)
        for _ in range(self.position):  # a plain loader can only skip by fetching
            next(iterator)
        return iterator


@RUNNERS.register_module()
class IterBasedRunner(BaseRunner):
    """Iteration-based runner (mmcv 1.x ``IterBasedRunner``)."""

    default_filename_tmpl = "iter_{}.pth"

    def _checkpoint_number(self) -> int:
        return self.iter + 1

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
        """As `BaseRunner.register_training_hooks`, with ``by_epoch=False`` by default.

        mmcv's IterBasedRunner does the same: LR, momentum, checkpoint and logger hooks
        count iterations unless their config says ``by_epoch=True``. (The caller's dicts
        are copied, not modified.)
        """

        def per_iter(config: HookConfig | Hook | None) -> HookConfig | Hook | None:
            if config is None or isinstance(config, Hook):
                return config
            return {"by_epoch": False, **config}

        if log_config is not None:
            hooks = cast(Sequence[HookConfig], log_config.get("hooks", ()))
            log_config = {**log_config, "hooks": [per_iter(h) for h in hooks]}
        super().register_training_hooks(
            per_iter(lr_config),
            optimizer_config,
            per_iter(checkpoint_config),
            log_config,
            momentum_config=per_iter(momentum_config),
            timer_config=timer_config,
            custom_hooks_config=custom_hooks_config,
        )

    def run(
        self,
        data_loaders: Sequence[Iterable[object]],
        workflow: Workflow,
        max_iters: int | None = None,
        **kwargs: object,
    ) -> None:
        """Run the workflow until ``max_iters`` training iterations are complete.

        Args:
            data_loaders: One data loader per workflow entry.
            workflow: ``[('train', n), ('val', m), ...]`` counted in iterations.
            max_iters: Overrides the constructor's value.
            **kwargs: Passed to ``train_step``/``val_step``.

        Raises:
            RunnerError: a bad workflow, or no ``max_iters``.
        """
        check_workflow(workflow, data_loaders)
        if max_iters is not None:
            self.state.max_iters = max_iters
        if self.state.max_iters is None:
            raise RunnerError("max_iters must be given (constructor or run())")
        total_iters = self.state.max_iters
        state = self.state
        loaders = [
            IterLoader(dl, state.data_epoch.get(i, 0), state.data_batch.get(i, 0))
            for i, dl in enumerate(data_loaders)
        ]
        self.logger.info("workflow: %s, max: %d iters", list(workflow), total_iters)

        def loop() -> None:
            self.call_hook(Stage.BEFORE_TRAIN_EPOCH)
            # Iteration boundary the checkpoint was taken at: nothing random happened
            # since, in the checkpointed process (before_train_epoch fired long before).
            self._apply_pending_rng()
            mid_workflow = state.phase != 0 or state.phase_repeat != 0  # see EpochBasedRunner
            while self.iter < total_iters or mid_workflow:
                mid_workflow = False
                while state.phase < len(workflow):
                    mode, repeats = workflow[state.phase]
                    while state.phase_repeat < repeats:
                        if mode == "train" and self.iter >= total_iters:
                            break
                        self.inner_iter = state.phase_repeat
                        loader = loaders[state.phase]
                        if mode == "train":
                            self.train(loader, **kwargs)
                        else:
                            self.val(loader, **kwargs)
                        state.phase_repeat += 1
                        state.data_epoch[state.phase] = loader.epoch
                        state.data_batch[state.phase] = loader.position
                        if self._pending:
                            self._commit_checkpoints()  # iteration boundary
                    state.phase += 1
                    state.phase_repeat = 0
                state.phase = 0
            self.call_hook(Stage.AFTER_TRAIN_EPOCH)
            self._commit_checkpoints()

        self._run_with_hooks(loop)

    def train(self, data_loader: IterLoader, **kwargs: object) -> None:
        """One training iteration."""
        self.model.train()
        self.mode = "train"
        self.data_loader = data_loader
        data_batch = next(data_loader)
        self.epoch = data_loader.epoch
        # hooks, step, iter += 1 (the lean path)
        self._train_iter(data_batch, kwargs, self._has_stock_step(kwargs))

    @torch.no_grad()
    def val(self, data_loader: IterLoader, **kwargs: object) -> None:
        """One validation iteration (no gradients)."""
        self.model.eval()
        self.mode = "val"
        self.data_loader = data_loader
        self._val_iter(next(data_loader), kwargs)
