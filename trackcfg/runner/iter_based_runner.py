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

from trackcfg.registry import RUNNERS
from trackcfg.runner.base_runner import BaseRunner
from trackcfg.runner.sampler import iter_from
from trackcfg.runner.stage import Stage
from trackcfg.runner.workflow import Workflow

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
        return iter_from(self._dataloader, self.epoch, self.position)


@RUNNERS.register_module()
class IterBasedRunner(BaseRunner):
    """Iteration-based runner (mmcv 1.x ``IterBasedRunner``)."""

    default_filename_tmpl = "iter_{}.pth"
    hooks_by_epoch = False

    def _checkpoint_number(self) -> int:
        return self.iter + 1

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
        if max_iters is not None:
            self.state.max_iters = max_iters
        total_iters = self._start(data_loaders, workflow, "max_iters", self.state.max_iters)
        state = self.state
        loaders = [
            IterLoader(dl, state.data_epoch.get(i, 0), state.data_batch.get(i, 0))
            for i, dl in enumerate(data_loaders)
        ]

        def run_iteration(mode: str, phase: int) -> None:
            self.inner_iter = state.phase_repeat
            loader = loaders[phase]
            if mode == "train":
                self.train(loader, **kwargs)
            else:
                self.val(loader, **kwargs)
            state.data_epoch[phase] = loader.epoch
            state.data_batch[phase] = loader.position

        def loop() -> None:
            self.call_hook(Stage.BEFORE_TRAIN_EPOCH)
            # Iteration boundary the checkpoint was taken at: nothing random happened
            # since, in the checkpointed process (before_train_epoch fired long before).
            self._apply_pending_rng()
            self._run_workflow(workflow, run_iteration, lambda: self.iter >= total_iters)
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
        self._train_iter(data_batch, kwargs)

    @torch.no_grad()
    def val(self, data_loader: IterLoader, **kwargs: object) -> None:
        """One validation iteration (no gradients)."""
        self.model.eval()
        self.mode = "val"
        self.data_loader = data_loader
        self._val_iter(next(data_loader), kwargs)
