"""CheckpointUploader against a real SQLite store: uploads, the pointer, keep-last-K; the hook."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import xxhash
from mlflow import MlflowClient

from trackcfg.runner.checkpoint import SavedCheckpoint, write_checkpoint_file
from trackcfg.session.hooks import MlflowCheckpointHook
from trackcfg.tracking.agent.journal import MetricJournal, journal_dir, read_journal
from trackcfg.tracking.agent.uploads import CheckpointUploader, UploadRequest
from trackcfg.tracking.sync import sync

# sync() fills in MLflow's HTTP settings process-wide; keep them inside each test.
pytestmark = pytest.mark.usefixtures("fail_fast_http")


@pytest.fixture
def run(store_run: tuple[str, str]) -> tuple[MlflowClient, str]:
    """A client of the SQLite store and a fresh run in it."""
    uri, run_id = store_run
    return MlflowClient(uri), run_id


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The run's work dir (the store lives beside it in ``tmp_path``)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def checkpoint(work: Path, epoch: int, seq: int = 0) -> UploadRequest:
    path = work / f"epoch_{epoch}.pth"
    data = f"checkpoint {epoch}".encode() * 100
    path.write_bytes(data)
    return UploadRequest(path, xxhash.xxh3_128_hexdigest(data), epoch, epoch * 45, seq)


def dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def remote_checkpoints(client: MlflowClient, run_id: str) -> list[str]:
    return [a.path for a in client.list_artifacts(run_id, "checkpoints")]


def test_checkpoints_are_uploaded_the_pointer_moves_and_only_the_last_k_are_kept(
    work: Path, run: tuple[MlflowClient, str]
) -> None:
    client, run_id = run
    uploader = CheckpointUploader(client, run_id, keep_last=2)
    requests = [checkpoint(work, epoch) for epoch in (1, 2, 3)]
    for request in requests:
        uploader.put(request)
    assert uploader.close(timeout=60)
    assert remote_checkpoints(client, run_id) == [
        "checkpoints/epoch_2.pth",
        "checkpoints/epoch_3.pth",
    ]
    assert sorted(p.name for p in work.iterdir()) == ["epoch_2.pth", "epoch_3.pth"]
    tags = client.get_run(run_id).data.tags
    assert tags["trackcfg.latest_checkpoint"] == "checkpoints/epoch_3.pth"
    assert tags["trackcfg.latest_checkpoint_digest"] == requests[-1].digest
    assert (tags["trackcfg.latest_checkpoint_iter"], tags["trackcfg.latest_checkpoint_epoch"]) == (
        "135",
        "3",
    )


def test_best_checkpoints_are_outside_keep_last_k_and_tag_the_run(
    work: Path, run: tuple[MlflowClient, str]
) -> None:
    client, run_id = run
    uploader = CheckpointUploader(client, run_id, keep_last=1)

    def best(epoch: int) -> UploadRequest:
        regular = checkpoint(work, epoch)
        path = regular.path.with_name(f"best_accuracy_epoch_{epoch}.pth")
        path.write_bytes(regular.path.read_bytes())
        return UploadRequest(path, regular.digest, epoch, regular.iter)

    # epoch 2 is the best; epoch 4 replaces it; keep-last-1 keeps epoch_4 only
    for request in [checkpoint(work, 1), best(2), checkpoint(work, 2), checkpoint(work, 3)]:
        uploader.put(request)
    assert uploader.wait(timeout=60)
    assert remote_checkpoints(client, run_id) == [
        "checkpoints/best_accuracy_epoch_2.pth",
        "checkpoints/epoch_3.pth",
    ]
    tags = client.get_run(run_id).data.tags
    assert (tags["trackcfg.best_checkpoint"], tags["trackcfg.best_metric"]) == (
        "checkpoints/best_accuracy_epoch_2.pth",
        "accuracy",
    )
    assert (tags["trackcfg.best_epoch"], tags["trackcfg.best_iter"]) == ("2", "90")
    for request in [best(4), checkpoint(work, 4)]:
        uploader.put(request)
    assert uploader.close(timeout=60)
    assert remote_checkpoints(client, run_id) == [
        "checkpoints/best_accuracy_epoch_4.pth",
        "checkpoints/epoch_4.pth",
    ]
    assert client.get_run(run_id).data.tags["trackcfg.best_epoch"] == "4"


def test_uploaded_checkpoint_bytes_equal_the_local_file(
    work: Path, run: tuple[MlflowClient, str]
) -> None:
    client, run_id = run
    request = checkpoint(work, 1)
    uploader = CheckpointUploader(client, run_id)
    uploader.put(request)
    assert uploader.close(timeout=60)
    downloaded = client.download_artifacts(run_id, "checkpoints/epoch_1.pth", str(work / "d"))
    assert xxhash.xxh3_128_hexdigest(Path(downloaded).read_bytes()) == request.digest


def test_a_resumed_run_prunes_checkpoints_an_earlier_process_uploaded(
    work: Path, run: tuple[MlflowClient, str]
) -> None:
    client, run_id = run
    killed = CheckpointUploader(client, run_id, keep_last=2)
    for epoch in (1, 2):
        killed.put(checkpoint(work, epoch))
        assert killed.wait(timeout=60)
    killed.close()
    resumed = CheckpointUploader(client, run_id, keep_last=2)
    resumed.put(checkpoint(work, 3))
    assert resumed.close(timeout=60)
    assert remote_checkpoints(client, run_id) == [
        "checkpoints/epoch_2.pth",
        "checkpoints/epoch_3.pth",
    ]
    assert sorted(p.name for p in work.iterdir()) == ["epoch_2.pth", "epoch_3.pth"]


def test_the_pointer_moves_only_after_the_metrics_before_the_checkpoint_are_delivered(
    work: Path, run: tuple[MlflowClient, str]
) -> None:
    client, run_id = run
    asked: list[int] = []
    metrics_arrived = threading.Event()

    def delivered(seq: int, timeout: float) -> bool:
        asked.append(seq)
        return metrics_arrived.wait(timeout)

    uploader = CheckpointUploader(client, run_id, delivered=delivered)
    uploader.put(checkpoint(work, 1, seq=7))
    try:
        deadline = time.monotonic() + 30
        while not asked and time.monotonic() < deadline:
            time.sleep(0.02)
        assert asked == [7]
        assert remote_checkpoints(client, run_id) == ["checkpoints/epoch_1.pth"]  # uploaded...
        assert "trackcfg.latest_checkpoint" not in client.get_run(run_id).data.tags  # ...no pointer
    finally:
        metrics_arrived.set()
    assert uploader.close(timeout=30)
    tags = client.get_run(run_id).data.tags
    assert tags["trackcfg.latest_checkpoint"] == "checkpoints/epoch_1.pth"


@pytest.mark.parametrize("keep_last", [0, -1])
def test_keep_last_below_one_is_refused(run: tuple[MlflowClient, str], keep_last: int) -> None:
    client, run_id = run
    with pytest.raises(ValueError, match=rf"keep_last must be >= 1 or None, got {keep_last}"):
        CheckpointUploader(client, run_id, keep_last=keep_last)


def test_checkpoint_hook_publishes_with_a_sequence_number_covering_earlier_metrics(
    tmp_path: Path,
) -> None:
    journal = MetricJournal(journal_dir(tmp_path, "run"), "run", "sqlite:///x.db")
    published: list[tuple[SavedCheckpoint, int]] = []
    hook = MlflowCheckpointHook(lambda saved, seq: published.append((saved, seq)))
    hook.attach(journal)
    for step in (1, 2, 3):
        journal.log("loss", float(step), step)
    saved = SavedCheckpoint(tmp_path / "epoch_1.pth", "0" * 32, 1, 3)
    try:
        hook.on_checkpoint(saved)
        journaled = read_journal(journal.directory).records  # durable when published
    finally:
        journal.close()
    assert published == [(saved, 3)]
    assert [r.step for r in journaled] == [1, 2, 3]


def test_a_checkpoint_deleted_locally_before_its_upload_is_skipped_without_a_warning(
    work: Path, run: tuple[MlflowClient, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, run_id = run
    deleted = checkpoint(work, 1)
    deleted.path.unlink()  # the runner's max_keep_ckpts got there first
    uploader = CheckpointUploader(client, run_id)
    with caplog.at_level("WARNING", logger="trackcfg"):
        uploader.put(deleted)
        uploader.put(checkpoint(work, 2))
        assert uploader.close(timeout=60)
    assert remote_checkpoints(client, run_id) == ["checkpoints/epoch_2.pth"]
    assert client.get_run(run_id).data.tags["trackcfg.latest_checkpoint"] == (
        "checkpoints/epoch_2.pth"
    )
    assert caplog.records == []


def test_a_checkpoint_whose_bytes_differ_from_its_digest_is_never_uploaded(
    work: Path, run: tuple[MlflowClient, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, run_id = run
    ours = checkpoint(work, 1)
    ours.path.write_bytes(b"another run's weights" * 100)  # replaced before the upload
    uploader = CheckpointUploader(client, run_id)
    with caplog.at_level("ERROR", logger="trackcfg"):
        uploader.put(ours)
        assert uploader.close(timeout=60)
    assert remote_checkpoints(client, run_id) == []
    assert "trackcfg.latest_checkpoint" not in client.get_run(run_id).data.tags
    assert uploader.rejected == [ours]
    assert "holds other bytes than the trainer recorded" in caplog.text


def test_sync_uploads_checkpoints_no_agent_uploaded_moves_the_pointer_and_keeps_the_last_k(
    work: Path, store_run: tuple[str, str]
) -> None:
    uri, run_id = store_run
    directory = journal_dir(work, run_id)
    MetricJournal(directory, run_id, uri, keep_last=2).close()
    pins = directory / "checkpoints"
    pins.mkdir()
    saved = [
        write_checkpoint_file(
            {"w": torch.full((10,), float(e))}, pins / f"epoch_{e}.pth", epoch=e, iter=45 * e
        )
        for e in (1, 2, 3)
    ]
    unpublished = pins / f".epoch_4.pth.tmp-{dead_pid()}"  # its trainer died before publishing
    unpublished.write_bytes(b"torn")
    report = sync(work, timeout=60)
    assert (report.checkpoints, report.checkpoints_pending) == (2, 0)
    assert "2 checkpoint(s) uploaded, 0 pending" in str(report)
    client = MlflowClient(uri)
    assert remote_checkpoints(client, run_id) == [
        "checkpoints/epoch_2.pth",
        "checkpoints/epoch_3.pth",
    ]
    tags = client.get_run(run_id).data.tags
    assert tags["trackcfg.latest_checkpoint"] == "checkpoints/epoch_3.pth"
    assert tags["trackcfg.latest_checkpoint_digest"] == saved[-1].digest
    assert list(pins.iterdir()) == []  # uploaded, superseded, or torn: nothing stranded


def test_every_uploaded_checkpoint_keeps_a_tag_with_its_digests_after_pruning(
    work: Path, run: tuple[MlflowClient, str]
) -> None:
    client, run_id = run
    uploader = CheckpointUploader(client, run_id, keep_last=1)
    saved = [
        write_checkpoint_file(
            {"state_dict": {"w": torch.full((2,), float(epoch))}},
            work / f"epoch_{epoch}.pth",
            epoch=epoch,
            iter=epoch * 45,
        )
        for epoch in (1, 2)
    ]
    for s in saved:
        uploader.put(UploadRequest(s.path, s.digest, s.epoch, s.iter, 0))
    assert uploader.close(timeout=60)
    assert remote_checkpoints(client, run_id) == ["checkpoints/epoch_2.pth"]
    tags = client.get_run(run_id).data.tags
    for s in saved:  # the pruned one's tag included
        assert tags[f"trackcfg.checkpoint.{s.path.name}"] == (
            f"iter={s.iter} epoch={s.epoch} xxh3-128={s.digest} state={s.state_digest}"
        )
