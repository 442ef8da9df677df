"""Distributed model wrapper: DistributedDataParallel that keeps mmcv's train_step/val_step.

The runner calls ``model.train_step(data_batch, optimizer)``; plain DDP only
synchronises what goes through its ``forward``. `StepDistributedDataParallel`
wraps the model in a tiny module whose ``forward(step, ...)`` calls the model's
``train_step``/``val_step``, and puts DDP around that, so every step runs
inside DDP's forward (gradient all-reduce hooks armed, buffers broadcast from
rank 0) without touching DDP's private methods (mmcv's
``MMDistributedDataParallel`` re-implements them). `unwrap_model` returns the
user's model, whose ``state_dict`` keys carry no ``module.`` prefix.

Exact reduction
---------------
Plain DDP sums gradients with an all-reduce over *buckets* (flat buffers of
several gradients). The order in which the backend adds the ranks' values for
one element depends on where the element sits in its bucket (gloo's ring and
NCCL's ring/tree split the buffer into per-rank chunks, and NCCL picks its
algorithm by message size). DDP's first iteration after construction uses one
bucket layout (one bucket of every parameter), later iterations the layout it
rebuilds from the order gradients became ready. A resumed job constructs DDP
again, so its first iteration sums in another order than the uninterrupted job
did at that iteration: with 3 ranks or more, ``(a + b) + c != a + (b + c)`` in
floating point and the runs drift apart. (With 2 ranks ``a + b == b + a``.)

`StepDistributedDataParallel` therefore registers, whenever the world size is
above 1, a comm hook (`exact_reduction_hook`) that does no arithmetic in the
collective: it all-gathers each bucket and adds the ranks' gradients on every
rank in rank order, ``((g0 + g1) + g2) + ...``, then divides by the world size
(DDP's averaging). Each element's result depends on its ranks' values only, not
on bucket layout, bucket size, backend algorithm or which rank computes it.
Cost: one collective per bucket as plain DDP, but each rank receives
``(world_size - 1)`` bucket copies instead of about 2, and holds ``world_size``
copies of a bucket while adding (see ``tests/benchmarks/bench_ddp.py``).
Opt out with ``ddp=dict(exact_reduction=False)`` (a resume is then bit-identical
only with 1 or 2 ranks).
"""

# No `from __future__ import annotations`: DDP's register_comm_hook compares the hook's
# annotations with the classes themselves (string annotations are rejected).

from dataclasses import dataclass
from typing import cast

import torch
import torch.distributed as dist
from torch import nn
from torch._C._distributed_c10d import GradBucket
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "ExactReductionState",
    "StepDistributedDataParallel",
    "exact_reduction_hook",
    "unwrap_model",
]


class _StepDispatch(nn.Module):
    """``forward(step, *args)`` = ``module.<step>(*args)``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, step: str, *args: object, **kwargs: object) -> object:
        return getattr(self.module, step)(*args, **kwargs)


@dataclass(frozen=True)
class ExactReductionState:
    """What `exact_reduction_hook` needs: the group and the largest piece gathered at once.

    Args:
        process_group: The group DDP reduces over.
        world_size: Its size (the gradients are averaged over it).
        max_chunk_bytes: A bucket larger than this is gathered in pieces of this size,
            one after the other, so at most ``world_size`` pieces are held at a time
            (DDP's first iteration puts every parameter into one bucket).
    """

    process_group: dist.ProcessGroup
    world_size: int
    max_chunk_bytes: int


def _gather_sum(
    state: ExactReductionState, chunk: torch.Tensor
) -> torch.futures.Future[torch.Tensor]:
    """All-gather ``chunk``; the future's value is ``chunk`` holding the rank-ordered mean."""
    flat = chunk.new_empty(state.world_size * chunk.numel())  # gloo takes the flat form only
    work = dist.all_gather_single(flat, chunk, group=state.process_group, async_op=True)
    gathered = flat.view(state.world_size, chunk.numel())
    assert work is not None

    def reduce(fut: torch.futures.Future[object]) -> torch.Tensor:
        # For CUDA tensors the callback runs on the collective's stream (torch.futures).
        del fut
        chunk.copy_(gathered[0])
        for rank in range(1, state.world_size):
            chunk.add_(gathered[rank])
        return chunk.div_(state.world_size)

    return cast("torch.futures.Future[torch.Tensor]", work.get_future().then(reduce))


def exact_reduction_hook(
    state: ExactReductionState, bucket: GradBucket
) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: average gradients in the same order whatever the bucket layout.

    Every rank gathers the bucket from every rank, then adds the copies in rank
    order and divides by the world size, in place in the bucket buffer. No
    arithmetic happens inside the collective, so the result of each element
    is the same bits whatever bucket it is in (see the module docstring).

    Written for CPU (gloo) and CUDA (NCCL) tensors alike: it uses only
    ``all_gather_single``, future callbacks and in-place tensor ops, which
    torch supports on both. Tested here with gloo on CPU only; the NCCL path is
    untested where no GPU is at hand.

    Args:
        state: The group, world size and chunk size.
        bucket: The bucket DDP hands over (its ``buffer()`` holds the local gradients).

    Returns:
        A future whose value is the bucket buffer holding the averaged gradients.
    """
    buffer = bucket.buffer()
    chunk_numel = max(1, state.max_chunk_bytes // buffer.element_size())
    if buffer.numel() <= chunk_numel:
        return _gather_sum(state, buffer)
    # A huge bucket (the first iteration's): one piece at a time bounds the memory.
    # Every rank sees the same buckets in the same order, so the collectives match.
    starts = range(0, buffer.numel(), chunk_numel)
    for start in starts[:-1]:
        _gather_sum(state, buffer[start : start + chunk_numel]).wait()
    last = _gather_sum(state, buffer[starts[-1] :])
    return last.then(lambda _fut: buffer)


class StepDistributedDataParallel(DistributedDataParallel):
    """DDP around a model with mmcv's ``train_step``/``val_step`` protocol.

    Args:
        module: The model (its parameters are broadcast from rank 0 here, as DDP does).
        exact_reduction: With a world size above 1, average gradients with
            `exact_reduction_hook`, so that a resumed job is bit-identical to the
            uninterrupted one at any rank count (config: ``ddp=dict(exact_reduction=...)``).
            False: DDP's own all-reduce (bit-identical resume only with 1 or 2 ranks).
        **kwargs: Passed to `DistributedDataParallel` (``device_ids``,
            ``broadcast_buffers``, ``find_unused_parameters``, ``bucket_cap_mb``, ...).
    """

    def __init__(self, module: nn.Module, exact_reduction: bool = True, **kwargs: object) -> None:
        super().__init__(_StepDispatch(module), **kwargs)  # type: ignore[arg-type]
        group: dist.ProcessGroup = self.process_group
        self.exact_reduction = bool(exact_reduction) and group.size() > 1
        if self.exact_reduction:
            state = ExactReductionState(
                process_group=group,
                world_size=group.size(),
                max_chunk_bytes=int(self.bucket_bytes_cap),
            )
            self.register_comm_hook(state, exact_reduction_hook)

    def train_step(self, *args: object, **kwargs: object) -> object:
        """The model's ``train_step`` through DDP's forward."""
        return self("train_step", *args, **kwargs)

    def val_step(self, *args: object, **kwargs: object) -> object:
        """The model's ``val_step`` through DDP's forward."""
        return self("val_step", *args, **kwargs)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's model inside DataParallel / DistributedDataParallel wrappers."""
    while True:
        if isinstance(model, nn.DataParallel | DistributedDataParallel):
            model = cast(nn.Module, model.module)
        elif isinstance(model, _StepDispatch):
            model = model.module
        else:
            return model
