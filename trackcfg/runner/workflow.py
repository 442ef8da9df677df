"""Workflow: the ``[('train', n), ('val', m), ...]`` list both runners cycle through.

mmcv's semantics: the entries run in order, each ``count`` times (epochs for
`EpochBasedRunner`, iterations for `IterBasedRunner`), over and over until the
training budget is used up; a ``val`` entry never counts towards it. The loop
itself is `BaseRunner._run_workflow`; this module checks the list.
"""

from __future__ import annotations

from collections.abc import Sequence

from trackcfg.errors import RunnerError

__all__ = ["Workflow", "check_workflow"]

Workflow = Sequence[tuple[str, int]]


def check_workflow(workflow: Workflow, data_loaders: Sequence[object]) -> None:
    """Validate a workflow against its data loaders (one loader per entry).

    Raises:
        RunnerError: length mismatch, an unknown mode, or a non-positive count.
    """
    if len(workflow) != len(data_loaders):
        raise RunnerError(
            f"workflow has {len(workflow)} entries but {len(data_loaders)} data loader(s) "
            "were given",
            hint="pass one data loader per workflow entry, e.g. [train_loader, val_loader]",
        )
    for i, entry in enumerate(workflow):
        if (
            not isinstance(entry, tuple | list)
            or len(entry) != 2
            or entry[0] not in ("train", "val")
            or not isinstance(entry[1], int)
            or entry[1] < 1
        ):
            raise RunnerError(
                f"workflow[{i}] must be ('train'|'val', count >= 1), got {entry!r}",
                key_path=f"workflow.{i}",
            )
    if not any(mode == "train" for mode, _ in workflow):
        raise RunnerError("workflow has no 'train' entry, so the run would never end")
