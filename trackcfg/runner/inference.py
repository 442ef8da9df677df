"""Inference over a data loader for evaluation: mmcv 1.x's ``single_gpu_test``/``multi_gpu_test``.

A model gives one result per sample through ``test_step(data_batch) -> list`` (the
zoo's models) or, as in mmcv, ``model(return_loss=False, **data_batch) -> list``.
Nothing here draws from the global RNGs (the data loader's batches restore them, see
`trackcfg.runner.sampler`), and the model's training mode is restored afterwards, so
an evaluation in the middle of training leaves the run's state untouched.

``multi_gpu_test`` gathers the ranks' results in dataset order: the data loader's
sampler gives rank ``r`` the samples ``r, r + world_size, ...`` (padded by wrapping,
like ``DistributedSampler``), so interleaving the ranks' lists and dropping the
padding restores the dataset's order (mmcv's ``collect_results_cpu``, through
``all_gather_object`` instead of a shared temp dir).
"""

from __future__ import annotations

from collections.abc import Iterable, Sized

import torch
from torch import nn

from trackcfg.runner.dist import all_gather_object
from trackcfg.runner.parallel import unwrap_model

__all__ = ["multi_gpu_test", "single_gpu_test"]


def single_gpu_test(model: nn.Module, data_loader: Iterable[object]) -> list[object]:
    """One result per sample of ``data_loader``, in its order (model in eval mode meanwhile).

    Raises:
        TypeError: the model's step returned something other than a list or tuple.
    """
    inner = unwrap_model(model)
    was_training = model.training
    model.eval()
    results: list[object] = []
    try:
        with torch.no_grad():
            for data in data_loader:
                test_step = getattr(inner, "test_step", None)
                out = (
                    test_step(data) if callable(test_step) else model(return_loss=False, **data)  # type: ignore[arg-type]  # mmcv's protocol
                )
                if not isinstance(out, list | tuple):
                    raise TypeError(
                        f"{type(inner).__name__}.test_step must return one result per sample "
                        f"(a list), got {type(out).__name__}"
                    )
                results.extend(out)
    finally:
        model.train(was_training)
    return results


def multi_gpu_test(model: nn.Module, data_loader: Iterable[object]) -> list[object]:
    """`single_gpu_test` on this rank's shard, gathered on every rank in dataset order."""
    part = single_gpu_test(model, data_loader)
    parts = [list(p) for p in all_gather_object(part)]  # type: ignore[call-overload]
    ordered: list[object] = []
    for items in zip(*parts, strict=False):
        ordered.extend(items)
    dataset = getattr(data_loader, "dataset", None)
    size = len(dataset) if isinstance(dataset, Sized) else len(ordered)
    return ordered[:size]
