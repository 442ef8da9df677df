"""RNG capture/restore: every generator resumes its stream, through a weights_only file."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from trackcfg.runner.rng import (
    capture_rng_state,
    restore_rng_state,
    rng_state_for_rank,
    seed_everything,
)


def draws() -> tuple[float, float, float, float]:
    return random.random(), random.gauss(0, 1), float(np.random.normal()), float(torch.rand(1))


def test_restore_resumes_every_stream_after_a_weights_only_round_trip() -> None:
    seed_everything(3)
    random.gauss(0, 1), np.random.normal()  # leave cached gaussians behind
    buffer = io.BytesIO()
    torch.save(capture_rng_state(), buffer)
    expected = draws()
    draws()
    restore_rng_state(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    assert draws() == expected


def test_seed_everything_is_repeatable_for_64_bit_seeds() -> None:
    seed_everything(2**63 + 5)
    first = draws()
    seed_everything(2**63 + 5)
    assert draws() == first


def _states(*seeds: int) -> list[dict[str, object]]:
    states = []
    for seed in seeds:
        seed_everything(seed)
        states.append(capture_rng_state())
    return states


def _draws(state: object) -> tuple[float, float, float]:
    restore_rng_state(state)  # type: ignore[arg-type]
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_state_for_rank_at_the_saved_world_size_is_the_rank_s_own() -> None:
    saved = _states(1, 2)
    assert rng_state_for_rank(saved, 1, 2, seed=0, iteration=5) is saved[1]


def test_rng_state_for_rank_after_a_world_size_change() -> None:
    saved = _states(1, 2)
    before = capture_rng_state()
    # Existing ranks keep their streams; a new rank gets one derived from (seed, iter, rank).
    assert rng_state_for_rank(saved, 1, 3, seed=7, iteration=5) is saved[1]
    new = rng_state_for_rank(saved, 2, 3, seed=7, iteration=5)
    assert _draws(new) == _draws(rng_state_for_rank(saved, 2, 3, seed=7, iteration=5))
    assert _draws(new) not in (_draws(saved[0]), _draws(saved[1]))
    assert _draws(new) != _draws(rng_state_for_rank(saved, 3, 4, seed=7, iteration=5))
    assert _draws(new) != _draws(rng_state_for_rank(saved, 2, 3, seed=7, iteration=6))
    # Ranks that shared one stream (diff_rank_seed off) share it at any world size.
    shared = _states(1, 1)
    assert rng_state_for_rank(shared, 3, 4, seed=7, iteration=5) is shared[0]
    # Deriving a state left this process's generators alone.
    restore_rng_state(before)
    expected = _draws(before)
    restore_rng_state(before)
    rng_state_for_rank(saved, 2, 3, seed=7, iteration=5)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected
