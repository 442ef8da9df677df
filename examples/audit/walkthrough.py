"""Audit walk-through: which base file made two runs of the same experiment differ?

A scratch workspace (a new git repository with ``configs/`` as your git HEAD has
it, and its own MLflow store) gets two short runs of one experiment config; between them a
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
# The base file's two versions, written whole (never a search-and-replace on a file
# the user may have changed): only the learning rate, on line 2, differs.
BASE_BEFORE = """\
# SGD with momentum for 10 epochs; the learning rate drops 10x after epoch 7.
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4)
optimizer_config = dict(grad_clip=None)
lr_config = dict(policy='step', step=[7])
runner = dict(type='EpochBasedRunner', max_epochs=10)
"""
BASE_AFTER = BASE_BEFORE.replace("lr=0.01,", "lr=0.02,")


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


def copy_committed_configs(directory: Path) -> None:
    """``configs/`` as the repo's git HEAD has it (the files on disk outside a checkout)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-tree", "-r", "-z", "--name-only", "HEAD", "--", "configs"],
        capture_output=True,
        text=True,
    )
    names = [n for n in listed.stdout.split("\0") if n] if listed.returncode == 0 else []
    if not names:
        shutil.copytree(REPO / "configs", directory / "configs")
        return
    for name in names:
        blob = subprocess.run(
            ["git", "-C", str(REPO), "show", f"HEAD:./{name}"], capture_output=True, check=True
        )
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(blob.stdout)


def make_workspace(directory: Path) -> Path:
    """A fresh git repository with the repo's ``configs/`` as committed, committed.

    Taken from the repo's git HEAD, not from the working tree: whatever you changed
    there (the README invites editing a base file) cannot change what this shows.
    Outside a git checkout (an unpacked archive) the files on disk are copied.
    """
    copy_committed_configs(directory)
    # The base file this walk-through edits gets exactly the content it needs.
    (directory / BASE).write_text(BASE_BEFORE)
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


def check(condition: bool, what: str, otherwise: str) -> None:
    """Print ``[ok] what``, or ``[FAILED] otherwise`` (what happened instead) and exit 1."""
    print(f"  [ok] {what}" if condition else f"  [FAILED] {otherwise}")
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
    base.write_text(BASE_AFTER)
    print(f"   {BASE}: lr=0.01 -> lr=0.02 (uncommitted)")
    hash_2 = trackcfg("hash", CONFIG, *SHORT, cwd=ws, env=env).strip()
    check(
        hash_1 != hash_2,
        "the config hash changed although the experiment file did not",
        f"the config hash stayed {hash_1} after {BASE} changed",
    )
    trackcfg("run", CONFIG, "--work-dir", "work_dirs/run2", *SHORT, cwd=ws, env=env)

    print("\n3. find the runs by config hash")
    run_1 = latest_run(hash_1, ws, env)
    run_2 = latest_run(hash_2, ws, env)
    trackcfg("runs", "--hash", hash_1[:8], cwd=ws, env=env)

    print("\n4. why do they differ? (the base file is deleted first: snapshots suffice)")
    base.unlink()
    out = trackcfg("diff", run_1, run_2, cwd=ws, env=env, ok=(1,))
    check(
        "optimizer.lr: 0.01 -> 0.02" in out,
        "diff shows optimizer.lr changed",
        "diff (output above) has no line `optimizer.lr: 0.01 -> 0.02`",
    )
    check(
        f"b: {BASE}:" in out,
        f"diff names {BASE} as responsible",
        f"diff (output above) names no `b: {BASE}:` line",
    )
    files = out.split("lineage files that differ:")[-1].split() if "lineage" in out else []
    check(
        files[:1] == [BASE],
        f"diff lists {BASE} as the one lineage file that changed",
        f"diff lists {files or 'no file'} as the lineage files that differ",
    )
    out = trackcfg("blame", run_2, "optimizer.lr", cwd=ws, env=env)
    check(
        BASE in out and "0.02" in out,
        "blame shows where 0.02 was set",
        f"blame (output above) does not show 0.02 set in {BASE}",
    )
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
