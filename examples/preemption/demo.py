"""Preemption demo: SIGKILL a tracked run mid-training, resume it, compare the weights.

What it shows: ``trackcfg resume RUN_ID`` continues a killed run from its newest
complete checkpoint (model, optimizer, schedulers, every RNG, the data position)
and ends with weights bit-identical to a run that was never interrupted.

It works in a scratch workspace (a new git repository holding ``configs/`` as
your git HEAD has it, with its own MLflow store), so it never touches your work
tree, and your uncommitted edits do not change what it runs::

    python examples/preemption/demo.py                 # 3 epochs of the CNN job
    python examples/preemption/demo.py --epochs 2 --keep /tmp/demo

Steps:
  1. ``trackcfg run`` the job uninterrupted (the reference).
  2. ``trackcfg run`` it again and SIGKILL the process once its first checkpoint is
     on disk (the kill lands in the middle of the next epoch).
  3. Find the killed run with ``trackcfg runs --hash <hash> --json`` and
     ``trackcfg resume`` it.
  4. Print the SHA-256 of both final models' weights: they are equal.

Exit status 0 when the digests match, 1 when not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = "configs/digits/cnn_sgd_10e.py"


def trackcfg(*args: str, cwd: Path, env: dict[str, str]) -> str:
    """Run ``python -m trackcfg ARGS`` and return its stdout (fails loudly)."""
    argv = [sys.executable, "-m", "trackcfg", *args]
    print(f"$ trackcfg {' '.join(args)}", flush=True)
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"trackcfg {args[0]} failed with exit status {proc.returncode}")
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

    Taken from the repo's git HEAD, not from your working tree, so that local edits
    cannot change what the demo runs (outside a git checkout, the files on disk).
    """
    copy_committed_configs(directory)
    for args in (
        ["init", "-q"],
        ["add", "configs"],
        ["-c", "user.name=demo", "-c", "user.email=demo@example.com", "commit", "-qm", "configs"],
    ):
        subprocess.run(["git", *args], cwd=directory, check=True)
    return directory


def weights_digest(checkpoint: Path) -> str:
    """SHA-256 over the model's tensors (names sorted), independent of file metadata."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Wait until ``path`` exists (the process must still be running)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise SystemExit(f"the run ended before {path.name} appeared; use more --epochs")
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (>= 2)")
    parser.add_argument("--keep", type=Path, help="workspace to create (kept afterwards)")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the kill happens after epoch 1)")

    root = args.keep or Path(tempfile.mkdtemp(prefix="trackcfg-preemption-"))
    root.mkdir(parents=True, exist_ok=True)
    ws = make_workspace(root)
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{ws / 'mlflow.db'}")
    options = ["--cfg-options", f"runner.max_epochs={args.epochs}", "lr_config.step=[1]"]
    config_hash = trackcfg("hash", CONFIG, *options, cwd=ws, env=env).strip()
    print(f"config hash {config_hash}\n")

    print("1. the reference run, never interrupted")
    trackcfg("run", CONFIG, "--work-dir", "work_dirs/reference", *options, cwd=ws, env=env)

    print("\n2. the same job, SIGKILLed after its first checkpoint")
    victim_dir = ws / "work_dirs" / "preempted"
    argv = [sys.executable, "-m", "trackcfg", "run", CONFIG, "--work-dir", str(victim_dir)]
    print(f"$ trackcfg run {CONFIG} --work-dir {victim_dir} {' '.join(options)} &")
    victim = subprocess.Popen(
        [*argv, *options], cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(victim_dir / "epoch_1.pth", victim)
    time.sleep(0.05)  # let epoch 2 get going: the kill lands mid-epoch
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    print(f"killed (exit status {victim.returncode})")

    print("\n3. find the killed run and resume it")
    rows = json.loads(trackcfg("runs", "--hash", config_hash, "--json", cwd=ws, env=env))
    unfinished = [r for r in rows if r["status"] != "FINISHED"]
    if len(unfinished) != 1:
        raise SystemExit(f"expected one unfinished run, found {rows}")
    run_id = unfinished[0]["run_id"]
    print(trackcfg("resume", run_id, cwd=ws, env=env))

    print("4. final weights")
    last = f"epoch_{args.epochs}.pth"
    reference = weights_digest(ws / "work_dirs" / "reference" / last)
    resumed = weights_digest(victim_dir / last)
    print(f"  uninterrupted  {reference}")
    print(f"  killed+resumed {resumed}")
    same = reference == resumed
    print("  identical" if same else "  DIFFERENT")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
