"""Audit walk-through: which base file made two runs of the same experiment differ?

A scratch workspace (a new git repository with a copy of ``configs/`` and its
own MLflow store) gets two short runs of one experiment config; between them a
*base* file changes (the schedule's learning rate). Then::

    trackcfg runs --hash <old hash>      # the first run, found by its config hash
    trackcfg diff <run 1> <run 2>        # optimizer.lr differs; side b names the base file
    trackcfg blame <run 2> optimizer.lr  # the full history of the value

``diff`` and ``blame`` read the runs' snapshots only, so the answers hold even
after the files change again or disappear (the script deletes the base file to
show it). Run it from anywhere::

    python examples/audit/walkthrough.py [--keep DIR]

Exit status 0 when every step showed what it should.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = "configs/digits/cnn_sgd_10e.py"
BASE = "configs/_base_/schedules/sgd_10e.py"
# Two epochs would be a real comparison; the walk-through only needs runs to exist.
SHORT = ["--cfg-options", "runner.max_epochs=1", "data.samples_per_gpu=64"]


def trackcfg(
    *args: str, cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,), echo: bool = True
) -> str:
    """Run ``python -m trackcfg ARGS`` (echoing the command and its output); return stdout."""
    if echo:
        print(f"\n$ trackcfg {' '.join(args)}", flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "trackcfg", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode not in ok:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"trackcfg {args[0]} exited with {proc.returncode}")
    if echo:
        print(proc.stdout, end="", flush=True)
    return proc.stdout


def make_workspace(directory: Path) -> Path:
    """A fresh git repository with a copy of the repo's configs, committed."""
    shutil.copytree(REPO / "configs", directory / "configs")
    for args in (
        ["init", "-q"],
        ["add", "configs"],
        ["-c", "user.name=demo", "-c", "user.email=demo@example.com", "commit", "-qm", "configs"],
    ):
        subprocess.run(["git", *args], cwd=directory, check=True)
    return directory


def latest_run(config_hash: str, cwd: Path, env: dict[str, str]) -> str:
    out = trackcfg("runs", "--hash", config_hash, "--json", cwd=cwd, env=env, echo=False)
    rows = json.loads(out)
    return str(rows[0]["run_id"])


def check(condition: bool, what: str) -> None:
    print(f"  [{'ok' if condition else 'FAILED'}] {what}")
    if not condition:
        raise SystemExit(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="workspace to create (kept afterwards)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="trackcfg-audit-"))
    root.mkdir(parents=True, exist_ok=True)
    ws = make_workspace(root)
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{ws / 'mlflow.db'}")

    print("1. run the experiment")
    hash_1 = trackcfg("hash", CONFIG, *SHORT, cwd=ws, env=env).strip()
    trackcfg("run", CONFIG, "--work-dir", "work_dirs/run1", *SHORT, cwd=ws, env=env)

    print("\n2. someone edits a *base* file (the experiment file is untouched)")
    base = ws / BASE
    base.write_text(base.read_text().replace("lr=0.01", "lr=0.02"))
    print(f"   {BASE}: lr=0.01 -> lr=0.02 (uncommitted)")
    hash_2 = trackcfg("hash", CONFIG, *SHORT, cwd=ws, env=env).strip()
    check(hash_1 != hash_2, "the config hash changed although the experiment file did not")
    trackcfg("run", CONFIG, "--work-dir", "work_dirs/run2", *SHORT, cwd=ws, env=env)

    print("\n3. find the runs by config hash")
    run_1 = latest_run(hash_1, ws, env)
    run_2 = latest_run(hash_2, ws, env)
    trackcfg("runs", "--hash", hash_1[:8], cwd=ws, env=env)

    print("\n4. why do they differ? (the base file is deleted first: snapshots suffice)")
    base.unlink()
    out = trackcfg("diff", run_1, run_2, cwd=ws, env=env, ok=(1,))
    check("optimizer.lr: 0.01 -> 0.02" in out, "diff shows optimizer.lr changed")
    check(f"b: {BASE}:" in out, f"diff names {BASE} as responsible")
    files = out.split("lineage files that differ:")[-1].split()
    check(files[:1] == [BASE], f"diff lists {BASE} as the one lineage file that changed")
    out = trackcfg("blame", run_2, "optimizer.lr", cwd=ws, env=env)
    check(BASE in out and "0.02" in out, "blame shows where 0.02 was set")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
