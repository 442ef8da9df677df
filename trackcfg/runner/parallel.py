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
above 1, a comm hook (`exact_reduction_hook`) whose result for each gradient
depends on that gradient's own size and values only, never on which bucket it
is in or where:

* a large gradient (``numel >= allreduce_min_numel``) is all-reduced on its own:
  the backend's summation order is a function of the tensor's size and the
  world size, the same in every layout; its traffic is plain DDP's;
* the small ones of a bucket (biases, norms) are packed and *all-gathered*, and
  every rank adds the copies in rank order, ``((g0 + g1) + g2) + ...``: no
  arithmetic in the collective, so the packing does not matter. This costs
  ``world_size - 1`` copies of them received instead of about 2, and saves one
  collective per small gradient.

Either way the sum is divided by the world size (DDP's averaging).
Cost against plain DDP: ``tests/benchmarks/bench_ddp.py``. Opt out with
``ddp=dict(exact_reduction=False)`` (a resume is then bit-identical only with 1
or 2 ranks).
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
    "ALLREDUCE_MIN_NUMEL",
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


#: Gradients of at least this many elements are all-reduced on their own (64 K: 256 KiB of
#: float32; one collective's latency is small next to moving that much).
ALLREDUCE_MIN_NUMEL = 1 << 16


@dataclass(frozen=True)
class ExactReductionState:
    """What `exact_reduction_hook` needs.

    Args:
        process_group: The group DDP reduces over.
        world_size: Its size (the gradients are averaged over it).
        allreduce_min_numel: Gradients this large get an all-reduce of their own;
            smaller ones are gathered and added in rank order.
    """

    process_group: dist.ProcessGroup
    world_size: int
    allreduce_min_numel: int = ALLREDUCE_MIN_NUMEL


def _allreduce_mean(state: ExactReductionState, grad: torch.Tensor) -> torch.futures.Future[object]:
    """All-reduce ``grad`` alone, in place; the future completes once it holds the mean."""
    work = dist.all_reduce(grad, group=state.process_group, async_op=True)
    assert work is not None
    return cast(
        "torch.futures.Future[object]",
        work.get_future().then(lambda _fut: grad.div_(state.world_size)),
    )


def _gather_mean(
    state: ExactReductionState, grads: list[torch.Tensor]
) -> torch.futures.Future[object]:
    """Gather ``grads`` packed from every rank; the future completes once each holds the
    rank-ordered mean."""
    packed = torch.cat([g.reshape(-1) for g in grads])
    flat = packed.new_empty(state.world_size * packed.numel())  # gloo takes the flat form only
    work = dist.all_gather_single(flat, packed, group=state.process_group, async_op=True)
    assert work is not None
    gathered = flat.view(state.world_size, packed.numel())

    def unpack(fut: torch.futures.Future[object]) -> None:
        # For CUDA tensors the callback runs on the collective's stream (torch.futures).
        del fut
        packed.copy_(gathered[0])
        for rank in range(1, state.world_size):
            packed.add_(gathered[rank])
        packed.div_(state.world_size)
        offset = 0
        for grad in grads:
            grad.copy_(packed[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    return cast("torch.futures.Future[object]", work.get_future().then(unpack))


def exact_reduction_hook(
    state: ExactReductionState, bucket: GradBucket
) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: average each gradient in the same order whatever the bucket layout.

    Large gradients are all-reduced one by one, small ones gathered and added in
    rank order (see the module docstring); the bucket buffer is averaged in place.

    Written for CPU (gloo) and CUDA (NCCL) tensors alike: it uses only
    ``all_reduce``, ``all_gather_single``, future callbacks and in-place tensor
    ops on views of the bucket buffer, which torch supports on both. Tested here
    with gloo on CPU only; the NCCL path is untested where no GPU is at hand.

    Args:
        state: The group, world size and size threshold.
        bucket: The bucket DDP hands over (``gradients()`` are views of ``buffer()``).

    Returns:
        A future whose value is the bucket buffer holding the averaged gradients.
    """
    buffer = bucket.buffer()
    # Every rank sees the same buckets in the same order, so the collectives match.
    grads = bucket.gradients()
    futures = [_allreduce_mean(state, g) for g in grads if g.numel() >= state.allreduce_min_numel]
    small = [g for g in grads if g.numel() < state.allreduce_min_numel]
    if small:
        futures.append(_gather_mean(state, small))
    done = torch.futures.collect_all(futures)
    return cast("torch.futures.Future[torch.Tensor]", done.then(lambda _fut: buffer))


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
            state = ExactReductionState(process_group=group, world_size=group.size())
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
