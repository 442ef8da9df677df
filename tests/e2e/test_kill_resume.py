"""Kill and resume real training processes; the result must be bit-identical.

Each case runs ``resume_driver/driver.py`` (a `trackcfg.train` run with dropout,
shuffling, augmentation from every RNG, gradient clipping, an LR schedule and
a checkpoint every iteration) in a subprocess, SIGKILLs it — at the end of an
iteration, or halfway through a checkpoint write via ``TRACKCFG_FAILPOINT`` —
resumes it with ``resume_from='auto'`` (possibly with another ``num_workers``)
and compares with an uninterrupted run: every parameter, buffer and optimizer
tensor must be ``torch.equal``, and every iteration's loss identical.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from trackcfg.runner.checkpoint import load_checkpoint_file

REPO_ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "resume_driver" / "driver.py"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Attempt:
    """One process of a case: its num_workers and how it dies (None: runs to the end)."""

    workers: int
    kill_at_iter: int | None = None
    failpoint: int | None = None


def run_driver(runner: str, work: Path, attempt: Attempt, *, resume: bool) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("TRACKCFG_FAILPOINT", None)
    if attempt.failpoint is not None:
        env["TRACKCFG_FAILPOINT"] = f"checkpoint-write:{attempt.failpoint}"
    cmd = [
        sys.executable,
        str(DRIVER),
        "--runner",
        runner,
        "--work-dir",
        str(work / "work"),
        "--workers",
        str(attempt.workers),
        "--out",
        str(work / "final.pt"),
        "--losses",
        str(work / "losses.jsonl"),
    ]
    if attempt.kill_at_iter is not None:
        cmd += ["--kill-at-iter", str(attempt.kill_at_iter)]
    if resume:
        cmd += ["--resume", "auto"]
    # Output goes to a file, not a pipe: DataLoader workers orphaned by the SIGKILL keep
    # inherited pipes open until their watchdog notices, which would stall the test.
    log = work / "driver.log"
    with open(log, "a") as out:
        proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, stdout=out, stderr=out, timeout=120)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"driver failed ({proc.returncode}):\n{log.read_text()}")
    return proc.returncode


def read_losses(path: Path) -> dict[int, list[str]]:
    losses: dict[int, list[str]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        losses.setdefault(record["iter"], []).append(record["loss"])
    return losses


def assert_same_tensors(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}.{i}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One uninterrupted run per runner type (num_workers=0)."""
    out = {}
    for runner in ("epoch", "iter"):
        work = tmp_path_factory.mktemp(f"reference-{runner}")
        assert run_driver(runner, work, Attempt(workers=0), resume=False) == 0
        out[runner] = work
    return out


CASES = {
    # EpochBasedRunner: 3 epochs x 5 batches, workflow train 1 / val 1.
    "epoch-mid-epoch-twice": ("epoch", [Attempt(0, kill_at_iter=7), Attempt(0, kill_at_iter=11)]),
    "epoch-at-epoch-boundary-2-workers": ("epoch", [Attempt(2, kill_at_iter=9)]),
    "epoch-during-checkpoint-write": ("epoch", [Attempt(0, failpoint=6)]),
    "epoch-resume-with-other-num-workers": ("epoch", [Attempt(0, kill_at_iter=3)], 2),
    # IterBasedRunner: 14 iterations, workflow train 4 / val 1, 5 batches per loader epoch.
    "iter-mid-loader-epoch": ("iter", [Attempt(0, kill_at_iter=5)]),
    "iter-during-checkpoint-write-2-workers": ("iter", [Attempt(2, failpoint=10)]),
    "iter-at-loader-epoch-boundary-other-workers": ("iter", [Attempt(0, kill_at_iter=9)], 2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_killed_and_resumed_run_is_bit_identical(
    case: str, reference: dict[str, Path], tmp_path: Path
) -> None:
    runner, attempts, *rest = CASES[case]
    final_workers = rest[0] if rest else attempts[0].workers
    for i, attempt in enumerate(attempts):
        assert run_driver(runner, tmp_path, attempt, resume=i > 0) == -signal.SIGKILL
        if attempt.failpoint is not None:
            # Killed mid-write: a torn temp file is left, latest.pth still loads.
            assert list((tmp_path / "work").glob(".*.tmp-*"))
        load_checkpoint_file(tmp_path / "work" / "latest.pth")
    assert run_driver(runner, tmp_path, Attempt(final_workers), resume=True) == 0

    expected = torch.load(reference[runner] / "final.pt", weights_only=True)
    actual = torch.load(tmp_path / "final.pt", weights_only=True)
    assert_same_tensors(expected, actual, "final")

    expected_losses = read_losses(reference[runner] / "losses.jsonl")
    actual_losses = read_losses(tmp_path / "losses.jsonl")
    assert actual_losses.keys() == expected_losses.keys()
    for iteration, values in actual_losses.items():
        # Iterations re-run after a resume must repeat the same loss bit for bit.
        assert set(values) == set(expected_losses[iteration]), f"iteration {iteration}"
    assert any(len(v) > 1 for v in actual_losses.values())  # something was re-run
