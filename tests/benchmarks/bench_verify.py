"""Benchmark: what ``trackcfg verify`` costs beyond re-running the run.

The main job (``configs/digits/cnn_sgd_10e.py``) is run once, tracked, in a temp
git repository against a temp SQLite store. Then, rotating the order each round,
``--repeat`` times in separate processes:

- A: re-running it from its record, ``python -m trackcfg reproduce RUN_ID --run``
  (worktree at the commit, hash checked, the run trained again as a new run): the
  baseline issue 17 names, "re-running it";
- B: verifying it, ``python -m trackcfg verify RUN_ID`` (the same, plus the
  original's metric history read, every logged value and checkpoint compared as
  it comes, the verdict stored, the worktree removed);
- C: a plain ``python -m trackcfg run CONFIG`` in the checkout (no worktree), for
  reference.

Prints the median wall time and CPU time (user + system of the process and its
children: the tracking agent) of each, and the ratios; exits 1 when verify's
median wall time exceeds re-running's (A) by more than 10 % (issue 17), or when a
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
        timings: dict[str, list[tuple[float, float]]] = {"A": [], "B": [], "C": []}
        for i in range(args.repeat):
            # Rotate which goes first: a machine that slows down (or warms up) over
            # the benchmark weighs on every side alike.
            order = ("A", "B", "C")[i % 3 :] + ("A", "B", "C")[: i % 3]
            for side in order:
                if side == "A":
                    scratch = base / f"reproduce-{i}"
                    argv = ["reproduce", original, "--run", "--dir", str(scratch)]
                    _, wall, cpu = trackcfg(argv, repo, env)
                    shutil.rmtree(scratch, ignore_errors=True)
                    subprocess.run(["git", "worktree", "prune"], cwd=repo, check=True)
                elif side == "B":
                    out, wall, cpu = trackcfg(["verify", original], repo, env)
                    if not out.startswith("bitwise identical"):
                        print(out)
                        return 1
                else:
                    _, wall, cpu = trackcfg(["run", CONFIG, *options], repo, env)
                timings[side].append((wall, cpu))
                print(f"  round {i + 1} {side}: {wall:6.2f} s wall, {cpu:6.2f} s CPU", flush=True)
    wall = {side: statistics.median(w for w, _ in t) for side, t in timings.items()}
    cpu = {side: statistics.median(c for _, c in t) for side, t in timings.items()}
    print(f"main job, {args.epochs} epoch(s), {args.repeat} round(s), median:")
    print(f"  A re-run (reproduce --run):  {wall['A']:6.2f} s wall  {cpu['A']:6.2f} s CPU")
    print(f"  B verify:                    {wall['B']:6.2f} s wall  {cpu['B']:6.2f} s CPU")
    print(f"  C plain run (no worktree):   {wall['C']:6.2f} s wall  {cpu['C']:6.2f} s CPU")
    ratio = wall["B"] / wall["A"]
    print(f"  verify/re-run: {ratio:.3f} wall, {cpu['B'] / cpu['A']:.3f} CPU (target <= {TARGET})")
    print(f"  verify/plain run: {wall['B'] / wall['C']:.3f} wall, {cpu['B'] / cpu['C']:.3f} CPU")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
