"""Environment: the software and determinism settings a run executed with.

Versions of installed packages come from package metadata (no import); torch is
imported because CUDA/cuDNN versions and the determinism flags only exist at run
time — capturing the environment happens when a run starts, where torch is loaded
anyway. A package that is not installed is recorded as None, never guessed.

What is recorded is what ``trackcfg verify`` needs to name why two runs differ
bitwise: besides versions, the CPU model and the SIMD level torch dispatches to
(AVX2 and AVX-512 kernels round differently), thread counts, matmul precision and
TF32 switches. Environment variables come from a fixed list of ones that change
numerics; their values are redacted like every logged text (no credential is
recorded even if one was put there).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass, field

__all__ = ["TRACKED_PACKAGES", "Environment", "capture_environment"]

#: Distributions whose versions every snapshot records.
TRACKED_PACKAGES: tuple[str, ...] = (
    "trackcfg",
    "torch",
    "numpy",
    "mlflow",
    "gitpython",
    "xxhash",
    "pyyaml",
    "click",
    "scipy",
    "scikit-learn",
    "torchvision",
    "pillow",
)

# Environment variables that change numerics or hashing.
_DETERMINISM_ENV = (
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "NVIDIA_TF32_OVERRIDE",
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
)


@dataclass(frozen=True, slots=True)
class Environment:
    """What a run executed with.

    Attributes:
        python: ``sys.version`` of the interpreter.
        implementation: e.g. ``CPython``.
        platform: ``platform.platform()``.
        machine: CPU architecture (``x86_64``).
        packages: Distribution name -> installed version (None when absent).
        cuda: The CUDA version torch was built with, or None (CPU build).
        cudnn: The cuDNN version torch uses, or None.
        cuda_devices: Names of the visible CUDA devices.
        determinism: torch determinism settings, thread counts, the CPU kernels'
            SIMD level, matmul precision, and the relevant environment variables
            (None when unset).
        world_size: Number of distributed processes (1 when not distributed).
        cpu: The CPU model (``/proc/cpuinfo``, else ``platform.processor()``), or
            None when unknown.
        cpu_count: Logical CPUs of the machine.
    """

    python: str
    implementation: str
    platform: str
    machine: str
    packages: dict[str, str | None] = field(default_factory=dict)
    cuda: str | None = None
    cudnn: str | None = None
    cuda_devices: tuple[str, ...] = ()
    determinism: dict[str, object] = field(default_factory=dict)
    world_size: int = 1
    cpu: str | None = None
    cpu_count: int | None = None

    def to_json(self) -> dict[str, object]:
        """JSON-able form (what ``environment.json`` holds)."""
        return {
            "python": self.python,
            "implementation": self.implementation,
            "platform": self.platform,
            "machine": self.machine,
            "packages": dict(self.packages),
            "cuda": self.cuda,
            "cudnn": self.cudnn,
            "cuda_devices": list(self.cuda_devices),
            "determinism": dict(self.determinism),
            "world_size": self.world_size,
            "cpu": self.cpu,
            "cpu_count": self.cpu_count,
        }


def capture_environment(world_size: int | None = None) -> Environment:
    """Capture the current process's environment.

    Args:
        world_size: The distributed world size; None reads ``WORLD_SIZE`` (default 1).

    Returns:
        The environment record.
    """
    import torch

    packages = {name: _version(name) for name in TRACKED_PACKAGES}
    cuda = torch.version.cuda
    cudnn = torch.backends.cudnn
    cudnn_version = cudnn.version() if cudnn.is_available() else None  # type: ignore[no-untyped-call]
    devices: tuple[str, ...] = ()
    if torch.cuda.is_available():
        devices = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    determinism: dict[str, object] = {
        "torch.deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch.deterministic_algorithms.warn_only": (
            torch.is_deterministic_algorithms_warn_only_enabled()
        ),
        "cudnn.deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn.benchmark": bool(torch.backends.cudnn.benchmark),
        "torch.num_threads": torch.get_num_threads(),
        "torch.num_interop_threads": torch.get_num_interop_threads(),
        "torch.cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch.float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda.matmul.allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn.allow_tf32": bool(torch.backends.cudnn.allow_tf32),
    }
    determinism.update({f"env.{name}": _env(name) for name in _DETERMINISM_ENV})
    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return Environment(
        python=sys.version,
        implementation=platform.python_implementation(),
        platform=platform.platform(),
        machine=platform.machine(),
        packages=packages,
        cuda=cuda,
        cudnn=str(cudnn_version) if cudnn_version is not None else None,
        cuda_devices=devices,
        determinism=determinism,
        world_size=world_size,
        cpu=_cpu_model(),
        cpu_count=os.cpu_count(),
    )


def _env(name: str) -> str | None:
    from trackcfg.tracking.redaction import redact_text

    value = os.environ.get(name)
    return None if value is None else redact_text(value)


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware"):
                    return value.strip() or None
    except OSError:
        pass  # not Linux: platform's answer below
    return platform.processor() or None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
