"""Every command on tracked runs, through `python -m trackcfg`, in a real git repo and store.

One module-scoped project holds the runs (training is the slow part):

- run A: ``configs/digits/tiny.py`` (committed; 1 short epoch) from a clean tree,
  without ``--work-dir``;
- then ``configs/_base_/schedules/sgd_10e.py`` is edited (lr 0.01 -> 0.02, not
  committed) and an untracked ``configs/digits/tiny_b.py`` is added;
- run B: ``tiny_b.py`` from that dirty tree;
- run A2: ``tiny.py`` again (now resolving to another hash), without ``--work-dir``:
  its files must not clobber run A's;
- run N: an MLflow run without a trackcfg snapshot.

What the config files said when each run was made is captured right then, so
the tests can check that `blame`/`diff` on a run answer exactly like on its files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.e2e.conftest import git, run_id_from, trackcfg

TINY = "configs/digits/tiny.py"
TINY_B = "configs/digits/tiny_b.py"
BASE = "configs/_base_/schedules/sgd_10e.py"
UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"
REPO_ROOT = Path(__file__).resolve().parents[2]

# Two short trainings in the module fixture, then ~20 CLI processes that import mlflow.
# One xdist worker runs the whole module: its module-scoped fixture (three tracked runs) would
# otherwise run again on every worker that gets one of its tests.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cli_runs")]


@dataclass(frozen=True)
class Project:
    """The module's repo, store and runs."""

    root: Path
    env: dict[str, str]
    uri: str
    run_a: str
    run_a2: str
    run_b: str
    run_no_snapshot: str
    hash_a: str
    hash_b: str
    blame_a_files: str  # `blame tiny.py optimizer` when run A was made
    blame_b_files: str  # `blame tiny_b.py model` when run B was made
    diff_b_files: str  # `diff tiny_b.py tiny.py --json` when run B was made
    run_a_stderr: str
    run_b_stderr: str


def ok(done: subprocess.CompletedProcess[str], status: int = 0) -> str:
    assert done.returncode == status, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    base = tmp_path_factory.mktemp("cli-runs")
    root = base / "project"
    shutil.copytree(REPO_ROOT / "configs", root / "configs")
    (root / TINY).write_text(
        "_base_ = './cnn_sgd_10e.py'\n"
        "runner = dict(max_epochs=1)\n"
        "data = dict(samples_per_gpu=256)\n"
        "log_config = dict(interval=2)\n"
        # CPU kernels here are deterministic anyway; skips ~3 s of torch._inductor import.
        "deterministic = False\n"
    )
    git(["init", "-q", "-b", "main"], root)
    git(["add", "configs"], root)
    git(["commit", "-q", "-m", "configs"], root)
    uri = "sqlite:///" + (base / "store" / "mlflow.db").as_posix()
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)

    blame_a_files = ok(trackcfg("blame", TINY, "optimizer", env=env, cwd=root))
    done_a = trackcfg("run", TINY, env=env, cwd=root)
    run_a = run_id_from(ok(done_a))

    base_file = root / BASE
    base_file.write_text(base_file.read_text().replace("lr=0.01", "lr=0.02"))
    (root / TINY_B).write_text("_base_ = './tiny.py'\nmodel = dict(channels=(8, 16))\n")
    blame_b_files = ok(trackcfg("blame", TINY_B, "model", env=env, cwd=root))
    diff_b_files = ok(trackcfg("diff", TINY_B, TINY, "--json", env=env, cwd=root), 1)
    done_b = trackcfg("run", TINY_B, "--work-dir", "work_dirs/b", env=env, cwd=root)
    run_b = run_id_from(ok(done_b))
    run_a2 = run_id_from(ok(trackcfg("run", TINY, env=env, cwd=root)))

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("trackcfg")
    assert experiment is not None
    bare = client.create_run(experiment.experiment_id, run_name="made-by-hand").info.run_id
    client.set_terminated(bare)
    tags = {r: client.get_run(r).data.tags for r in (run_a, run_b)}
    return Project(
        root=root,
        env=env,
        uri=uri,
        run_a=run_a,
        run_a2=run_a2,
        run_b=run_b,
        run_no_snapshot=bare,
        hash_a=tags[run_a]["trackcfg.config_hash"],
        hash_b=tags[run_b]["trackcfg.config_hash"],
        blame_a_files=blame_a_files,
        blame_b_files=blame_b_files,
        diff_b_files=diff_b_files,
        run_a_stderr=done_a.stderr,
        run_b_stderr=done_b.stderr,
    )


# -- run --------------------------------------------------------------------------------


def test_run_prints_run_id_hash_and_how_to_open_the_ui(project: Project) -> None:
    tags = MlflowClient(project.uri).get_run(project.run_a).data.tags
    assert tags["trackcfg.config_hash"] == project.hash_a
    assert tags["trackcfg.git_dirty"] == "false"
    assert MlflowClient(project.uri).get_run(project.run_b).data.tags["trackcfg.git_dirty"] == (
        "true"
    )


def test_run_shows_training_progress_and_no_third_party_noise(project: Project) -> None:
    lines = project.run_a_stderr.splitlines()
    assert any("Epoch(val) [1]" in line for line in lines)
    # The run id (to resume by) before the first iteration, otherwise only the
    # trackcfg logger's lines (HH:MM:SS message): no MLflow/alembic/git logs.
    first = next(i for i, line in enumerate(lines) if line.startswith("run id:"))
    assert lines[first].startswith(f"run id:       {project.run_a}  (")
    assert lines[first + 1] == f"config hash:  {project.hash_a}"
    assert lines[first + 3] == f"if it stops:  trackcfg resume {project.run_a}"
    assert not any("Epoch" in line for line in lines[:first]), lines
    rest = lines[:first] + lines[first + 4 :]
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in rest), lines


def test_run_resume_auto_continues_the_unfinished_run_with_that_hash(project: Project) -> None:
    # As if preempted: the run is not FINISHED. `run --resume auto` must find it by hash,
    # and continue it in the work dir of its own that it was given.
    MlflowClient(project.uri).set_terminated(project.run_a2, status="KILLED")
    done = trackcfg("run", TINY, "--resume", "auto", env=project.env, cwd=project.root)
    out = ok(done)
    assert f"resuming run {project.run_a2}" in done.stderr
    assert run_id_from(out) == project.run_a2
    run = MlflowClient(project.uri).get_run(project.run_a2)
    assert f"config hash:  {run.data.tags['trackcfg.config_hash']}" in out
    assert f"work dir:     {run.data.tags['trackcfg.work_dir']}" in done.stderr
    assert run.info.status == "FINISHED"


def test_sync_reports_per_work_dir(project: Project) -> None:
    out = ok(trackcfg("sync", env=project.env, cwd=project.root))
    assert [line.split(":")[0] for line in out.splitlines()] == ["work_dirs/b", "work_dirs/tiny"]
    assert all("0 pending" in line for line in out.splitlines())
    assert "work_dirs/tiny: 2 journal(s)" in out  # runs A and A2, each in its own dir


def test_runs_of_one_config_keep_their_files_apart(project: Project) -> None:
    client = MlflowClient(project.uri)
    dirs = [
        Path(client.get_run(r).data.tags["trackcfg.work_dir"])
        for r in (project.run_a, project.run_a2)
    ]
    assert dirs[0] != dirs[1]
    for work, run_id in zip(dirs, (project.run_a, project.run_a2), strict=True):
        assert work.parent == project.root / "work_dirs" / "tiny"
        assert list(work.glob("*.log"))  # its own text logs
        assert (work / "epoch_1.pth").is_file()
        assert [j.name for j in (work / ".trackcfg" / "journal").iterdir()] == [run_id]


# -- blame / diff on runs -----------------------------------------------------------------


def test_blame_on_a_run_equals_blame_on_its_files(project: Project) -> None:
    a = ok(trackcfg("blame", project.run_a, "optimizer", env=project.env, cwd=project.root))
    b = ok(trackcfg("blame", project.run_b, "model", env=project.env, cwd=project.root))
    assert (a, b) == (project.blame_a_files, project.blame_b_files)


def test_blame_on_a_run_downloads_its_snapshot_once(project: Project, tmp_path: Path) -> None:
    env = dict(project.env, TRACKCFG_CACHE_DIR=str(tmp_path / "cache"))
    first = ok(trackcfg("blame", project.run_a, "optimizer", env=env, cwd=project.root))
    # The second call answers from the cache: even with the store gone it is the same.
    env["MLFLOW_TRACKING_URI"] = "sqlite:///" + (tmp_path / "gone" / "mlflow.db").as_posix()
    second = ok(trackcfg("blame", project.run_a, "optimizer", env=env, cwd=project.root))
    assert second == first == project.blame_a_files


def test_a_run_from_a_dirty_tree_says_so_at_start(project: Project) -> None:
    notice = "the git tree has uncommitted changes"
    assert notice in project.run_b_stderr
    assert notice not in project.run_a_stderr


def test_blame_on_a_run_works_without_its_files(project: Project, tmp_path: Path) -> None:
    # An empty directory: no config file, no git repo; only the store.
    out = ok(trackcfg("blame", project.run_a, "optimizer", env=project.env, cwd=tmp_path))
    assert out == project.blame_a_files
    assert "configs/_base_/schedules/sgd_10e.py:2  set  0.01" in out


def test_diff_on_runs_equals_diff_on_their_files(project: Project, tmp_path: Path) -> None:
    runs = ok(
        trackcfg("diff", project.run_b, project.run_a, "--json", env=project.env, cwd=tmp_path), 1
    )
    files = json.loads(project.diff_b_files)
    # Run A was made before the base edit: lr differs too, set by the same base line.
    differences = json.loads(runs)["differences"]
    lr = next(d for d in differences if d["key_path"] == "optimizer.lr")
    assert (lr["old"], lr["new"]) == (0.02, 0.01)
    assert lr["a"]["file"] == lr["b"]["file"] == BASE
    assert [d for d in differences if d["key_path"] != "optimizer.lr"] == files["differences"]


def test_diff_of_run_and_file_mixes_target_kinds(project: Project) -> None:
    done = trackcfg("diff", project.run_b, TINY_B, env=project.env, cwd=project.root)
    assert ok(done, 0).splitlines()[-1] == "no differences"
    done = trackcfg("diff", TINY, project.run_a, env=project.env, cwd=project.root)
    out = ok(done, 1)
    assert "~ optimizer.lr: 0.02 -> 0.01" in out


def test_diff_exit_status_is_like_diff1(project: Project) -> None:
    same = trackcfg("diff", project.run_a, project.run_a, env=project.env, cwd=project.root)
    differ = trackcfg("diff", project.run_a, project.run_b, env=project.env, cwd=project.root)
    trouble = trackcfg("diff", project.run_a, UNKNOWN_RUN, env=project.env, cwd=project.root)
    assert (same.returncode, differ.returncode, trouble.returncode) == (0, 1, 2)


# -- runs ---------------------------------------------------------------------------------


def test_runs_by_hash_finds_exactly_the_runs_with_that_config(project: Project) -> None:
    rows = json.loads(
        ok(trackcfg("runs", "--hash", project.hash_a, "--json", env=project.env, cwd=project.root))
    )
    assert [r["run_id"] for r in rows] == [project.run_a]
    short = ok(trackcfg("runs", "--hash", project.hash_b[:8], env=project.env, cwd=project.root))
    assert [line.split()[0] for line in short.splitlines()[1:]] == [project.run_b]


def test_runs_table_shows_status_git_and_metrics(project: Project) -> None:
    out = ok(trackcfg("runs", env=project.env, cwd=project.root))
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["run", "id", "name"]
    row_b = next(r for r in rows if r.startswith(project.run_b))
    assert "FINISHED" in row_b and "+dirty" in row_b and "val/accuracy=" in row_b
    assert "best val/accuracy=" in row_b  # the main job keeps its best checkpoint
    assert "train/loss=" in row_b  # what `runs --json` has, training metrics too
    assert project.run_no_snapshot not in out  # not a trackcfg run


def test_runs_by_config_uses_its_current_hash(project: Project) -> None:
    out = ok(trackcfg("runs", "--config", TINY_B, "--json", env=project.env, cwd=project.root))
    assert [r["run_id"] for r in json.loads(out)] == [project.run_b]


# -- reproduce ------------------------------------------------------------------------------


def test_reproduce_a_dirty_run_gives_a_worktree_hashing_to_its_tag(
    project: Project, tmp_path: Path
) -> None:
    status_before = git(["status", "--porcelain"], project.root)
    target = tmp_path / "repro"
    argv = ["reproduce", project.run_b, "--dir", str(target), "--run"]
    out = ok(trackcfg(*argv, env=project.env, cwd=project.root))
    assert f"config hash:  {project.hash_b} (matches the run's tag)" in out
    # The re-run records into the same store, not into a new mlflow.db in the worktree.
    assert f"MLFLOW_TRACKING_URI={project.uri} trackcfg run {TINY_B}" in out
    rehash = ok(trackcfg("hash", TINY_B, env=project.env, cwd=target)).strip()
    assert rehash == project.hash_b
    assert "lr=0.02" in (target / BASE).read_text()  # the recorded patch
    # --run re-ran it there, into the same store: a new run with the same config hash.
    rerun = run_id_from(out.split("re-run with:")[1])
    assert rerun not in (project.run_a, project.run_b)
    tags = MlflowClient(project.uri).get_run(rerun).data.tags
    assert tags["trackcfg.config_hash"] == project.hash_b
    # The current work tree is untouched (still dirty in the same way).
    assert git(["status", "--porcelain"], project.root) == status_before
    git(["worktree", "remove", "--force", str(target)], project.root)


def test_reproduce_refuses_a_non_empty_directory(project: Project, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    done = trackcfg(
        "reproduce", project.run_a, "--dir", str(tmp_path), env=project.env, cwd=project.root
    )
    assert done.returncode == 2
    assert "directory exists and is not empty" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_reproduce_needs_a_repository_holding_the_commit(project: Project, tmp_path: Path) -> None:
    git(["init", "-q"], tmp_path)
    done = trackcfg("reproduce", project.run_a, env=project.env, cwd=tmp_path)
    assert done.returncode == 2
    assert f"is not in the repository at {tmp_path}" in done.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / ".git"]


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["blame", "{unknown}", "optimizer"], "no run '0123456789abcdef0123456789abcdef'"),
        (["resume", "{unknown}"], "no run '0123456789abcdef0123456789abcdef'"),
        (["blame", "{bare}", "optimizer"], "snapshot"),
        (["reproduce", "{bare}"], "snapshot"),
        (["blame", "{a}", "optimzer"], "did you mean 'optimizer'"),
        # tiny.py changed (its base's lr) since run A: resuming with it is refused.
        (["run", TINY, "--resume", "{a}"], "optimizer.lr: changed 0.01 -> 0.02"),
        (["runs", "--experiment", "trackcgf"], "did you mean 'trackcfg'"),
    ],
)
def test_run_errors_are_one_message_exit_2(
    project: Project, command: list[str], message: str
) -> None:
    args = [
        c.format(unknown=UNKNOWN_RUN, a=project.run_a, bare=project.run_no_snapshot)
        for c in command
    ]
    done = trackcfg(*args, env=project.env, cwd=project.root)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    # No third-party log noise: one message (indented details/hint lines may follow).
    lines = [x for x in done.stderr.splitlines() if not x.startswith("resuming run ")]
    assert [x for x in lines if not x.startswith("  ")] == lines[:1], done.stderr


# -- ui -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ui_serves_the_same_store_and_prints_the_search_string(project: Project) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackcfg", "ui", "--port", str(port), "--hash", project.hash_a],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0].startswith(f"MLflow UI:    http://127.0.0.1:{port}")
        assert lines[1].startswith(f"runs of this config hash: http://127.0.0.1:{port}/#/")
        search = f"tags.`trackcfg.config_hash` = '{project.hash_a}'"
        assert lines[2].strip() == f"search runs:  {search}"
        found = _search_when_up(port, search)
        assert found == [project.run_a]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _search_when_up(port: int, search: str, timeout: float = 90) -> list[str]:
    client = MlflowClient(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                pass
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return [r.info.run_id for r in client.search_runs(experiments, filter_string=search)]


def test_sigterm_marks_the_run_killed_and_exits_with_the_requeue_code(project: Project) -> None:
    argv = [sys.executable, "-m", "trackcfg", "run", TINY, "--work-dir", "work_dirs/term"]
    proc = subprocess.Popen(
        [*argv, "--cfg-options", "runner.max_epochs=1000"],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # training has started once the first epoch logs
        if "Epoch [1]" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=120)
    # A preemption: checkpointed at the next iteration, then sysexits' EX_TEMPFAIL.
    assert proc.returncode == 75
    assert rest.splitlines()[-2].endswith("checkpoint saved; exit 75 (requeue)")
    assert rest.splitlines()[-1].startswith("continue it with: trackcfg resume ")
    client = MlflowClient(project.uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("trackcfg").experiment_id],  # type: ignore[union-attr]
        filter_string="tags.`trackcfg.work_dir` LIKE '%work_dirs/term'",
    )
    assert [r.info.status for r in runs] == ["KILLED"]


def test_run_with_a_broken_config_fails_alone_and_creates_no_store(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("model = dict(type='M')\nlr = \n")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = trackcfg("run", "broken.py", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("broken.py:2: ")
    # The tracking agent had started; it left no default store (mlflow.db) behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.py"]
