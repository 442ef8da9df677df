"""Distributed context: rank, world size and rank-0 gating through torch.distributed.

Everything here reads the *initialised* default process group; without one (a
plain single-process run) the process is rank 0 of a world of 1. Nothing here
initialises a process group: `trackcfg.runner.launcher.init_dist` (what ``trackcfg
run`` calls under torchrun or srun) and the user's launcher do that.

`broadcast_object` and `broadcast_bytes` hand what rank 0 alone can know (its
tracked run, the config resolved from a store's snapshot, a checkpoint
downloaded from the store) to every rank; `share_from_rank_zero` does so for a
computation that may fail on rank 0, so the other ranks fail with it instead of
waiting in a collective until the timeout.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch
import torch.distributed as torch_dist

from trackcfg.errors import DistributedError

__all__ = [
    "all_gather_object",
    "broadcast_bytes",
    "broadcast_object",
    "get_dist_info",
    "is_main_process",
    "master_only",
    "share_from_rank_zero",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def get_dist_info() -> tuple[int, int]:
    """Return ``(rank, world_size)`` of this process (mmcv's name).

    Returns:
        ``(0, 1)`` unless torch.distributed is available and initialised.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_rank(), torch_dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on rank 0 (the rank that writes checkpoints and logs)."""
    return get_dist_info()[0] == 0


def master_only(fn: Callable[_P, _R]) -> Callable[_P, _R | None]:
    """Run ``fn`` on rank 0 only; other ranks get None (mmcv's decorator).

    Never wrap anything that takes part in a collective (e.g. ``save_checkpoint``,
    which gathers every rank's RNG state): the other ranks would wait forever.
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R | None:
        return fn(*args, **kwargs) if is_main_process() else None

    return wrapper


def all_gather_object(obj: object) -> list[object]:
    """Gather one picklable object from every rank, in rank order.

    Used for per-rank RNG states: every rank's state goes into rank 0's
    checkpoint. Single-process runs get ``[obj]`` without touching torch.distributed.
    """
    world_size = get_dist_info()[1]
    if world_size == 1:
        return [obj]
    gathered: list[object] = [None] * world_size
    torch_dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: _R, src: int = 0) -> _R:
    """Rank ``src``'s picklable ``obj`` on every rank (other ranks' ``obj`` is ignored).

    Only within one job: the bytes are unpickled, so they must come from a peer
    rank, never from a store. Single-process runs get ``obj`` back untouched.
    """
    if get_dist_info()[1] == 1:
        return obj
    box: list[object] = [obj]
    torch_dist.broadcast_object_list(box, src=src, device=_device())
    return box[0]  # type: ignore[return-value]


def broadcast_bytes(data: bytes | None, src: int = 0) -> bytes:
    """Rank ``src``'s ``data`` on every rank, sent as one tensor (no pickling).

    For large payloads (a checkpoint): its length goes first, then its bytes.

    Raises:
        DistributedError: ``data`` is None on rank ``src``.
    """
    rank, world_size = get_dist_info()
    if rank == src and data is None:
        raise DistributedError(f"rank {src} has nothing to broadcast")
    if world_size == 1:
        assert data is not None
        return data
    device = _device()
    length = torch.tensor([len(data) if rank == src and data is not None else 0], dtype=torch.int64)
    length = length.to(device)
    torch_dist.broadcast(length, src=src)
    if rank == src:
        assert data is not None
        payload = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    else:
        payload = torch.empty(int(length.item()), dtype=torch.uint8, device=device)
    if payload.numel():
        torch_dist.broadcast(payload, src=src)
    return data if rank == src and data is not None else payload.cpu().numpy().tobytes()


def share_from_rank_zero(compute: Callable[[], _R]) -> _R:
    """Run ``compute`` on rank 0 only and hand its result to every rank.

    When it raises on rank 0, rank 0 re-raises it and the other ranks raise a
    `DistributedError` naming it, so no rank waits for a result that never comes.

    Raises:
        DistributedError: on ranks other than 0, when ``compute`` failed on rank 0.
        BaseException: on rank 0, whatever ``compute`` raised.
    """
    if get_dist_info()[1] == 1:
        return compute()
    if is_main_process():
        try:
            value = compute()
        except BaseException as error:
            broadcast_object(("error", f"{type(error).__name__}: {error}"))
            raise
        broadcast_object(("ok", value))
        return value
    received: tuple[str, object] = broadcast_object(("", None))
    kind, shared = received
    if kind == "error":
        raise DistributedError(f"rank 0 failed: {shared}")
    return shared  # type: ignore[return-value]


def _device() -> torch.device:
    """Where collectives of this group take their tensors: the GPU under NCCL."""
    if torch_dist.get_backend() == "nccl":  # untested here (no GPU)
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
