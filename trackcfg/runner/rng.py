"""RNG state capture and restore: Python, NumPy, torch CPU and every CUDA device.

States are converted to tensors and plain types so that a checkpoint holding
them loads with ``torch.load(weights_only=True)``. `restore_rng_state` after
`capture_rng_state` leaves every generator exactly where it was: the next draw
from each is the same as if nothing had happened in between.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np
import torch

from trackcfg.runner.sampler import derive_seed

__all__ = [
    "capture_rng_state",
    "check_rng_state",
    "restore_rng_state",
    "rng_state_for_rank",
    "seed_everything",
]

# Python's Mersenne Twister state words are < 2**32; int64 holds them exactly.
_PY_DTYPE = torch.int64


def capture_rng_state() -> dict[str, object]:
    """Snapshot every global RNG of this process as tensors and plain types.

    Returns:
        ``{'python': ..., 'numpy': ..., 'torch': ByteTensor, 'cuda': [ByteTensor, ...]}``;
        ``cuda`` is empty when CUDA is unavailable (a CPU-only run).
    """
    py_version, py_words, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    cuda: list[torch.Tensor] = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        cuda = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return {
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_words, dtype=_PY_DTYPE),
            "gauss_next": py_gauss,
        },
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64).copy()),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": cuda,
    }


def restore_rng_state(state: Mapping[str, object]) -> None:
    """Put every global RNG back to a state returned by `capture_rng_state`.

    Args:
        state: The captured dict (possibly after a weights_only checkpoint round trip).

    Raises:
        ValueError: the state is not shaped like `capture_rng_state`'s, or it has
            CUDA generators but this process sees a different number of CUDA devices
            (resuming on other hardware cannot be exact).
    """
    python_state, numpy_state, torch_state, cuda = _parse(state)
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch_state)
    if cuda:
        torch.cuda.set_rng_state_all(cuda)


def check_rng_state(state: Mapping[str, object]) -> None:
    """Raise what `restore_rng_state` would raise for ``state``, without restoring it.

    Raises:
        ValueError: as `restore_rng_state`.
    """
    _parse(state)


_Parsed = tuple[
    tuple[int, tuple[int, ...], object],
    tuple[str, "np.ndarray[tuple[int, ...], np.dtype[np.uint32]]", int, int, float],
    torch.Tensor,
    list[torch.Tensor],
]


def _parse(state: Mapping[str, object]) -> _Parsed:
    """``state`` as the arguments of the generators' ``setstate`` functions."""
    try:
        py = cast(Mapping[str, object], state["python"])
        np_state = cast(Mapping[str, object], state["numpy"])
        words = tuple(int(w) for w in cast(torch.Tensor, py["state"]).tolist())
        python_state = (int(cast(int, py["version"])), words, py["gauss_next"])
        numpy_state = (
            str(np_state["kind"]),
            cast(torch.Tensor, np_state["keys"]).numpy().astype(np.uint32),
            int(cast(int, np_state["pos"])),
            int(cast(int, np_state["has_gauss"])),
            float(cast(float, np_state["cached_gaussian"])),
        )
        torch_state = state["torch"]
        cuda = list(cast(list[torch.Tensor], state.get("cuda") or []))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not an RNG state captured by trackcfg: {exc!r}") from exc
    if not isinstance(torch_state, torch.Tensor):
        raise ValueError(f"torch RNG state must be a tensor, got {type(torch_state).__name__}")
    if cuda:
        seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if seen != len(cuda):
            raise ValueError(
                f"checkpoint holds RNG states of {len(cuda)} CUDA device(s), "
                f"this process sees {seen}"
            )
    return python_state, numpy_state, torch_state, cuda


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device) from one integer.

    NumPy's legacy seed takes 32 bits, so it gets the seed split into two
    32-bit words; Python and torch take the full 64-bit value.
    """
    seed &= (1 << 64) - 1
    random.seed(seed)
    np.random.seed([seed & 0xFFFFFFFF, seed >> 32])
    torch.manual_seed(seed)


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (
            isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    return a == b


def _all_same(states: Sequence[Mapping[str, object]]) -> bool:
    return all(_same(states[0], other) for other in states[1:])


def rng_state_for_rank(
    saved: Sequence[Mapping[str, object]], rank: int, world_size: int, *, seed: int, iteration: int
) -> Mapping[str, object]:
    """The RNG state rank ``rank`` of ``world_size`` resumes from checkpointed per-rank ``saved``.

    With the world size of the checkpoint this is ``saved[rank]`` (an exact resume).
    With another one (a forced world-size change) the choice is a function of the
    checkpoint and the new rank only, so two such resumes draw the same numbers:

    * the checkpoint's ranks all had one state (``diff_rank_seed`` off: every rank
      draws the same dropout masks): every rank takes it;
    * otherwise a rank that existed keeps its own state, and a new rank (``rank >=
      len(saved)``) starts from `seed_everything` of ``derive_seed(seed, iteration,
      rank)`` (xxh3 of the three numbers), a stream of its own.

    Args:
        saved: One captured state per rank of the job that wrote the checkpoint.
        rank: This process's rank.
        world_size: This job's world size.
        seed: The run's seed (``meta['seed']`` of the checkpoint).
        iteration: The checkpoint's completed training iterations.

    Returns:
        A state for `restore_rng_state` (``saved``'s own, or a new one; the generators
        of this process are left as they were).
    """
    if len(saved) == world_size:
        return saved[rank]
    if _all_same(saved):
        return saved[0]
    if rank < len(saved):
        return saved[rank]
    current = capture_rng_state()
    try:
        seed_everything(derive_seed(seed, iteration, rank))
        return capture_rng_state()
    finally:
        restore_rng_state(current)
