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

A hook that carries state across iterations implements `state_dict` and
`load_state_dict` with plain types and tensors; the runner saves it in every
checkpoint and restores it on resume.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from trackcfg.runner.stage import GENERIC_STAGES, Stage

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner

__all__ = ["Hook"]

_NO_STAGES: frozenset[Stage] = frozenset()


class _RunnerRefs:
    """Weak references to the runners a hook is registered in, and to the hook.

    A copy of the hook shares (shallow copy) or copies (deep copy) this object, but is
    not its owner: it starts its own at its first registration and notifies nobody
    before. A pickled one comes back empty and ownerless.
    """

    __slots__ = ("owner", "refs")

    def __init__(self, owner: Hook | None = None) -> None:
        self.owner = None if owner is None else weakref.ref(owner)
        self.refs: list[weakref.ref[BaseRunner]] = []

    def __reduce__(self) -> tuple[type[_RunnerRefs], tuple[()]]:
        return (_RunnerRefs, ())

    def owned_by(self, hook: Hook) -> bool:
        return self.owner is not None and self.owner() is hook

    def add(self, runner: BaseRunner) -> None:
        self.refs = [ref for ref in self.refs if ref() is not None]
        if not any(ref() is runner for ref in self.refs):
            self.refs.append(weakref.ref(runner))

    def notify(self) -> None:
        for ref in list(self.refs):
            runner = ref()
            if runner is not None:
                runner._rebuild_dispatch()


class Hook:
    """Base hook: every stage is a no-op; specific stages forward to generic ones."""

    #: Priority used when the hook is registered without one (mmcv's default).
    priority: int | str = "NORMAL"
    # The runners this hook is registered in, if it overrides `idle_stages`.
    _runner_refs: _RunnerRefs | None = None

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

    # -- dispatch --------------------------------------------------------------

    def idle_stages(self) -> frozenset[Stage]:
        """Stages at which this hook's method currently does nothing (default: none).

        The runner leaves the hook out of those stages' dispatch tables (fewer calls per
        iteration). A hook that overrides this must make every change of the answer
        known to its runners by calling `_idleness_changed` (e.g. from ``__setattr__``
        when an attribute the answer depends on is set): the runners rebuild their
        tables, so the hook is called again from the next call of the stage on. The
        runner asks at registration and at every rebuild.
        """
        return _NO_STAGES

    def _idleness_changed(self) -> None:
        """`idle_stages` may answer differently now: the runners rebuild their tables."""
        refs = self._runner_refs
        if refs is not None and refs.owned_by(self):
            refs.notify()

    def _attach_runner(self, runner: BaseRunner) -> None:
        """Called by ``runner.register_hook``: remember the runner (weakly) if it matters."""
        if type(self).idle_stages is Hook.idle_stages:
            return
        refs = self._runner_refs
        if refs is None or not refs.owned_by(self):
            refs = self._runner_refs = _RunnerRefs(self)
        refs.add(runner)

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
