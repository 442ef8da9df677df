"""RunnerState: the runner's loop position, as a checkpointable value.

The runner reads and advances these fields; `state_dict` / `load_state_dict`
turn them, together with the runner's counters, into plain ints for a
checkpoint. A checkpoint is always taken at a *boundary* (after the hooks of an
iteration or epoch and after the counters moved on), so the values mean "what
has been completed":

* ``epoch`` / ``iter`` / ``inner_iter`` — the counters. They are plain attributes
  of the runner (``runner.iter``), not fields here: hooks read them every
  iteration, and a property over this record would cost a function call each
  time (the overhead budget of issue 3). The runner passes them in and takes
  them back: ``epoch`` completed training epochs (mmcv's ``runner.epoch``; during
  an epoch its 0-based index), ``iter`` completed training iterations (during
  ``after_train_iter`` the 0-based index of the iteration that just ran, as in
  mmcv), ``inner_iter`` the position within the current epoch.
* ``phase`` / ``phase_repeat`` — where the workflow loop is: index into
  ``workflow`` and how many of that entry's epochs (or iterations) are done.
* ``data_epoch`` / ``data_batch`` — per workflow entry, the data loader's epoch
  and the next batch to fetch: the data position a resume starts from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RunnerState"]


@dataclass(slots=True)
class RunnerState:
    """Mutable loop position of one runner (not a record: the loop advances it in place)."""

    max_epochs: int | None = None
    max_iters: int | None = None
    phase: int = 0
    phase_repeat: int = 0
    data_epoch: dict[int, int] = field(default_factory=dict)
    data_batch: dict[int, int] = field(default_factory=dict)
    #: RNG states `BaseRunner.resume` read, applied by the loop at the boundary the
    #: checkpoint was taken at; None once applied. Not part of `state_dict` (the
    #: runner checkpoints RNG states itself).
    pending_rng: dict[str, object] | None = None

    def state_dict(self, *, epoch: int, iter: int, inner_iter: int) -> dict[str, object]:
        """Plain-int form for a checkpoint, with the runner's counters."""
        return {
            "epoch": epoch,
            "iter": iter,
            "inner_iter": inner_iter,
            "max_epochs": self.max_epochs,
            "max_iters": self.max_iters,
            "phase": self.phase,
            "phase_repeat": self.phase_repeat,
            "data_epoch": dict(self.data_epoch),
            "data_batch": dict(self.data_batch),
        }

    def load_state_dict(self, state: dict[str, object]) -> tuple[int, int, int]:
        """Restore what `state_dict` returned (max_epochs/max_iters stay as configured).

        Returns:
            The counters for the runner: ``(epoch, iter, inner_iter)``.
        """
        counters = (_int(state, "epoch"), _int(state, "iter"), _int(state, "inner_iter"))
        self.phase = _int(state, "phase")
        self.phase_repeat = _int(state, "phase_repeat")
        self.data_epoch = _int_map(state.get("data_epoch", {}))
        self.data_batch = _int_map(state.get("data_batch", {}))
        return counters


def _int(state: dict[str, object], key: str) -> int:
    value = state.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"runner state {key!r} must be an int, got {value!r}")
    return value


def _int_map(value: object) -> dict[int, int]:
    if not isinstance(value, dict):
        raise ValueError(f"runner data position must be a dict, got {value!r}")
    return {int(k): int(v) for k, v in value.items()}
