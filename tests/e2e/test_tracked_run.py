"""`trackcfg run` end to end in a real git repo, SQLite store: tags, params, snapshot, status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import xxhash
from mlflow import MlflowClient

from tests.e2e.conftest import (
    E2E_CONFIG_PATH,
    agent_pid,
    git,
    make_project,
    run_env,
    run_id_from,
    sqlite_uri,
    trackcfg,
)
from trackcfg.checkpoint_file import content_digest, read_checkpoint_record
from trackcfg.config.config import Config
from trackcfg.config.provenance import Provenance
from trackcfg.tracking.snapshot import load_snapshot

Run = Callable[..., subprocess.CompletedProcess[str]]

# One xdist worker runs the whole module: its module-scoped fixture (a tracked run) would
# otherwise run again on every worker that gets one of its tests.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tracked_run")]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, migrated_store: Path) -> str:
    """The SQLite store this module's shared run writes to."""
    return sqlite_uri(tmp_path_factory.mktemp("tracked-run-store"), migrated_store)


@pytest.fixture(scope="module")
def dirty_tracked_run(tmp_path_factory: pytest.TempPathFactory, store: str) -> tuple[str, Path]:
    """One epoch tracked from a dirty tree: an edited base, a staged binary, an untracked file."""
    git_repo = make_project(tmp_path_factory.mktemp("tracked-run") / "project")
    runtime = git_repo / "configs/_base_/default_runtime.py"
    runtime.write_text(runtime.read_text() + "\n# edited after the commit\n")
    (git_repo / "blob.bin").write_bytes(bytes(range(256)))
    git(["add", "blob.bin"], git_repo)
    (git_repo / "notes.txt").write_text("untracked\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "trackcfg",
            "run",
            E2E_CONFIG_PATH,
            "--cfg-options",
            "runner.max_epochs=1",
            "--work-dir",
            "work_dirs/one",
            "--experiment",
            "e2e",
        ],
        env=run_env(store),
        cwd=git_repo,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return run_id_from(done.stdout), git_repo


def expected_config(repo: Path) -> Config:
    cfg = Config.fromfile(repo / E2E_CONFIG_PATH, import_custom_modules=False)
    cfg.merge_from_dict({"runner.max_epochs": 1})
    return cfg


def test_run_is_tagged_with_hash_lineage_file_and_git_state(
    dirty_tracked_run: tuple[str, Path], store: str
) -> None:
    run_id, repo = dirty_tracked_run
    run = MlflowClient(store).get_run(run_id)
    cfg = expected_config(repo)
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"e2e_mlp@{cfg.hash[:8]}"
    assert tags["trackcfg.config_hash"] == cfg.hash
    assert tags["trackcfg.lineage_hash"] == cfg.lineage_hash
    assert tags["trackcfg.config_file"] == E2E_CONFIG_PATH
    assert tags["mlflow.source.git.commit"] == git(["rev-parse", "HEAD"], repo).strip()
    assert tags["mlflow.source.git.branch"] == "main"
    assert tags["trackcfg.git_dirty"] == "true"


def test_the_mlflow_ui_shows_source_user_datasets_description_and_patch(
    dirty_tracked_run: tuple[str, Path], store: str, tmp_path: Path
) -> None:
    run_id, repo = dirty_tracked_run
    client = MlflowClient(store)
    run = client.get_run(run_id)
    cfg = expected_config(repo)
    tags = run.data.tags
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.source.name"] == E2E_CONFIG_PATH
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.user"]
    inputs = {
        next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
        for i in run.inputs.dataset_inputs
    }
    assert sorted(inputs) == ["train", "val"]
    assert {d.name for d in inputs.values()} == {"DigitsDataset"}
    assert inputs["train"].digest != inputs["val"].digest
    note = tags["mlflow.note.content"]
    for expected in (
        cfg.hash,
        "configs/_base_/default_runtime.py",
        f"trackcfg resume {run_id}",
        f"trackcfg blame {run_id}",
        "uncommitted changes",
        "--cfg-options runner.max_epochs=1",
    ):
        assert expected in note
    preview = client.download_artifacts(run_id, "git.patch.txt", str(tmp_path))
    stored = client.download_artifacts(run_id, "trackcfg/git.patch", str(tmp_path / "s"))
    assert Path(preview).read_bytes() == Path(stored).read_bytes()
    assert b"# edited after the commit" in Path(preview).read_bytes()


def test_run_params_are_the_flattened_config(
    dirty_tracked_run: tuple[str, Path], store: str
) -> None:
    run_id, _ = dirty_tracked_run
    params = MlflowClient(store).get_run(run_id).data.params
    assert params["runner.max_epochs"] == "1"
    assert params["optimizer.lr"] == "0.05"
    assert params["model.hidden_dims"] == "(256,)"
    assert params["log_config.interval"] == "5"


def test_snapshot_holds_every_file_and_the_canonical_bytes_hash_to_the_tag(
    dirty_tracked_run: tuple[str, Path], store: str, tmp_path: Path
) -> None:
    run_id, repo = dirty_tracked_run
    client = MlflowClient(store)
    local = Path(client.download_artifacts(run_id, "trackcfg", str(tmp_path / "dl")))
    tag = client.get_run(run_id).data.tags["trackcfg.config_hash"]
    names = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    cfg = expected_config(repo)
    lineage_files = {f"lineage/{e.path}" for e in cfg.lineage}
    assert (
        names
        == {
            "snapshot.json",
            "config.canonical.json",
            "config.py",
            "lineage.json",
            "provenance.json",
            "options.json",
            "git.json",
            "git.patch",
            "environment.json",
            "manifest.json",
        }
        | lineage_files
    )
    # Every file is covered by the manifest, whose root digest is the run's tag.
    root = client.get_run(run_id).data.tags["trackcfg.snapshot_digest"]
    assert load_snapshot(run_id, tracking_uri=store).root_digest == root
    assert xxhash.xxh3_128_hexdigest((local / "config.canonical.json").read_bytes()) == tag
    for entry in cfg.lineage:
        assert (local / "lineage" / entry.path).read_bytes() == (repo / entry.path).read_bytes()
    lineage = json.loads((local / "lineage.json").read_text())
    assert [e["path"] for e in lineage] == [e.path for e in cfg.lineage]
    assert json.loads((local / "options.json").read_text())["cfg_options"] == [
        "runner.max_epochs=1"
    ]
    assert Provenance.from_json(json.loads((local / "provenance.json").read_text()))
    assert "max_epochs=1" in (local / "config.py").read_text().replace(" ", "")
    environment = json.loads((local / "environment.json").read_text())
    assert environment["packages"]["torch"]
    git_json = json.loads((local / "git.json").read_text())
    assert git_json["dirty"] is True
    assert "notes.txt" in git_json["untracked"]


def test_snapshot_patch_applies_to_a_clean_checkout_of_the_commit(
    dirty_tracked_run: tuple[str, Path], store: str, tmp_path: Path
) -> None:
    run_id, repo = dirty_tracked_run
    snap = load_snapshot(run_id, tracking_uri=store)
    clean = tmp_path / "clean"
    git(["worktree", "add", "-q", "--detach", str(clean), snap.git.commit or ""], repo)
    subprocess.run(["git", "apply", "--check", "-"], cwd=clean, input=snap.patch, check=True)
    subprocess.run(["git", "apply", "-"], cwd=clean, input=snap.patch, check=True)
    for rel in ("configs/_base_/default_runtime.py", "blob.bin"):
        assert (clean / rel).read_bytes() == (repo / rel).read_bytes()


def test_snapshot_alone_re_resolves_to_the_tagged_hash(
    dirty_tracked_run: tuple[str, Path], store: str, tmp_path: Path
) -> None:
    run_id, _ = dirty_tracked_run
    snap = load_snapshot(run_id, tracking_uri=store)
    assert snap.resolve(tmp_path / "restored").hash == snap.config_hash


def test_every_logged_step_is_in_the_run_once_and_the_checkpoint_is_uploaded(
    dirty_tracked_run: tuple[str, Path], store: str
) -> None:
    run_id, _ = dirty_tracked_run
    client = MlflowClient(store)
    steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
    assert sorted(steps) == list(range(5, 46, 5))
    tags = client.get_run(run_id).data.tags
    assert tags["trackcfg.latest_checkpoint"] == "checkpoints/epoch_1.pth"
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == [
        "checkpoints/epoch_1.pth"
    ]


def test_a_failing_run_is_marked_failed_with_its_error(
    git_repo: Path, tracking_env: dict[str, str], tracking_uri: str, run_trackcfg: Run
) -> None:
    # (A config that cannot even be built leaves no run: test_cli_first_hour.py.)
    env = dict(tracking_env, TRACKCFG_E2E_FAIL_AT="2")
    done = run_trackcfg("run", E2E_CONFIG_PATH, env=env, cwd=git_repo)
    assert done.returncode != 0
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FAILED"
    assert "injected failure at iteration 2" in run.data.tags["trackcfg.error"]
    assert run.info.end_time >= run.info.start_time  # never a negative duration


def test_a_dead_tracking_agent_never_stops_training_and_sync_completes_the_run(
    git_repo: Path, tracking_env: dict[str, str], tracking_uri: str
) -> None:
    env = dict(tracking_env, TRACKCFG_E2E_ITER_DELAY="0.02")
    work = git_repo / "work_dirs" / "orphan"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackcfg", "run", E2E_CONFIG_PATH, "--work-dir", str(work)],
        cwd=git_repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    journal = work / ".trackcfg" / "journal"
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in journal.glob("*/metrics.jsonl")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    agent = agent_pid(proc.pid)
    assert agent is not None
    os.kill(agent, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]  # training finished regardless
    run_id = run_id_from(stdout)
    assert "trackcfg sync" in stderr
    client = MlflowClient(tracking_uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # nobody could set it yet
    synced = trackcfg("sync", str(work), cwd=git_repo, env=tracking_env)
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert "0 pending, 1 run status(es) set" in synced.stdout
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.end_time >= run.info.start_time  # the end `sync` set, from the journal
    journaled = [
        json.loads(line) for line in (journal / run_id / "metrics.jsonl").read_text().splitlines()
    ]
    history = {
        (m.key, m.step) for key in run.data.metrics for m in client.get_metric_history(run_id, key)
    }
    assert history == {(r["k"], r["p"]) for r in journaled}
    # The checkpoints no agent uploaded: sync uploads them, keeping the last 2 of 4.
    assert "2 checkpoint(s) uploaded, 0 pending" in synced.stdout
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == [
        "checkpoints/epoch_3.pth",
        "checkpoints/epoch_4.pth",
    ]
    newest = read_checkpoint_record(work / "epoch_4.pth")
    assert newest is not None
    assert run.data.tags["trackcfg.latest_checkpoint"] == "checkpoints/epoch_4.pth"
    assert run.data.tags["trackcfg.latest_checkpoint_digest"] == newest.digest
    stored = client.download_artifacts(run_id, "checkpoints/epoch_4.pth", str(work / "dl"))
    assert content_digest(stored) == newest.digest
