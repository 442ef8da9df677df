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
import shutil
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

# One xdist worker runs the module: its module fixture runs every case once, not per worker.
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
    runner: str,
    work: Path,
    attempt: Attempt,
    *,
    resume: bool | Path,
    ranks: int = 1,
    plain_ddp: bool = False,
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
    if isinstance(resume, Path):  # another world size's checkpoint, forced
        cmd += ["--resume", str(resume), "--allow-world-size-change"]
    elif resume:
        cmd += ["--resume", "auto"]
    if plain_ddp:
        cmd += ["--plain-ddp"]
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


def run_driver(
    runner: str,
    work: Path,
    attempt: Attempt,
    *,
    resume: bool | Path,
    ranks: int = 1,
    plain_ddp: bool = False,
) -> int:
    """Run the driver to its end (or its death); the return code every rank had."""
    procs = start_driver(runner, work, attempt, resume=resume, ranks=ranks, plain_ddp=plain_ddp)
    codes = set(finish(procs, work))
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
    #: ``ddp=dict(exact_reduction=False)``: DDP's own, layout-dependent, all-reduce.
    plain_ddp: bool = False


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
    # 3 ranks (2 batches per epoch): killed in epoch 2, the resumed job's first iteration
    # runs with DDP's initial bucket layout where its twin had the rebuilt one; the exact
    # reduction (the default) sums every gradient in rank order all the same.
    "epoch-3-ranks": Case("epoch", (Attempt(0, kill_at_iter=2),), ranks=3),
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
# The 3-rank case with DDP's own all-reduce: NOT bit-identical (what exact reduction fixes).
PLAIN_DDP_3_RANKS = Case("epoch", (Attempt(0, kill_at_iter=2),), ranks=3, plain_ddp=True)
REFERENCES = {
    "epoch": Case("epoch", ()),
    "iter": Case("iter", ()),
    "hooks": Case("hooks", ()),
    "2-ranks": Case("epoch", (), ranks=2),
    "3-ranks": Case("epoch", (), ranks=3),
    "3-ranks-plain-ddp": Case("epoch", (), ranks=3, plain_ddp=True),
}
#: The 2-rank reference's checkpoint resumed, forced, by 3 ranks (twice: the same bits).
FORCED_FROM = "iter_7.pth"  # epoch 3 (0-based 2) after 1 of its 3 batches per rank
FORCED_RESUMES = ("forced-2-to-3-ranks-a", "forced-2-to-3-ranks-b")


def reference_name(case: Case) -> str:
    if case.ranks == 1:
        return f"reference-{case.runner}"
    return f"reference-{case.ranks}-ranks" + ("-plain-ddp" if case.plain_ddp else "")


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
        code = run_driver(
            case.runner, work, Attempt(0), resume=False, ranks=case.ranks, plain_ddp=case.plain_ddp
        )
        assert code == 0
        return work
    else:
        for i, attempt in enumerate(case.attempts):
            code = run_driver(
                case.runner,
                work,
                attempt,
                resume=i > 0,
                ranks=case.ranks,
                plain_ddp=case.plain_ddp,
            )
            assert code == -signal.SIGKILL
            if attempt.failpoint is not None:
                # Killed mid-write: a torn temp file is left, latest.pth still loads.
                assert list((work / "work").glob(".*.tmp-*"))
            load_checkpoint_file(work / "work" / "latest.pth")
    case = case or Case("epoch", ())
    code = run_driver(
        case.runner,
        work,
        Attempt(case.final_workers),
        resume=True,
        ranks=case.ranks,
        plain_ddp=case.plain_ddp,
    )
    assert code == 0
    assert not list((work / "work").glob(".*.tmp-*"))  # 'auto' cleared torn temp files
    return work


def force_world_size(source: Future[Path], work: Path) -> Path:
    """Resume the 2-rank reference's `FORCED_FROM` with 3 ranks (a forced world-size change)."""
    checkpoint = work / "from-2-ranks.pth"
    shutil.copy(source.result() / "work" / FORCED_FROM, checkpoint)
    assert run_driver("epoch", work, Attempt(0), resume=checkpoint, ranks=3) == 0
    return work


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Path]]]:
    """Every reference and case, run concurrently (a few at a time: each process spends
    seconds importing torch, so two cores are best kept busy with several)."""
    plays: dict[str, Case | None] = {
        **{f"reference-{k}": v for k, v in REFERENCES.items()},
        **CASES,
        "epoch-3-ranks-plain-ddp": PLAIN_DDP_3_RANKS,
        "epoch-external-sigkill": None,
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            name: pool.submit(play, case, tmp_path_factory.mktemp(name))
            for name, case in plays.items()
        }
        # Submitted last: the reference they wait for has been started by then (FIFO).
        for name in FORCED_RESUMES:
            futures[name] = pool.submit(
                force_world_size, futures["reference-2-ranks"], tmp_path_factory.mktemp(name)
            )
        yield futures


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
    expected, actual = outcomes[reference_name(CASES[case])].result(), outcomes[case].result()
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


def test_without_exact_reduction_a_3_rank_resume_is_not_bit_identical(
    outcomes: dict[str, Future[Path]],
) -> None:
    """``ddp=dict(exact_reduction=False)``: the first iteration after the resume sums the
    gradients in another order than the uninterrupted twin did, and the runs drift apart."""
    expected = outcomes[reference_name(PLAIN_DDP_3_RANKS)].result()
    actual = outcomes["epoch-3-ranks-plain-ddp"].result()
    for rank in range(3):
        suffix = f".rank{rank}"
        before, after = (
            read_losses(expected / f"losses.jsonl{suffix}"),
            read_losses(actual / f"losses.jsonl{suffix}"),
        )
        # Bit-identical up to the kill (iterations 0-2), apart from then on.
        assert all(set(after[i]) == set(before[i]) for i in (0, 1))
        final = torch.load(expected / f"final.pt{suffix}", weights_only=True)["model"]
        resumed = torch.load(actual / f"final.pt{suffix}", weights_only=True)["model"]
        assert not all(torch.equal(final[k], resumed[k]) for k in final), f"rank {rank}"


def test_a_forced_world_size_change_is_reproducible_and_recorded(
    outcomes: dict[str, Future[Path]],
) -> None:
    first, second = (outcomes[name].result() for name in FORCED_RESUMES)
    for rank in range(3):
        assert_same_tensors(
            torch.load(first / f"final.pt.rank{rank}", weights_only=True),
            torch.load(second / f"final.pt.rank{rank}", weights_only=True),
            f"final.rank{rank}",
        )
        assert read_losses(first / f"losses.jsonl.rank{rank}") == read_losses(
            second / f"losses.jsonl.rank{rank}"
        )
    meta = load_checkpoint_file(first / "work" / "latest.pth")["meta"]
    assert isinstance(meta, dict)
    assert meta["world_size_changes"] == [
        {"checkpoint": str(first / "from-2-ranks.pth"), "epoch": 2, "iter": 7, "from": 2, "to": 3}
    ]
    # The run's text log (rank 0's, in the work dir) says so.
    log = "".join(p.read_text() for p in (first / "work").glob("*.log"))
    assert "world size changed from 2 to 3 (forced)" in log
    assert "no longer bit-identical" in log
