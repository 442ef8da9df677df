"""Stage: every point at which a runner calls its hooks, in firing order.

A `Hook` method is called for a stage only if its name is one of these values,
or one of the generic aliases in `GENERIC_STAGES` (``before_epoch`` fires for
both ``before_train_epoch`` and ``before_val_epoch``, as in mmcv 1.x).
"""

from __future__ import annotations

import enum

__all__ = ["GENERIC_STAGES", "Stage"]


class Stage(enum.Enum):
    """Hook stages in the order a training run fires them."""

    BEFORE_RUN = "before_run"
    BEFORE_TRAIN_EPOCH = "before_train_epoch"
    BEFORE_TRAIN_ITER = "before_train_iter"
    AFTER_TRAIN_ITER = "after_train_iter"
    AFTER_TRAIN_EPOCH = "after_train_epoch"
    BEFORE_VAL_EPOCH = "before_val_epoch"
    BEFORE_VAL_ITER = "before_val_iter"
    AFTER_VAL_ITER = "after_val_iter"
    AFTER_VAL_EPOCH = "after_val_epoch"
    AFTER_RUN = "after_run"


#: mmcv's generic hook methods and the stages each one stands for.
GENERIC_STAGES: dict[str, tuple[Stage, ...]] = {
    "before_epoch": (Stage.BEFORE_TRAIN_EPOCH, Stage.BEFORE_VAL_EPOCH),
    "after_epoch": (Stage.AFTER_TRAIN_EPOCH, Stage.AFTER_VAL_EPOCH),
    "before_iter": (Stage.BEFORE_TRAIN_ITER, Stage.BEFORE_VAL_ITER),
    "after_iter": (Stage.AFTER_TRAIN_ITER, Stage.AFTER_VAL_ITER),
}
