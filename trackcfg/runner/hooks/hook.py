"""Hook: the base class of everything a runner calls around its loop.

Firing order of one `EpochBasedRunner.run` with ``workflow=[('train', 1), ('val', 1)]``::

    before_run
    for each epoch:
        before_train_epoch            # also calls before_epoch
        for each batch:
            before_train_iter         # also calls before_iter
            <train_step>
            after_train_iter          # also calls after_iter
        after_train_epoch             # also calls after_epoch
        before_val_epoch ... after_val_epoch   (same shape, no grad)
    after_run

Override either the specific stage (``after_train_iter``) or the generic one
(``after_iter``, which fires for train and val alike, as in mmcv 1.x). The
runner checks at registration that every public ``before_*``/``after_*`` method
of a hook names a real stage, so a misspelled stage is an error instead of a
method that is silently never called.

Which hooks a stage calls is decided once, when the hook is registered: those
whose class overrides the stage's method (or its generic alias), as
`get_triggered_stages` reports. Nothing a hook does later changes that; a hook
with nothing to do at a stage under its current settings returns at once.

A hook that carries state across iterations implements `state_dict` and
`load_state_dict` with plain types and tensors; the runner saves it in every
checkpoint and restores it on resume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trackcfg.runner.stage import GENERIC_STAGES, Stage

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner

__all__ = ["Hook"]


class Hook:
    """Base hook: every stage is a no-op; specific stages forward to generic ones."""

    #: Priority used when the hook is registered without one (mmcv's default).
    priority: int | str = "NORMAL"

    def before_run(self, runner: BaseRunner) -> None:
        """Called once before the first epoch/iteration."""

    def after_run(self, runner: BaseRunner) -> None:
        """Called once after the workflow ends (also after a failure is recorded)."""

    def before_epoch(self, runner: BaseRunner) -> None:
        """Generic: before a train or val epoch."""

    def after_epoch(self, runner: BaseRunner) -> None:
        """Generic: after a train or val epoch."""

    def before_iter(self, runner: BaseRunner) -> None:
        """Generic: before a train or val iteration."""

    def after_iter(self, runner: BaseRunner) -> None:
        """Generic: after a train or val iteration."""

    def before_train_epoch(self, runner: BaseRunner) -> None:
        self.before_epoch(runner)

    def before_val_epoch(self, runner: BaseRunner) -> None:
        self.before_epoch(runner)

    def after_train_epoch(self, runner: BaseRunner) -> None:
        self.after_epoch(runner)

    def after_val_epoch(self, runner: BaseRunner) -> None:
        self.after_epoch(runner)

    def before_train_iter(self, runner: BaseRunner) -> None:
        self.before_iter(runner)

    def before_val_iter(self, runner: BaseRunner) -> None:
        self.before_iter(runner)

    def after_train_iter(self, runner: BaseRunner) -> None:
        self.after_iter(runner)

    def after_val_iter(self, runner: BaseRunner) -> None:
        self.after_iter(runner)

    # -- state ---------------------------------------------------------------

    def state_dict(self) -> dict[str, object]:
        """State to checkpoint (plain types and tensors only). Stateless hooks return {}."""
        return {}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what `state_dict` returned."""

    # -- helpers (mmcv 1.x names) --------------------------------------------

    def every_n_epochs(self, runner: BaseRunner, n: int) -> bool:
        """True after every ``n``-th epoch (counting from 1)."""
        return (runner.epoch + 1) % n == 0 if n > 0 else False

    def every_n_inner_iters(self, runner: BaseRunner, n: int) -> bool:
        """True after every ``n``-th iteration within the epoch."""
        return (runner.inner_iter + 1) % n == 0 if n > 0 else False

    def every_n_iters(self, runner: BaseRunner, n: int) -> bool:
        """True after every ``n``-th iteration overall."""
        return (runner.iter + 1) % n == 0 if n > 0 else False

    def end_of_epoch(self, runner: BaseRunner) -> bool:
        """True at the last iteration of the current epoch."""
        return runner.inner_iter + 1 == len(runner.data_loader)

    def is_last_epoch(self, runner: BaseRunner) -> bool:
        """True during the last training epoch."""
        return runner.epoch + 1 == runner.max_epochs

    def is_last_iter(self, runner: BaseRunner) -> bool:
        """True at the last training iteration."""
        return runner.iter + 1 == runner.max_iters

    def get_triggered_stages(self) -> list[str]:
        """Names of the stages at which this hook does something (mmcv's helper)."""
        cls = type(self)
        triggered: list[Stage] = []
        for stage in Stage:
            if getattr(cls, stage.value) is not getattr(Hook, stage.value):
                triggered.append(stage)
        for generic, stages in GENERIC_STAGES.items():
            if getattr(cls, generic) is not getattr(Hook, generic):
                triggered.extend(stages)
        return [s.value for s in Stage if s in triggered]
