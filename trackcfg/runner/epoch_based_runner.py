"""EpochBasedRunner: the epoch loop of mmcv 1.x, resumable at any iteration.

Workflow semantics are mmcv's: ``workflow=[('train', 2), ('val', 1)]`` runs two
training epochs then one validation epoch, over and over, until ``max_epochs``
*training* epochs are done (a ``val`` entry never counts, and a ``train`` entry
stops early once the budget is used up).

Where we differ from mmcv, on purpose: the loop keeps its workflow position
(entry and repetition) and the data position (batch within the epoch) in
`RunnerState`, so a resume continues at the exact next iteration — mid-epoch
included, without re-reading the consumed batches — instead of restarting
the epoch (mmcv) or re-fetching the skipped batches (mmengine). On a mid-epoch
resume ``before_train_epoch`` fires again for the partial epoch (hooks must
make it depend only on runner state, as the built-in ones do).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import cast

import torch

from trackcfg.registry import RUNNERS
from trackcfg.runner.base_runner import BaseRunner
from trackcfg.runner.sampler import iter_from, resumable_batch_sampler
from trackcfg.runner.stage import Stage
from trackcfg.runner.workflow import Workflow

__all__ = ["EpochBasedRunner"]


@RUNNERS.register_module()
class EpochBasedRunner(BaseRunner):
    """Epoch-based runner (mmcv 1.x ``EpochBasedRunner``)."""

    default_filename_tmpl = "epoch_{}.pth"

    def run(
        self,
        data_loaders: Sequence[Iterable[object]],
        workflow: Workflow,
        max_epochs: int | None = None,
        **kwargs: object,
    ) -> None:
        """Run the workflow until ``max_epochs`` training epochs are complete.

        Args:
            data_loaders: One data loader per workflow entry.
            workflow: ``[('train', n), ('val', m), ...]``.
            max_epochs: Overrides the constructor's value (deprecated in mmcv, kept).
            **kwargs: Passed to ``train_step``/``val_step``.

        Raises:
            RunnerError: a bad workflow, or no ``max_epochs``.
        """
        if max_epochs is not None:
            self.state.max_epochs = max_epochs
        total_epochs = self._start(data_loaders, workflow, "max_epochs", self.state.max_epochs)
        # mmcv: the iteration budget is the epochs times the first training loader's length
        first_train = next(i for i, (mode, _) in enumerate(workflow) if mode == "train")
        self.state.max_iters = total_epochs * len(cast(Sized, data_loaders[first_train]))

        def run_epoch(mode: str, phase: int) -> None:
            if mode == "train":
                self.train(data_loaders[phase], **kwargs)
            else:
                self.val(data_loaders[phase], **kwargs)
            self.state.data_batch.pop(phase, None)  # the entry's next epoch starts afresh

        self._run_with_hooks(
            lambda: self._run_workflow(workflow, run_epoch, lambda: self.epoch >= total_epochs)
        )

    def _epoch_batches(
        self, data_loader: Iterable[object], epoch: int
    ) -> tuple[int, Iterator[object]]:
        """Position the loader at the recorded batch of ``epoch`` and return (start, iterator)."""
        start = self.state.data_batch.get(self.state.phase, 0)
        if start and resumable_batch_sampler(data_loader) is None:
            self.logger.info("resume: re-reading %d batches to reach the data position", start)
        return start, iter_from(data_loader, epoch, start)

    def train(self, data_loader: Iterable[object], **kwargs: object) -> None:
        """One training epoch (or the rest of one, after a mid-epoch resume)."""
        state = self.state
        self.model.train()
        self.mode = "train"
        self.data_loader = data_loader
        start = state.data_batch.get(state.phase, 0)
        if start == 0:
            # Epoch boundary: the checkpointed process drew nothing since then.
            self._apply_pending_rng()
        self.call_hook(Stage.BEFORE_TRAIN_EPOCH)
        start, batches = self._epoch_batches(data_loader, self.epoch)
        self._apply_pending_rng()  # mid-epoch: after the re-fired before_train_epoch
        for i, data_batch in enumerate(batches, start):
            self.inner_iter = i
            self._train_iter(data_batch, kwargs)
            state.data_batch[state.phase] = i + 1
            # Iteration boundary: counters and data position now describe "next".
            if self._pending:
                self._commit_checkpoints()
        self.call_hook(Stage.AFTER_TRAIN_EPOCH)
        self.epoch += 1

    @torch.no_grad()
    def val(self, data_loader: Iterable[object], **kwargs: object) -> None:
        """One validation epoch (no gradients)."""
        self.model.eval()
        self.mode = "val"
        self.data_loader = data_loader
        self._apply_pending_rng()
        self.call_hook(Stage.BEFORE_VAL_EPOCH)
        _, batches = self._epoch_batches(data_loader, self.epoch)
        for i, data_batch in enumerate(batches):
            self.inner_iter = i
            self._val_iter(data_batch, kwargs)
        self.call_hook(Stage.AFTER_VAL_EPOCH)
