"""Determinism settings: seed every RNG and set torch's determinism flags, and read them back.

``deterministic=True`` turns on ``torch.use_deterministic_algorithms`` (an op
without a deterministic implementation then raises instead of silently
varying), pins cuDNN to deterministic kernels without autotuning, turns TF32
off for matmuls and convolutions, and sets ``CUBLAS_WORKSPACE_CONFIG`` (which
CUDA >= 10.2 needs for deterministic cuBLAS). The settings are process-wide;
`current_determinism` reports what is in force so runs can record it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

from trackcfg.runner.rng import seed_everything

__all__ = ["DeterminismSettings", "apply_determinism", "current_determinism"]

_CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"


@dataclass(frozen=True, slots=True)
class DeterminismSettings:
    """The determinism-relevant state of this process."""

    seed: int | None
    deterministic_algorithms: bool
    cudnn_deterministic: bool
    cudnn_benchmark: bool
    matmul_allow_tf32: bool
    cudnn_allow_tf32: bool
    cublas_workspace_config: str | None

    def to_dict(self) -> dict[str, object]:
        """Plain dict (for checkpoint meta and run records)."""
        return asdict(self)


def current_determinism(seed: int | None = None) -> DeterminismSettings:
    """Read the flags in force now (``seed`` is recorded as given: torch cannot report it)."""
    return DeterminismSettings(
        seed=seed,
        deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
        cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
        cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
        matmul_allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32),
        cudnn_allow_tf32=bool(torch.backends.cudnn.allow_tf32),
        cublas_workspace_config=os.environ.get(_CUBLAS_ENV),
    )


def apply_determinism(seed: int, deterministic: bool) -> DeterminismSettings:
    """Seed Python, NumPy and torch with ``seed``; with ``deterministic``, set the flags.

    Args:
        seed: The run's seed (mmcv's ``set_random_seed``).
        deterministic: Also force deterministic kernels (slower on GPU).

    Returns:
        The settings now in force.
    """
    seed_everything(seed)
    if deterministic:
        os.environ.setdefault(_CUBLAS_ENV, ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return current_determinism(seed)
