"""Benchmark: what ``trackcfg verify`` costs beyond re-running the run.

The main job (``configs/digits/cnn_sgd_10e.py``) is run once, tracked, in a temp
git repository against a temp SQLite store. Then, alternating A/B ``--repeat``
times in separate processes:

- A: re-running it, ``python -m trackcfg run CONFIG`` (a new run of the same store);
- B: verifying it, ``python -m trackcfg verify RUN_ID`` (worktree at the commit,
  snapshot and metric history read, the run re-trained with every logged value
  and checkpoint compared as it comes, the verdict stored, the worktree removed).

Prints the median wall time and CPU time (user + system of the process and its
children: the tracking agent) of each, and their ratios; exits 1 when verify's
median wall time exceeds re-running's by more than 10 % (issue 17), or when a
verification does not come out bitwise. ``OMP_NUM_THREADS=1`` unless set (a
shared machine's spinning OpenMP threads swing timings by several times).

Usage: ``python tests/benchmarks/bench_verify.py [--epochs E] [--repeat R]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/digits/cnn_sgd_10e.py"  # the main job
TARGET = 1.10


def trackcfg(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[str, float, float]:
    """Run ``python -m trackcfg *argv``; returns (stdout, wall s, CPU s of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "trackcfg", *argv], cwd=cwd, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"trackcfg {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return done.stdout, wall, cpu


def run_id_of(stdout: str) -> str:
    for line in stdout.splitlines():
        if line.startswith("run id:"):
            return line.split()[2]
    raise SystemExit(f"no run id in:\n{stdout}")


def make_repo(root: Path) -> None:
    shutil.copytree(REPO_ROOT / "configs", root / "configs")
    (root / ".gitignore").write_text("mlflow.db\nwork_dirs/\n")
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@trackcfg.invalid",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@trackcfg.invalid",
    )
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="max_epochs (10: the main job)")
    parser.add_argument("--repeat", type=int, default=3, help="A/B pairs")
    args = parser.parse_args()
    options = ["--cfg-options", f"runner.max_epochs={args.epochs}"]
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        base = Path(tmp)
        repo = base / "project"
        make_repo(repo)
        env = dict(
            os.environ,
            MLFLOW_TRACKING_URI="sqlite:///" + (base / "store" / "mlflow.db").as_posix(),
            PYTHONPATH=str(REPO_ROOT),
        )
        env.setdefault("OMP_NUM_THREADS", "1")
        (base / "store").mkdir()
        out, _, _ = trackcfg(["run", CONFIG, *options], repo, env)
        original = run_id_of(out)
        rerun: list[tuple[float, float]] = []
        verify: list[tuple[float, float]] = []
        for i in range(args.repeat):
            # Alternate which goes first: a machine that slows down (or warms up) over
            # the benchmark weighs on both sides alike.
            order = ("A", "B") if i % 2 == 0 else ("B", "A")
            for side in order:
                if side == "A":
                    _, wall, cpu = trackcfg(["run", CONFIG, *options], repo, env)
                    rerun.append((wall, cpu))
                else:
                    out, wall, cpu = trackcfg(["verify", original], repo, env)
                    if not out.startswith("bitwise identical"):
                        print(out)
                        return 1
                    verify.append((wall, cpu))
                print(f"  pair {i + 1} {side}: {wall:6.2f} s wall, {cpu:6.2f} s CPU", flush=True)
    wall_a = statistics.median(w for w, _ in rerun)
    wall_b = statistics.median(w for w, _ in verify)
    cpu_a = statistics.median(c for _, c in rerun)
    cpu_b = statistics.median(c for _, c in verify)
    print(f"main job, {args.epochs} epoch(s), {args.repeat} A/B pair(s), median:")
    print(f"  A re-run (trackcfg run):     {wall_a:6.2f} s wall  {cpu_a:6.2f} s CPU")
    print(f"  B verify (trackcfg verify):  {wall_b:6.2f} s wall  {cpu_b:6.2f} s CPU")
    ratio = wall_b / wall_a
    print(f"  ratio verify/re-run: {ratio:.3f} wall, {cpu_b / cpu_a:.3f} CPU (target <= {TARGET})")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
