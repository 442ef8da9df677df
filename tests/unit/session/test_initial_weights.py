"""load_from: a local file, a tracked run's checkpoint or an MLflow URI, fetched and verified.

Against a real SQLite store: a checkpoint written by the runner's writer is uploaded
by the tracking agent's uploader (which moves the run's pointer), then resolved.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from trackcfg.errors import CheckpointError, ConfigError
from trackcfg.runner.checkpoint import write_checkpoint_file
from trackcfg.session.initial_weights import resolve_load_from
from trackcfg.tracking.agent.uploads import CheckpointUploader, UploadRequest

pytestmark = pytest.mark.usefixtures("fail_fast_http")


@pytest.fixture
def stored(store_run: tuple[str, str], tmp_path: Path) -> tuple[str, str, str]:
    """(tracking URI, run id, digest) of a run whose epoch_1.pth is uploaded."""
    uri, run_id = store_run
    state = {"state_dict": {"w": torch.arange(4.0)}, "meta": {}}
    saved = write_checkpoint_file(state, tmp_path / "epoch_1.pth", epoch=1, iter=3)
    uploader = CheckpointUploader(MlflowClient(uri), run_id)
    uploader.put(UploadRequest(saved.path, saved.digest, 1, 3))
    assert uploader.close(timeout=60)
    return uri, run_id, saved.digest


@pytest.mark.parametrize(
    "spec",
    ["run:{run_id}", "run:{run_id}:epoch_1.pth", "runs:/{run_id}/checkpoints/epoch_1.pth"],
)
def test_a_stored_checkpoint_is_downloaded_and_verified(
    stored: tuple[str, str, str], tmp_path: Path, spec: str
) -> None:
    uri, run_id, digest = stored
    work = tmp_path / "new-run"
    initial = resolve_load_from(spec.format(run_id=run_id), uri, work)
    assert initial.digest == digest
    assert initial.path.is_file() and work in initial.path.parents
    weights = torch.load(initial.path, weights_only=True)["state_dict"]
    assert torch.equal(weights["w"], torch.arange(4.0))


def test_a_local_file_is_verified_in_place(stored: tuple[str, str, str], tmp_path: Path) -> None:
    uri, _, digest = stored
    initial = resolve_load_from(str(tmp_path / "epoch_1.pth"), uri, tmp_path / "w")
    assert (initial.path, initial.digest) == (tmp_path / "epoch_1.pth", digest)


def test_a_checkpoint_the_run_does_not_store_is_an_error(
    stored: tuple[str, str, str], tmp_path: Path
) -> None:
    uri, run_id, _ = stored
    with pytest.raises(CheckpointError, match=r"cannot download checkpoint checkpoints/nope\.pth"):
        resolve_load_from(f"run:{run_id}:nope.pth", uri, tmp_path / "w")


def test_a_malformed_run_spec_names_load_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_load_from("run:not-a-run-id!", "sqlite:///unused.db", tmp_path)
    assert info.value.key_path == "load_from"


def test_train_refuses_a_run_spec_it_cannot_fetch(tmp_path: Path) -> None:
    from trackcfg.runner.train import train

    cfg = {
        "model": {"type": "DigitsMLP"},
        "data": {"train": {"type": "DigitsDataset"}, "samples_per_gpu": 64},
        "optimizer": {"type": "SGD", "lr": 0.1},
        "runner": {"type": "EpochBasedRunner", "max_epochs": 1},
        "custom_imports": {"imports": ["trackcfg.zoo"]},
        "load_from": "run:0123abcd",
        "work_dir": str(tmp_path),
    }
    import trackcfg.zoo  # noqa: F401  (registers the zoo's models and datasets)

    with pytest.raises(ConfigError, match="cannot fetch") as info:
        train(cfg)
    assert info.value.key_path == "load_from"
