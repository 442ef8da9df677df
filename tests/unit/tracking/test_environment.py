"""Environment capture: versions, determinism flags, world size, JSON-able."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
import torch

from trackcfg.tracking.environment import TRACKED_PACKAGES, capture_environment


def test_environment_records_installed_versions_of_the_tracked_packages() -> None:
    env = capture_environment()
    assert set(env.packages) == set(TRACKED_PACKAGES)
    assert env.packages["torch"] == importlib.metadata.version("torch")
    assert env.packages["mlflow"] == importlib.metadata.version("mlflow")


def test_environment_records_the_torch_determinism_flags() -> None:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        env = capture_environment()
    finally:
        torch.use_deterministic_algorithms(previous)
    assert env.determinism["torch.deterministic_algorithms"] is True
    assert "cudnn.benchmark" in env.determinism


@pytest.mark.parametrize(
    ("given", "env_value", "expected"), [(None, None, 1), (None, "4", 4), (2, "4", 2)]
)
def test_world_size_comes_from_the_argument_else_the_environment(
    monkeypatch: pytest.MonkeyPatch, given: int | None, env_value: str | None, expected: int
) -> None:
    if env_value is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", env_value)
    assert capture_environment(world_size=given).world_size == expected


def test_environment_json_is_plain_json() -> None:
    obj = capture_environment().to_json()
    assert json.loads(json.dumps(obj)) == obj
    assert obj["cuda"] == torch.version.cuda


def test_environment_records_what_decides_cpu_numerics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    env = capture_environment()
    assert env.determinism["torch.cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env.determinism["torch.num_interop_threads"] == torch.get_num_interop_threads()
    assert env.determinism["torch.float32_matmul_precision"] == "highest"
    assert env.determinism["env.MKL_CBWR"] == "COMPATIBLE"
    assert env.cpu and env.cpu_count
    assert env.packages["scikit-learn"] == importlib.metadata.version("scikit-learn")


def test_environment_variables_are_recorded_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "https://user:hunter2@example.com/x")
    recorded = str(capture_environment().determinism["env.CUDA_VISIBLE_DEVICES"])
    assert "hunter2" not in recorded and "example.com" in recorded
