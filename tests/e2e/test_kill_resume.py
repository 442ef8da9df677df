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
import socket
import subprocess
import sys
import time
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_driver(
    runner: str, work: Path, attempt: Attempt, *, resume: bool, ranks: int = 1
) -> list[subprocess.Popen[bytes]]:
    """Start the driver: one process, or one per rank launched like torchrun (gloo)."""
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
    port = free_port()
    procs = []
    for rank in range(ranks):
        rank_env = dict(env)
        if ranks > 1:
            rank_env.update(
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE=str(ranks),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
            )
        # Output goes to a file, not a pipe: DataLoader workers orphaned by the SIGKILL
        # keep inherited pipes open until their watchdog notices, stalling the test.
        with open(work / f"driver{rank}.log", "a") as out:
            procs.append(subprocess.Popen(cmd, env=rank_env, cwd=REPO_ROOT, stdout=out, stderr=out))
    return procs


def finish(procs: list[subprocess.Popen[bytes]], work: Path) -> list[int]:
    codes = [proc.wait(timeout=180) for proc in procs]
    for rank, code in enumerate(codes):
        if code not in (0, -signal.SIGKILL):
            log = (work / f"driver{rank}.log").read_text()
            raise AssertionError(f"driver rank {rank} failed ({code}):\n{log}")
    return codes


def run_driver(runner: str, work: Path, attempt: Attempt, *, resume: bool, ranks: int = 1) -> int:
    """Run the driver to its end (or its death); the return code every rank had."""
    codes = set(finish(start_driver(runner, work, attempt, resume=resume, ranks=ranks), work))
    assert len(codes) == 1, f"ranks ended differently: {codes}"
    return codes.pop()


def read_losses(path: Path) -> dict[int, list[str]]:
    losses: dict[int, list[str]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        losses.setdefault(record["iter"], []).append(record["loss"])
    return losses


_TIMING_KEYS = frozenset({"time", "data_time", "eta", "memory"})


def read_json_logs(work: Path) -> dict[tuple[str, int, int], list[dict[str, object]]]:
    """TextLoggerHook records of all processes in ``work`` by (mode, epoch, iter), sans timing."""
    records: dict[tuple[str, int, int], list[dict[str, object]]] = {}
    for log in sorted(work.glob("*.log.json")):
        lines = log.read_text().splitlines()
        for number, line in enumerate(lines):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines) - 1:
                    continue  # the last line of a killed process may be torn
                raise
            if "mode" not in record:
                continue  # the meta line each process writes first
            key = (record["mode"], record["epoch"], record["iter"])
            records.setdefault(key, []).append(
                {k: v for k, v in record.items() if k not in _TIMING_KEYS}
            )
    return records


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
    """Uninterrupted runs (num_workers=0), started together: one per runner, one with 2 ranks."""
    works = {
        name: tmp_path_factory.mktemp(f"reference-{name}") for name in ("epoch", "iter", "dist")
    }
    started = {
        "epoch": start_driver("epoch", works["epoch"], Attempt(0), resume=False),
        "iter": start_driver("iter", works["iter"], Attempt(0), resume=False),
    }
    for name, procs in started.items():
        assert finish(procs, works[name]) == [0]
    dist = start_driver("epoch", works["dist"], Attempt(0), resume=False, ranks=2)
    assert finish(dist, works["dist"]) == [0, 0]
    return works


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
    assert not list((tmp_path / "work").glob(".*.tmp-*"))  # 'auto' cleared torn temp files

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

    # What TextLoggerHook logged (loss, lr, grad_norm, val averages) is the same too.
    expected_logs = read_json_logs(reference[runner] / "work")
    actual_logs = read_json_logs(tmp_path / "work")
    assert actual_logs.keys() == expected_logs.keys()
    for key, variants in actual_logs.items():
        assert all(v == expected_logs[key][0] for v in variants), f"log record {key}"


def test_killed_and_resumed_distributed_run_is_bit_identical_per_rank(
    reference: dict[str, Path], tmp_path: Path
) -> None:
    # 2 ranks (gloo), each with its own seed (diff_rank_seed): rank 0 writes the
    # checkpoints holding every rank's RNG state; each rank resumes its own.
    assert run_driver("epoch", tmp_path, Attempt(0, kill_at_iter=4), resume=False, ranks=2) == (
        -signal.SIGKILL
    )
    assert run_driver("epoch", tmp_path, Attempt(0), resume=True, ranks=2) == 0
    for rank in range(2):
        suffix = f".rank{rank}"
        expected = torch.load(reference["dist"] / f"final.pt{suffix}", weights_only=True)
        actual = torch.load(tmp_path / f"final.pt{suffix}", weights_only=True)
        assert_same_tensors(expected, actual, f"rank {rank}")
        expected_losses = read_losses(reference["dist"] / f"losses.jsonl{suffix}")
        actual_losses = read_losses(tmp_path / f"losses.jsonl{suffix}")
        assert actual_losses.keys() == expected_losses.keys()
        for iteration, values in actual_losses.items():
            assert set(values) == set(expected_losses[iteration]), f"rank {rank} iter {iteration}"


def test_sigkill_at_an_arbitrary_moment_resumes_bit_identically(
    reference: dict[str, Path], tmp_path: Path
) -> None:
    # Not at a hook: whatever the process is doing once 6 iterations are logged
    # (forward, backward, copying or writing a checkpoint, moving latest.pth).
    (proc,) = start_driver("epoch", tmp_path, Attempt(0), resume=False)
    losses = tmp_path / "losses.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if losses.exists() and losses.read_text().count("\n") >= 6:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert finish([proc], tmp_path) == [-signal.SIGKILL]
    assert run_driver("epoch", tmp_path, Attempt(0), resume=True) == 0
    expected = torch.load(reference["epoch"] / "final.pt", weights_only=True)
    actual = torch.load(tmp_path / "final.pt", weights_only=True)
    assert_same_tensors(expected, actual, "final")
    expected_losses = read_losses(reference["epoch"] / "losses.jsonl")
    for iteration, values in read_losses(losses).items():
        assert set(values) == set(expected_losses[iteration]), f"iteration {iteration}"
