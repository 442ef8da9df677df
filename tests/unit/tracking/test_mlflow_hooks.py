"""MlflowCheckpointHook against a real SQLite store: uploads, pointer, keep-last-K."""

from __future__ import annotations

from pathlib import Path

import pytest
import xxhash
from mlflow import MlflowClient

from trackcfg.runner.checkpoint import SavedCheckpoint
from trackcfg.runner.hooks.mlflow import MlflowCheckpointHook


@pytest.fixture
def run(sqlite_store: str) -> tuple[MlflowClient, str]:
    """A client of the SQLite store and a fresh run in it."""
    client = MlflowClient(sqlite_store)
    return client, client.create_run(client.create_experiment("hooks")).info.run_id


def saved(work: Path, epoch: int) -> SavedCheckpoint:
    path = work / f"epoch_{epoch}.pth"
    data = f"checkpoint {epoch}".encode() * 100
    path.write_bytes(data)
    return SavedCheckpoint(path, xxhash.xxh3_128_hexdigest(data), epoch, epoch * 45)


def test_checkpoints_are_uploaded_the_pointer_moves_and_only_the_last_k_are_kept(
    tmp_path: Path, sqlite_store: str, run: tuple[MlflowClient, str]
) -> None:
    client, run_id = run
    work = tmp_path / "work"
    work.mkdir()
    hook = MlflowCheckpointHook(sqlite_store, run_id, keep_last=2)
    checkpoints = [saved(work, epoch) for epoch in (1, 2, 3)]
    for checkpoint in checkpoints:
        hook.on_checkpoint(checkpoint)
    assert hook.close(timeout=60)
    remote = [a.path for a in client.list_artifacts(run_id, "checkpoints")]
    assert remote == ["checkpoints/epoch_2.pth", "checkpoints/epoch_3.pth"]
    assert sorted(p.name for p in work.iterdir()) == ["epoch_2.pth", "epoch_3.pth"]
    tags = client.get_run(run_id).data.tags
    assert tags["trackcfg.latest_checkpoint"] == "checkpoints/epoch_3.pth"
    assert tags["trackcfg.latest_checkpoint_digest"] == checkpoints[-1].digest
    assert tags["trackcfg.latest_checkpoint_iter"] == "135"


def test_uploaded_checkpoint_bytes_equal_the_local_file(
    tmp_path: Path, sqlite_store: str, run: tuple[MlflowClient, str]
) -> None:
    client, run_id = run
    checkpoint = saved(tmp_path, 1)
    hook = MlflowCheckpointHook(sqlite_store, run_id)
    hook.on_checkpoint(checkpoint)
    assert hook.close(timeout=60)
    downloaded = client.download_artifacts(run_id, "checkpoints/epoch_1.pth", str(tmp_path / "d"))
    assert xxhash.xxh3_128_hexdigest(Path(downloaded).read_bytes()) == checkpoint.digest


def test_a_resumed_run_prunes_checkpoints_an_earlier_process_uploaded(
    tmp_path: Path, sqlite_store: str, run: tuple[MlflowClient, str]
) -> None:
    client, run_id = run
    work = tmp_path / "work"
    work.mkdir()
    killed = MlflowCheckpointHook(sqlite_store, run_id, keep_last=2)
    for epoch in (1, 2):
        killed.on_checkpoint(saved(work, epoch))
        assert killed.wait(timeout=60)
    killed.close()
    resumed = MlflowCheckpointHook(sqlite_store, run_id, keep_last=2)
    resumed.on_checkpoint(saved(work, 3))
    assert resumed.close(timeout=60)
    remote = [a.path for a in client.list_artifacts(run_id, "checkpoints")]
    assert remote == ["checkpoints/epoch_2.pth", "checkpoints/epoch_3.pth"]
