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
2. The per-iteration cost of the agreement: the hook's ``all_reduce(MAX)`` of one
   int32 (with ``fill_`` and ``item``), between 2 gloo ranks on 127.0.0.1, against
   one training iteration of the main job (batch 32, one process, measured here).

Run: ``python tests/benchmarks/bench_preemption.py [--repeat 3] [--skip-large]``.
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


def collective_cost(iterations: int, root: Path) -> float:
    """Median seconds of the hook's agreement (fill_, all_reduce MAX, item) between 2 ranks."""
    import torch.multiprocessing as mp

    out = root / "collective"
    mp.start_processes(
        _agree_rank, args=(str(root / "init"), str(out), iterations), nprocs=2, start_method="fork"
    )
    return max(float((out.parent / f"{out.name}.{r}").read_text()) for r in range(2))


def _agree_rank(rank: int, init_file: str, out: str, iterations: int) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        buffer = torch.zeros(1, dtype=torch.int32)
        times = []
        for _ in range(200):  # warm-up
            buffer.fill_(0)
            dist.all_reduce(buffer, op=dist.ReduceOp.MAX)
        for _ in range(iterations):
            start = time.perf_counter()
            buffer.fill_(0)
            dist.all_reduce(buffer, op=dist.ReduceOp.MAX)
            int(buffer.item())
            times.append(time.perf_counter() - start)
        Path(f"{out}.{rank}").write_text(str(statistics.median(times)))
    finally:
        dist.destroy_process_group()


def main_job_iteration(iterations: int = 60) -> float:
    """Median seconds of one training iteration of the main job's model (batch 32)."""
    import torch

    import trackcfg.zoo  # noqa: F401  (registers the models)
    from trackcfg.registry import MODELS

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MODELS.build(
        {"type": "DigitsCNN", "in_channels": 1, "channels": (16, 32), "num_classes": 10}
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch = {"img": torch.randn(32, 1, 8, 8), "gt_label": torch.randint(0, 10, (32,))}
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        outputs = model.train_step(batch, optimizer)
        optimizer.zero_grad()
        outputs["loss"].backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[10:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="signal-to-exit runs per job")
    parser.add_argument("--iterations", type=int, default=3000, help="collective calls timed")
    parser.add_argument("--skip-large", action="store_true", help="only the main job")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench-preempt-") as tmp:
        root = Path(tmp)
        repo, env = make_project(root)
        jobs = [("main job", MAIN_JOB)] + ([] if args.skip_large else [("84 MB", LARGE_JOB)])
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
        for status, tag in run_status(env):
            print(f"  run {status:<8} trackcfg.preempted={tag}")
        sizes = sorted((repo / "work_dirs").glob("84*/iter_*.pth"))
        if sizes:
            print(f"  84 MB checkpoint file: {sizes[0].stat().st_size / 1e6:.0f} MB")
        agree = collective_cost(args.iterations, root)
        step = main_job_iteration()
        print(
            f"agreement (2 gloo ranks): {agree * 1e6:.0f} us per iteration; a main-job "
            f"iteration: {step * 1e3:.2f} ms -> {100 * agree / step:.2f} %"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
