"""Distributed context: rank, world size and rank-0 gating through torch.distributed.

Everything here reads the *initialised* default process group; without one (a
plain single-process run) the process is rank 0 of a world of 1. Nothing here
initialises a process group: `torchrun` and the user's launcher do that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch.distributed as torch_dist

__all__ = ["all_gather_object", "get_dist_info", "is_main_process", "master_only"]

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
