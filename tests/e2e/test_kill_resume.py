"""Kill and resume real training processes; the result must be bit-identical.

Each case runs ``resume_driver/driver.py`` (a `trackcfg.train` run with dropout,
shuffling, augmentation from every RNG, gradient clipping, an LR schedule and
a checkpoint every iteration; one case adds gradient accumulation, EMA, a momentum
schedule and evaluation with a best checkpoint) in a subprocess, SIGKILLs it — at the end of an
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
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from trackcfg.runner.checkpoint import load_checkpoint_file

REPO_ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "resume_driver" / "driver.py"

# One xdist worker runs the whole module: its module-scoped fixture (every case and reference) would
# otherwise run again on every worker that gets one of its tests.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("kill_resume")]


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


@dataclass(frozen=True)
class Case:
    """A run killed one or more times, then resumed with ``resume_from='auto'`` to its end."""

    runner: str
    attempts: tuple[Attempt, ...]
    final_workers: int = 0
    ranks: int = 1


CASES = {
    # EpochBasedRunner: 3 epochs x 5 batches, workflow train 1 / val 1.
    "epoch-mid-epoch-twice": Case(
        "epoch", (Attempt(0, kill_at_iter=7), Attempt(0, kill_at_iter=11))
    ),
    "epoch-at-epoch-boundary-2-workers": Case("epoch", (Attempt(2, kill_at_iter=9),), 2),
    "epoch-during-checkpoint-write": Case("epoch", (Attempt(0, failpoint=6),)),
    "epoch-resume-with-other-num-workers": Case("epoch", (Attempt(0, kill_at_iter=3),), 2),
    # IterBasedRunner: 14 iterations, workflow train 4 / val 1, 5 batches per loader epoch.
    "iter-mid-loader-epoch": Case("iter", (Attempt(0, kill_at_iter=5),)),
    "iter-during-checkpoint-write-2-workers": Case("iter", (Attempt(2, failpoint=10),), 2),
    "iter-at-loader-epoch-boundary-other-workers": Case("iter", (Attempt(0, kill_at_iter=9),), 2),
    # 2 ranks (gloo, DDP through train()), each with its own seed (diff_rank_seed): rank 0
    # writes checkpoints holding every rank's RNG state; each rank resumes its own.
    "epoch-2-ranks": Case("epoch", (Attempt(0, kill_at_iter=4),), ranks=2),
    # Accumulation (windows 0-3, 4-7, 8-11, 12-14), EMA, cosine momentum, evaluation with
    # save_best, one checkpoint per iteration (writes 1-5), the best after each epoch.
    # Killed halfway through writing the first best checkpoint (write 6, after the
    # evaluation: the resume evaluates again); then at iteration 6 (the resume point,
    # iter_5 or iter_6, is inside window 4-7: its gradients come from the checkpoint);
    # then at iteration 10 (resumes at or after the end of epoch 2, EMA on throughout).
    "hooks-best-save-window-ema": Case(
        "hooks",
        (Attempt(0, failpoint=6), Attempt(0, kill_at_iter=6), Attempt(0, kill_at_iter=10)),
    ),
}
REFERENCES = {
    "epoch": Case("epoch", ()),
    "iter": Case("iter", ()),
    "hooks": Case("hooks", ()),
    "dist": Case("epoch", (), ranks=2),
}


def kill_at_an_arbitrary_moment(work: Path) -> None:
    """Not at a hook: SIGKILL from outside once 6 iterations are logged (forward, backward,
    copying or writing a checkpoint, moving latest.pth: whatever it is doing then)."""
    (proc,) = start_driver("epoch", work, Attempt(0), resume=False)
    losses = work / "losses.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if losses.exists() and losses.read_text().count("\n") >= 6:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert finish([proc], work) == [-signal.SIGKILL], "the run ended before it could be killed"


def play(case: Case | None, work: Path) -> Path:
    """Run one case's processes in order (``None``: the externally killed run)."""
    if case is None:
        kill_at_an_arbitrary_moment(work)
    elif not case.attempts:  # a reference: uninterrupted
        assert run_driver(case.runner, work, Attempt(0), resume=False, ranks=case.ranks) == 0
        return work
    else:
        for i, attempt in enumerate(case.attempts):
            code = run_driver(case.runner, work, attempt, resume=i > 0, ranks=case.ranks)
            assert code == -signal.SIGKILL
            if attempt.failpoint is not None:
                # Killed mid-write: a torn temp file is left, latest.pth still loads.
                assert list((work / "work").glob(".*.tmp-*"))
            load_checkpoint_file(work / "work" / "latest.pth")
    runner, ranks = ("epoch", 1) if case is None else (case.runner, case.ranks)
    final_workers = 0 if case is None else case.final_workers
    assert run_driver(runner, work, Attempt(final_workers), resume=True, ranks=ranks) == 0
    assert not list((work / "work").glob(".*.tmp-*"))  # 'auto' cleared torn temp files
    return work


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Path]]]:
    """Every reference and case, run concurrently (a few at a time: each process spends
    seconds importing torch, so two cores are best kept busy with several)."""
    plays: dict[str, Case | None] = {
        **{f"reference-{k}": v for k, v in REFERENCES.items()},
        **CASES,
        "epoch-external-sigkill": None,
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        yield {
            name: pool.submit(play, case, tmp_path_factory.mktemp(name))
            for name, case in plays.items()
        }


def assert_same_run(expected: Path, actual: Path, suffix: str = "") -> None:
    """Final tensors bitwise equal; every (re-)run iteration's loss identical; same JSON logs."""
    assert_same_tensors(
        torch.load(expected / f"final.pt{suffix}", weights_only=True),
        torch.load(actual / f"final.pt{suffix}", weights_only=True),
        f"final{suffix}",
    )
    expected_losses = read_losses(expected / f"losses.jsonl{suffix}")
    actual_losses = read_losses(actual / f"losses.jsonl{suffix}")
    assert actual_losses.keys() == expected_losses.keys()
    for iteration, values in actual_losses.items():
        # Iterations re-run after a resume must repeat the same loss bit for bit.
        assert set(values) == set(expected_losses[iteration]), f"iteration {iteration}{suffix}"
    assert any(len(v) > 1 for v in actual_losses.values())  # something was re-run
    if suffix:
        return
    # What TextLoggerHook logged (loss, lr, grad_norm, val averages) is the same too.
    expected_logs = read_json_logs(expected / "work")
    actual_logs = read_json_logs(actual / "work")
    assert actual_logs.keys() == expected_logs.keys()
    for key, variants in actual_logs.items():
        assert all(v == expected_logs[key][0] for v in variants), f"log record {key}"


@pytest.mark.parametrize("case", list(CASES))
def test_killed_and_resumed_run_is_bit_identical(
    case: str, outcomes: dict[str, Future[Path]]
) -> None:
    ranks = CASES[case].ranks
    reference = outcomes["reference-dist" if ranks > 1 else f"reference-{CASES[case].runner}"]
    expected, actual = reference.result(), outcomes[case].result()
    for rank in range(ranks):
        assert_same_run(expected, actual, f".rank{rank}" if ranks > 1 else "")
    if CASES[case].runner == "hooks":
        assert_same_best_checkpoint(expected / "work", actual / "work")


def assert_same_best_checkpoint(expected: Path, actual: Path) -> None:
    """The same best checkpoint chosen, with the same weights; keep-last-K left it alone."""
    names = sorted(p.name for p in expected.glob("best_*.pth"))
    assert len(names) == 1
    assert sorted(p.name for p in actual.glob("best_*.pth")) == names
    want = load_checkpoint_file(expected / names[0])
    got = load_checkpoint_file(actual / names[0])
    assert_same_tensors(want["state_dict"], got["state_dict"], "best.state_dict")
    for key in ("EvalHook#0", "EMAHook#0", "GradientCumulativeOptimizerHook#0"):
        assert_same_tensors(want["hook_states"][key], got["hook_states"][key], f"best.{key}")


def test_sigkill_at_an_arbitrary_moment_resumes_bit_identically(
    outcomes: dict[str, Future[Path]],
) -> None:
    expected = outcomes["reference-epoch"].result()
    actual = outcomes["epoch-external-sigkill"].result()
    assert_same_run(expected, actual)
