"""`trackcfg register` end to end: a tracked run's best checkpoint as a model MLflow loads.

One module fixture (shared by every test here, on one xdist worker) trains one short
tracked run in a real git repo and SQLite store, the main job (``cnn_sgd_10e.py``:
evaluation every epoch, ``save_best='auto'``) for 2 epochs, and registers it through
the real CLI; beside it, ``register`` refuses a run of the same store that has no best
checkpoint (a plain MLflow run: what it lacks is the tag, and a second tracked run
would double the module's cost).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from tests.e2e.conftest import make_project, run_env, run_id_from, sqlite_uri
from trackcfg.checkpoint_file import read_checkpoint_record

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("register")]

MODEL = "digits-cnn"


@dataclass(frozen=True)
class Registered:
    store: str
    repo: Path
    best_run: str
    plain_run: str
    end_time_before: int
    registered: subprocess.CompletedProcess[str]
    refused: subprocess.CompletedProcess[str]


def _start(args: list[str], store: str, repo: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "trackcfg", *args],
        cwd=repo,
        env=run_env(store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory, migrated_store: Path) -> Registered:
    store = sqlite_uri(tmp_path_factory.mktemp("register-store"), migrated_store)
    repo = make_project(tmp_path_factory.mktemp("register") / "project")
    args = ["configs/digits/cnn_sgd_10e.py", "--cfg-options", "runner.max_epochs=2"]
    done = _finish(_start(["run", *args, "--work-dir", "work_dirs/cnn"], store, repo))
    assert done.returncode == 0, done.stderr[-3000:]
    best_run = run_id_from(done.stdout)
    client = MlflowClient(store)
    plain = client.create_run(client.get_run(best_run).info.experiment_id)
    plain_run = plain.info.run_id
    client.set_terminated(plain_run)
    end_time = client.get_run(best_run).info.end_time
    registering = _start(["register", best_run, "--name", MODEL], store, repo)
    refusing = _start(["register", plain_run, "--name", "digits-mlp"], store, repo)
    return Registered(
        store, repo, best_run, plain_run, end_time, _finish(registering), _finish(refusing)
    )


def test_the_best_checkpoint_loads_from_the_registry_with_its_weights_bit_for_bit(
    registered: Registered, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.artifacts
    import mlflow.pytorch

    assert registered.registered.returncode == 0, registered.registered.stderr[-3000:]
    assert f"load with:    mlflow.pytorch.load_model('models:/{MODEL}/1')" in (
        registered.registered.stdout
    )
    tags = MlflowClient(registered.store).get_run(registered.best_run).data.tags
    best = registered.repo / "work_dirs/cnn" / tags["trackcfg.best_checkpoint"].split("/")[-1]
    # `tracking_uri=` below does not reach the registry `models:/NAME/1` is resolved in.
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registered.store)
    with tempfile.TemporaryDirectory() as tmp:
        # What a user of the registry does: the version's files, then MLflow's loader
        # (pt2: nothing is unpickled, trackcfg's classes are not needed).
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL}/1", dst_path=tmp, tracking_uri=registered.store
        )
        assert (Path(local) / "MLmodel").is_file()
        loaded = mlflow.pytorch.load_model(local).state_dict()
    weights = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    assert sorted(loaded) == sorted(weights)
    for key, value in weights.items():
        assert loaded[key].dtype == value.dtype, key
        assert loaded[key].numpy().tobytes() == value.numpy().tobytes(), key


def test_the_version_links_back_to_the_run_its_config_and_the_checkpoint_bytes(
    registered: Registered,
) -> None:
    client = MlflowClient(registered.store)
    run = client.get_run(registered.best_run)
    tags = run.data.tags
    name = tags["trackcfg.best_checkpoint"].split("/")[-1]
    record = read_checkpoint_record(registered.repo / "work_dirs/cnn" / name)
    assert record is not None
    version = client.get_model_version(MODEL, "1")
    assert version.run_id == registered.best_run
    assert version.tags == {
        "trackcfg.run_id": registered.best_run,
        "trackcfg.config_hash": tags["trackcfg.config_hash"],
        "trackcfg.checkpoint": tags["trackcfg.best_checkpoint"],
        "trackcfg.checkpoint_digest": f"xxh3-128:{record.digest}",
        "trackcfg.best_metric": "accuracy",
        "trackcfg.epoch": tags["trackcfg.best_epoch"],
        "trackcfg.iter": tags["trackcfg.best_iter"],
    }
    # The run's own record of the file names the same bytes.
    assert f"xxh3-128={record.digest}" in tags[f"trackcfg.checkpoint.{name}"]


def test_registering_leaves_the_run_finished_and_links_the_model_as_its_output(
    registered: Registered,
) -> None:
    client = MlflowClient(registered.store)
    run = client.get_run(registered.best_run)
    assert (run.info.status, run.info.end_time) == ("FINISHED", registered.end_time_before)
    version = client.get_model_version(MODEL, "1")
    # The version's source is the run's logged model (MLflow 3: ``models:/<model id>``).
    assert [f"models:/{o.model_id}" for o in run.outputs.model_outputs] == [version.source]
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert (logged.source_run_id, logged.status) == (registered.best_run, "READY")


def test_a_run_without_a_best_checkpoint_is_refused_in_one_message(
    registered: Registered,
) -> None:
    refused = registered.refused
    assert refused.returncode == 2
    assert refused.stderr == (
        f"error: run {registered.plain_run} has no best checkpoint: its config keeps none "
        "(evaluation=dict(save_best=...)) or no evaluation has run yet\n"
        "  hint: name a stored checkpoint with --checkpoint, e.g. --checkpoint epoch_3.pth\n"
    ), refused.stderr
    assert "Traceback" not in refused.stderr
    assert [m.name for m in MlflowClient(registered.store).search_registered_models()] == [MODEL]
