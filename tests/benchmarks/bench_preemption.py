"""Benchmark: checkpoint on preemption (a script, not collected by pytest).

1. Signal-to-exit through the CLI: ``trackcfg run`` in a temp git repo with a
   SQLite store gets SIGTERM in the middle of its second epoch; the time until the
   process has exited (checkpoint of the next iteration written, uploaded to the
   store, run ended KILLED with ``trackcfg.preempted``, exit 75). On the main job
   (``configs/digits/cnn_sgd_10e.py``) and on an ~84 MB model (the digits MLP with
   two hidden layers of 4,560: 21.1 M parameters, 84.5 MB of float32 weights; with
   SGD's momentum the checkpoint is ~170 MB). Targets: one iteration plus one
   checkpoint write; under 5 s for the main job; inside a 30 s grace for 84 MB.
   Reported: wall time (what a grace period counts), the trainer's own CPU time
   from the signal to its exit (user + system: what a busy machine does not
   inflate), the time its run's end took to be stored (the checkpoint's upload
   included), the runs' final status and tag, and the machine's load average.
2. The per-iteration cost of the agreement at 2 gloo ranks on 127.0.0.1: the
   median time of a main-job training iteration (batch 32, its gradients
   all-reduced as DDP does) without the agreement, with the hook's (a blocking
   ``all_reduce(MAX)`` of one int32 at each boundary), and, for contrast, with one
   started at a boundary and read at the next (hidden behind the next iteration,
   but one iteration later to stop; on 2 shared CPU cores it saved nothing, so the
   hook blocks); interleaved rounds.

Run: ``python tests/benchmarks/bench_preemption.py [--repeat 3] [--skip-large]
[--collective-only]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MAIN_JOB = "configs/digits/cnn_sgd_10e.py"
LARGE_JOB = "configs/digits/large_mlp.py"
LARGE_CONFIG = """_base_ = './mlp_sgd_20e.py'
# 64*4560 + 4560*4560 + 4560*10 weights + biases: 21.1 M float32 parameters, 84.5 MB.
model = dict(hidden_dims=(4560, 4560))
runner = dict(max_epochs=3)
"""


def make_project(root: Path) -> tuple[Path, dict[str, str]]:
    """A git repo with ``configs/`` (and the large config), and an env with a SQLite store."""
    repo = root / "project"
    shutil.copytree(REPO_ROOT / "configs", repo / "configs")
    (repo / LARGE_JOB).write_text(LARGE_CONFIG)
    git = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b.invalid"}
    git |= {"GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b.invalid"}
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "p"]):
        subprocess.run(["git", *args], cwd=repo, env={**os.environ, **git}, check=True)
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI="sqlite:///" + (root / "mlflow.db").as_posix(),
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO_ROOT),
    )
    return repo, env


def signal_to_exit(repo: Path, env: dict[str, str], config: str, work: str) -> dict[str, object]:
    """Run ``config``, SIGTERM it once its second epoch has started; time until it exited.

    Also the trainer's own CPU time from the signal to its exit (polled from
    /proc, the last sample at most 10 ms before the exit), and how long its run's
    end took to be stored (``--debug`` logs it).
    """
    log = repo / f"{work}.stderr"
    argv = [sys.executable, "-m", "trackcfg", "--debug", "run", config]
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [*argv, "--work-dir", f"work_dirs/{work}"],
            cwd=repo,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        while "Epoch [2]" not in log.read_text():
            if proc.poll() is not None:
                raise RuntimeError(f"{config} ended early:\n{log.read_text()[-3000:]}")
            time.sleep(0.01)
        cpu_at_signal = _cpu(proc.pid)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        cpu_last = cpu_at_signal
        while proc.poll() is None:
            cpu_last = _cpu(proc.pid) or cpu_last
            time.sleep(0.01)
        wall = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    said = [line for line in text.splitlines() if line.startswith("preempted by")]
    end = [line for line in text.splitlines() if "stored the run's end" in line]
    return {
        "wall_s": wall,
        "cpu_s": cpu_last - cpu_at_signal,
        "end_s": float(end[-1].split(" s after")[0].split()[-1]) if end else float("nan"),
        "exit": proc.returncode,
        "said": said[-1] if said else text[-500:],
    }


def _cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` itself (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_status(env: dict[str, str]) -> list[tuple[str, str]]:
    """(status, trackcfg.preempted) of every run in the store, oldest first."""
    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return [
        (r.info.status, r.data.tags.get("trackcfg.preempted", "-"))
        for r in sorted(runs, key=lambda r: r.info.start_time)
    ]


def collective_cost(iterations: int, root: Path) -> tuple[float, float, float]:
    """Median seconds per training iteration at 2 gloo ranks, with and without the agreement.

    Each iteration is a main-job training step whose gradients are all-reduced (as
    DDP does: the ranks synchronise there anyway). Returns (without the agreement;
    with one started at a boundary and read at the next; with the hook's blocking
    one), in interleaved rounds of 50 iterations.
    """
    import torch.multiprocessing as mp

    out = root / "collective"
    mp.start_processes(
        _agree_rank, args=(str(root / "init"), str(out), iterations), nprocs=2, start_method="fork"
    )
    results = [(out.parent / f"{out.name}.{r}").read_text().split() for r in range(2)]
    plain, background, blocking = (max(float(r[i]) for r in results) for i in range(3))
    return plain, background, blocking


def _agree_rank(rank: int, init_file: str, out: str, iterations: int) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        step = _main_job_step(synchronise=True)
        buffer = torch.zeros(1, dtype=torch.int32)
        work: dist.Work | None = None

        def background() -> None:  # the alternative
            nonlocal work
            if work is not None:
                work.wait()
                int(buffer.item())
            buffer.fill_(0)
            work = dist.all_reduce(buffer, op=dist.ReduceOp.MAX, async_op=True)

        def blocking() -> None:  # PreemptionHook.after_train_iter
            buffer.fill_(0)
            dist.all_reduce(buffer, op=dist.ReduceOp.MAX)
            int(buffer.item())

        times: dict[str, list[float]] = {"plain": [], "background": [], "blocking": []}
        agreements = {"plain": None, "background": background, "blocking": blocking}
        for _ in range(max(1, iterations // 50)):
            for name, agree in agreements.items():
                for i in range(50):
                    start = time.perf_counter()
                    step()
                    if agree is not None:
                        agree()
                    if i >= 5:
                        times[name].append(time.perf_counter() - start)
                if work is not None:
                    work.wait()
                    work = None
        medians = [statistics.median(times[n]) for n in ("plain", "background", "blocking")]
        Path(f"{out}.{rank}").write_text(" ".join(map(str, medians)))
    finally:
        dist.destroy_process_group()


def _main_job_step(synchronise: bool = False) -> Callable[[], None]:
    """One training step of the main job's model (batch 32), as a function.

    With ``synchronise``, the gradients are all-reduced before the update (as DDP does).
    """
    import torch

    import trackcfg.zoo  # noqa: F401  (registers the models)
    from trackcfg.registry import MODELS

    torch.manual_seed(0)
    model = MODELS.build(
        {"type": "DigitsCNN", "in_channels": 1, "channels": (16, 32), "num_classes": 10}
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch = {"img": torch.randn(32, 1, 8, 8), "gt_label": torch.randint(0, 10, (32,))}

    def step() -> None:
        outputs = model.train_step(batch, optimizer)
        optimizer.zero_grad()
        outputs["loss"].backward()  # type: ignore[union-attr]
        if synchronise:
            import torch.distributed as dist

            grads = [p.grad for p in model.parameters() if p.grad is not None]
            flat = torch.cat([g.flatten() for g in grads])
            dist.all_reduce(flat)
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="signal-to-exit runs per job")
    parser.add_argument("--iterations", type=int, default=3000, help="collective calls timed")
    parser.add_argument("--skip-large", action="store_true", help="only the main job")
    parser.add_argument("--collective-only", action="store_true", help="only part 2")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench-preempt-") as tmp:
        root = Path(tmp)
        repo, env = make_project(root)
        jobs = [("main job", MAIN_JOB)] + ([] if args.skip_large else [("84 MB", LARGE_JOB)])
        if args.collective_only:
            jobs = []
        for label, config in jobs:
            results = [
                signal_to_exit(repo, env, config, f"{label.split()[0]}{i}")
                for i in range(args.repeat)
            ]
            walls = [float(str(r["wall_s"])) for r in results]
            cpus = [float(str(r["cpu_s"])) for r in results]
            ends = [float(str(r["end_s"])) for r in results]
            print(
                f"{label}: signal-to-exit median {statistics.median(walls):.2f} s wall "
                f"(runs: {', '.join(f'{w:.2f}' for w in walls)}); trainer CPU from the "
                f"signal to the exit {statistics.median(cpus):.2f} s; run's end stored in "
                f"{statistics.median(ends):.2f} s; exit codes "
                f"{sorted({r['exit'] for r in results})}"
            )
            print(f"  {results[-1]['said']}")
        for status, tag in run_status(env) if jobs else []:
            print(f"  run {status:<8} trackcfg.preempted={tag}")
        sizes = sorted((repo / "work_dirs").glob("84*/iter_*.pth"))
        if sizes:
            print(f"  84 MB checkpoint file: {sizes[0].stat().st_size / 1e6:.0f} MB")
        plain, background, blocking = collective_cost(args.iterations, root)
        print(
            f"iteration at 2 gloo ranks (main-job step + gradient all_reduce): "
            f"{plain * 1e3:.2f} ms; with the hook's agreement (blocking) "
            f"{blocking * 1e3:.2f} ms ({100 * (blocking / plain - 1):+.1f} %); with one "
            f"started at a boundary and read at the next {background * 1e3:.2f} ms "
            f"({100 * (background / plain - 1):+.1f} %)"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
