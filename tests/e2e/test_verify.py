"""``trackcfg verify`` through `python -m trackcfg`, in a real git repo and store.

One module-scoped project holds the two original runs (training is the slow part),
both made from a dirty tree (the schedule's lr edited, not committed), so every
verification below goes through the recorded patch:

- run A: the main job (``cnn_sgd_10e.py``, 2 short epochs of 6 iterations);
- run B: the main job with ``NoisyCNN``, a model registered via ``custom_imports``
  that, from its 9th training step on, perturbs a weight by a draw from an
  unseeded source when non-deterministic algorithms are allowed
  (``deterministic = False``): the first logged step it shows in is 10, after
  the checkpoint at iteration 6.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.e2e.conftest import git, make_project, run_env, run_id_from, sqlite_uri, trackcfg

MAIN = "configs/digits/cnn_sgd_10e.py"
NOISY = "configs/digits/noisy.py"
BASE = "configs/_base_/schedules/sgd_10e.py"
#: The main job, cheap: 1437 training images in batches of 256 are 6 iterations an
#: epoch. Determinism off only skips torch's inductor import (CPU kernels here are
#: deterministic either way).
CHEAP = [
    "--cfg-options",
    "runner.max_epochs=2",
    "data.samples_per_gpu=256",
    "log_config.interval=2",
    "deterministic=False",
]

NOISY_MODEL = '''"""A model drawing from an unseeded source (only where determinism is off)."""
import random

import torch

from trackcfg.registry import MODELS
from trackcfg.zoo.cnn import DigitsCNN

_UNSEEDED = random.SystemRandom()


@MODELS.register_module()
class NoisyCNN(DigitsCNN):
    def __init__(self, noisy_from=0, **kwargs):
        super().__init__(**kwargs)
        self.noisy_from = noisy_from
        self.steps = 0

    def train_step(self, data_batch, optimizer=None, **kwargs):
        self.steps += 1
        if self.steps > self.noisy_from and not torch.are_deterministic_algorithms_enabled():
            with torch.no_grad():
                next(self.parameters()).add_(_UNSEEDED.random() * 1e-4)
        return super().train_step(data_batch, optimizer, **kwargs)
'''

NOISY_CONFIG = """_base_ = './cnn_sgd_10e.py'
custom_imports = dict(imports=['trackcfg.zoo', 'noisy_model'], allow_failed_imports=False)
model = dict(type='NoisyCNN', noisy_from=8)
"""

# One xdist worker runs the whole module: its module-scoped fixture (two runs, their
# verifications) would otherwise run again on every worker that gets one of its tests.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("verify")]


@dataclass(frozen=True)
class Project:
    root: Path
    env: dict[str, str]
    uri: str
    run_a: str
    run_b: str


def ok(done: subprocess.CompletedProcess[str], status: int = 0) -> str:
    assert done.returncode == status, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, migrated_store: Path) -> Project:
    base = tmp_path_factory.mktemp("verify")
    root = make_project(base / "project")
    (root / "noisy_model.py").write_text(NOISY_MODEL)
    (root / NOISY).write_text(NOISY_CONFIG)
    git(["add", "."], root)
    git(["commit", "-q", "-m", "noisy model"], root)
    # Dirty: without the recorded patch the config would hash differently.
    schedule = root / BASE
    schedule.write_text(schedule.read_text().replace("lr=0.01", "lr=0.02"))
    uri = sqlite_uri(base / "store", migrated_store)
    env = run_env(uri)
    run_a = run_id_from(ok(trackcfg("run", MAIN, *CHEAP, env=env, cwd=root)))
    run_b = run_id_from(ok(trackcfg("run", NOISY, *CHEAP, env=env, cwd=root)))
    return Project(root, env, uri, run_a, run_b)


def tags(project: Project, run_id: str) -> dict[str, str]:
    return dict(MlflowClient(project.uri).get_run(run_id).data.tags)


def test_a_dirty_main_job_run_verifies_bitwise_through_its_patch(project: Project) -> None:
    status_before = git(["status", "--porcelain"], project.root)
    out = ok(trackcfg("verify", project.run_a, env=project.env, cwd=project.root))
    # epoch_1, epoch_2 and the best checkpoint each epoch kept (the main job evaluates)
    assert out.startswith("bitwise identical; all 4 checkpoint(s) identical; environment: same")
    assert "+ recorded patch" in out
    # 12 training iterations; the last evaluation is logged at step iter + 1 = 13 (mmcv's
    # val-epoch step), and the count is the last step compared.
    assert "compared:       13 iteration(s)" in out
    recorded = tags(project, project.run_a)
    assert recorded["trackcfg.verified"] == "bitwise"
    verifier = recorded["trackcfg.verified_by"]
    assert tags(project, verifier)["trackcfg.verifies"] == project.run_a
    assert int(recorded["trackcfg.verified_time"]) > 0
    # The worktree is gone, the user's tree untouched.
    assert git(["worktree", "list"], project.root).count("\n") == 1
    assert git(["status", "--porcelain"], project.root) == status_before
    listed = ok(trackcfg("runs", "--verified", env=project.env, cwd=project.root))
    assert project.run_a in listed and "bitwise" in listed
    assert project.run_b not in listed


def test_steps_stops_early_and_stores_a_partial_verdict(project: Project) -> None:
    argv = ["verify", project.run_a, "--steps", "4", "--keep"]
    out = ok(trackcfg(*argv, env=project.env, cwd=project.root))
    assert out.startswith("identical for 4 iterations (partial); no checkpoints")
    assert tags(project, project.run_a)["trackcfg.verified"] == "partial@4"
    verifier = tags(project, project.run_a)["trackcfg.verified_by"]
    history = MlflowClient(project.uri).get_metric_history(verifier, "train/loss")
    assert max(m.step for m in history) == 4  # it stopped there
    assert MlflowClient(project.uri).get_run(verifier).info.status == "KILLED"
    kept = Path(out.split("kept in ")[1].split()[0])
    assert (kept / BASE).read_text().count("lr=0.02") == 1  # the recorded patch
    git(["worktree", "remove", "--force", "--force", str(kept)], project.root)


def test_an_unseeded_component_diverges_at_its_first_logged_step(project: Project) -> None:
    done = trackcfg("verify", project.run_b, env=project.env, cwd=project.root)
    out = ok(done, 1)
    first = out.splitlines()[0]
    assert first.startswith("diverged at iter 10 (train/loss ")
    assert "; all checkpoints up to iter 6 identical; environment: same" in first
    assert "note: deterministic is False: non-deterministic algorithms are allowed" in out
    assert tags(project, project.run_b)["trackcfg.verified"] == "diverged@10"
    verifier = tags(project, project.run_b)["trackcfg.verified_by"]
    # Stopped at the divergence, not trained to the end (12 iterations).
    history = MlflowClient(project.uri).get_metric_history(verifier, "train/loss")
    assert max(m.step for m in history) == 10


def test_a_run_whose_commit_is_missing_cannot_run_exit_2(project: Project, tmp_path: Path) -> None:
    before = tags(project, project.run_a).get("trackcfg.verified")
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    git(["init", "-q", "-b", "main"], elsewhere)
    done = trackcfg("verify", project.run_a, env=project.env, cwd=elsewhere)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"is not in the repository at {elsewhere}" in done.stderr
    assert "diverged" not in done.stdout + done.stderr
    assert tags(project, project.run_a).get("trackcfg.verified") == before
