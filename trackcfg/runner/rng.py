"""RNG state capture and restore: Python, NumPy, torch CPU and every CUDA device.

States are converted to tensors and plain types so that a checkpoint holding
them loads with ``torch.load(weights_only=True)``. `restore_rng_state` after
`capture_rng_state` leaves every generator exactly where it was: the next draw
from each is the same as if nothing had happened in between.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import cast

import numpy as np
import torch

__all__ = ["capture_rng_state", "check_rng_state", "restore_rng_state", "seed_everything"]

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
