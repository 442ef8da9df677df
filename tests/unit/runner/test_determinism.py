"""Determinism flags: set from the config and read back, each in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import torch

from trackcfg.runner.determinism import apply_determinism, current_determinism

#: Runs in a fresh interpreter: the flags are process-wide.
_CHILD = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from trackcfg.runner.determinism import apply_determinism
    settings = apply_determinism(7, deterministic=sys.argv[1] == "1")
    import torch._inductor.config as inductor
    print(json.dumps({
        "settings": settings.to_dict(),
        "inductor_deterministic": inductor.deterministic,
        "torch_reports": torch.are_deterministic_algorithms_enabled(),
        "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }))
    """
)


def _child(deterministic: bool) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "1" if deterministic else "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("TORCHINDUCTOR")},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_deterministic_sets_every_flag_torch_and_torch_compile_read() -> None:
    result = _child(deterministic=True)
    settings = result["settings"]
    assert isinstance(settings, dict)
    assert settings["deterministic_algorithms"] is True
    assert settings["cudnn_deterministic"] is True
    assert settings["cudnn_benchmark"] is False
    assert settings["matmul_allow_tf32"] is False
    assert settings["cudnn_allow_tf32"] is False
    assert result["torch_reports"] is True
    assert result["cublas"] == ":4096:8"
    assert result["inductor_deterministic"] is True  # torch.compile agrees


def test_not_deterministic_leaves_torch_defaults() -> None:
    result = _child(deterministic=False)
    settings = result["settings"]
    assert isinstance(settings, dict)
    assert settings["deterministic_algorithms"] is False
    assert result["inductor_deterministic"] is False


def test_current_determinism_records_the_seed_as_given() -> None:
    assert current_determinism(seed=3).seed == 3
    assert current_determinism().deterministic_algorithms == (
        torch.are_deterministic_algorithms_enabled()
    )


def test_apply_determinism_seeds_torch() -> None:
    apply_determinism(11, deterministic=False)
    first = torch.rand(3)
    apply_determinism(11, deterministic=False)
    assert torch.equal(first, torch.rand(3))
