"""`trackcfg.verify` before any training: what it refuses (exit 2), and environment differences.

The verdicts themselves (bitwise, diverged, partial) are end to end: tests/e2e/test_verify.py.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from trackcfg.errors import VerificationError
from trackcfg.session.catalog import find_resumable
from trackcfg.session.verification import EnvironmentDifference, environment_differences, verify


@pytest.fixture
def store(sqlite_store: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """The SQLite store `trackcfg verify` reads (``MLFLOW_TRACKING_URI``)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_store)
    return MlflowClient(sqlite_store)


def make_run(client: MlflowClient, status: str, tags: dict[str, str]) -> str:
    experiment = client.get_experiment_by_name("Default")
    assert experiment is not None
    run_id = client.create_run(experiment.experiment_id, tags=tags).info.run_id
    client.log_metric(run_id, "train/loss", 0.5, step=10)
    client.set_terminated(run_id, status)
    return run_id


@pytest.mark.parametrize(
    ("status", "tags", "steps", "message"),
    [
        ("KILLED", {}, None, "is KILLED: its record ends at iter 10"),
        ("FAILED", {}, 11, "is FAILED: its record ends at iter 10"),
        ("FINISHED", {"trackcfg.verifies": "f" * 32}, None, "is itself a verifying run"),
    ],
)
def test_a_run_that_cannot_be_compared_is_refused_before_anything_runs(
    store: MlflowClient, status: str, tags: dict[str, str], steps: int | None, message: str
) -> None:
    run_id = make_run(store, status, tags)
    with pytest.raises(VerificationError, match=message):
        verify(run_id, steps=steps)
    assert "trackcfg.verified" not in store.get_run(run_id).data.tags


def test_a_stopped_verifying_run_is_never_resumed_by_resume_auto(store: MlflowClient) -> None:
    tags = {"trackcfg.config_hash": "ab" * 16}
    verifying = make_run(store, "KILLED", {**tags, "trackcfg.verifies": "f" * 32})
    assert find_resumable("ab" * 16) is None
    killed = make_run(store, "KILLED", tags)
    assert find_resumable("ab" * 16) == killed != verifying


@pytest.mark.parametrize(
    ("original", "now", "expected"),
    [
        ({"python": "3.11.7"}, {"python": "3.11.7"}, ()),
        (
            {"determinism": {"torch.num_threads": 1, "env.OMP_NUM_THREADS": "1"}},
            {"determinism": {"torch.num_threads": 2, "env.OMP_NUM_THREADS": None}},
            (
                EnvironmentDifference("determinism.env.OMP_NUM_THREADS", "1", None),
                EnvironmentDifference("determinism.torch.num_threads", 1, 2),
            ),
        ),
        ({"cuda_devices": ["A100"]}, {"cuda_devices": ["H100"]}, ("cuda_devices",)),
        ({}, {"cpu": "EPYC"}, ()),  # not recorded by an older trackcfg: no difference
    ],
)
def test_environment_differences_lists_every_recorded_entry_that_differs(
    original: dict[str, object], now: dict[str, object], expected: tuple[object, ...]
) -> None:
    found = environment_differences(original, now)
    if expected and isinstance(expected[0], str):
        assert tuple(d.key for d in found) == expected
    else:
        assert found == expected
