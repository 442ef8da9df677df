"""DDP benchmarks at 4 ranks (a script, not collected by pytest). Prints ratios.

1. Exact reduction cost: per-iteration wall time (forward, backward with the
   gradient reduction, SGD step) of `StepDistributedDataParallel` with
   ``exact_reduction=True`` (the default: each bucket all-gathered and added in
   rank order) vs ``exact_reduction=False`` (DDP's own all-reduce), 4 gloo ranks
   on 127.0.0.1, one thread each (``OMP_NUM_THREADS=1``), on an MLP whose
   gradients fill several buckets (``bucket_cap_mb``; the count is printed).
   Both wrappers live in every rank at once; rounds alternate A/B and B/A; an
   iteration's time is the slowest rank's (the step ends when every rank has
   its gradients); printed: the median over rounds of the per-round ratio.
   Target: exact / plain <= 1.03. A third arm, torch's own ``allreduce_hook`` (DDP's
   all-reduce, but through a Python comm hook), shows what any comm hook costs.
2. Checkpoint stall per rank: time each rank spends inside
   ``runner.save_checkpoint`` (every rank: the RNG gather; rank 0 also copies
   model and optimizer state; the write runs in the background) for the same
   model and SGD-with-momentum state, median over repeats.

Wall time on a shared machine is noisy: the script prints the load average
before and after; compare ratios, not absolute times, and prefer a quiet machine.

Run: ``OMP_NUM_THREADS=1 python tests/benchmarks/bench_ddp.py [--quick] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from trackcfg.runner.epoch_based_runner import EpochBasedRunner
from trackcfg.runner.parallel import StepDistributedDataParallel

WORLD = 4


class Deep(nn.Module):
    """An MLP of ``depth`` square layers (``width`` x ``width`` weights) with train_step."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(width, 10))

    def train_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], optimizer: object = None
    ) -> dict[str, object]:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        return {"loss": loss, "log_vars": {"loss": float(loss)}, "num_samples": len(x)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def slowest(seconds: float) -> float:
    """The largest of every rank's ``seconds``."""
    value = torch.tensor([seconds], dtype=torch.float64)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return float(value)


def step(
    model: StepDistributedDataParallel,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    optimizer.zero_grad()
    outputs = model.train_step(batch)
    assert isinstance(outputs, dict)
    outputs["loss"].backward()
    optimizer.step()


def timed(
    model: StepDistributedDataParallel,
    optimizer: torch.optim.Optimizer,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
) -> float:
    """Seconds per iteration of the slowest rank over ``batches``."""
    dist.barrier()
    start = time.perf_counter()
    for batch in batches:
        step(model, optimizer, batch)
    return slowest((time.perf_counter() - start) / len(batches))


def bench_rank(rank: int, port: int, args: argparse.Namespace, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        generator = torch.Generator().manual_seed(rank)
        batches = [
            (
                torch.randn(args.batch, args.width, generator=generator),
                torch.randint(0, 10, (args.batch,), generator=generator),
            )
            for _ in range(args.iters)
        ]
        wrapped: dict[str, tuple[StepDistributedDataParallel, torch.optim.Optimizer]] = {}
        for name, exact in (("plain", False), ("exact", True), ("hook", False)):
            torch.manual_seed(0)
            model = StepDistributedDataParallel(
                Deep(args.width, args.depth), exact_reduction=exact, bucket_cap_mb=args.bucket_mb
            )
            assert model.exact_reduction is exact
            if name == "hook":  # the floor: any comm hook written in Python
                model.register_comm_hook(None, allreduce_hook)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            for batch in batches[:3]:  # past DDP's bucket rebuild
                step(model, optimizer, batch)
            wrapped[name] = (model, optimizer)
        buckets = len(
            wrapped["plain"][0]._get_ddp_logging_data().get("rebuilt_bucket_sizes", "").split(",")
        )  # type: ignore[no-untyped-call]
        ratios: list[float] = []
        hook_ratios: list[float] = []
        times: dict[str, list[float]] = {"plain": [], "exact": [], "hook": []}
        for round_ in range(args.rounds):
            order = ("plain", "exact", "hook") if round_ % 2 == 0 else ("hook", "exact", "plain")
            got = {name: timed(*wrapped[name], batches) for name in order}
            for name, value in got.items():
                times[name].append(value)
            ratios.append(got["exact"] / got["plain"])
            hook_ratios.append(got["hook"] / got["plain"])

        # 2. checkpoint stall, with the plain wrapper's model and momentum state.
        model, optimizer = wrapped["plain"]
        stalls: list[float] = []
        with tempfile.TemporaryDirectory() as tmp:
            runner = EpochBasedRunner(
                model,
                optimizer=optimizer,
                work_dir=tmp,
                logger=logging.getLogger("bench"),
                max_epochs=1,
            )
            for _ in range(args.saves):
                dist.barrier()
                start = time.perf_counter()
                runner.save_checkpoint(Path(tmp) / f"rank{rank}", create_symlink=False)
                stalls.append(time.perf_counter() - start)
                runner.wait_for_checkpoints()  # not timed: the next save must not queue
        stall = statistics.median(stalls)
        per_rank = [None] * WORLD
        dist.all_gather_object(per_rank, stall)
        if rank == 0:
            params = sum(p.numel() for p in model.parameters())
            Path(out).write_text(
                "\n".join(
                    [
                        f"model: {args.depth} x Linear({args.width}, {args.width}) + head, "
                        f"{params / 1e6:.2f} M parameters ({params * 4 / 2**20:.1f} MiB of "
                        f"gradients), bucket_cap_mb={args.bucket_mb}: {buckets} buckets, "
                        f"batch {args.batch}, {args.iters} iterations x {args.rounds} rounds",
                        f"1. per iteration (slowest rank, median): plain DDP "
                        f"{statistics.median(times['plain']) * 1e3:.2f} ms, exact "
                        f"{statistics.median(times['exact']) * 1e3:.2f} ms; exact / plain: "
                        f"median {statistics.median(ratios):.3f} (rounds: "
                        f"{min(ratios):.3f} .. {max(ratios):.3f}; target <= 1.03)",
                        f"   floor: torch's Python allreduce_hook (same all-reduce, through a "
                        f"comm hook) / plain: median {statistics.median(hook_ratios):.3f} "
                        f"(rounds: {min(hook_ratios):.3f} .. {max(hook_ratios):.3f})",
                        "2. checkpoint stall in save_checkpoint (median of "
                        f"{args.saves}), per rank: "
                        + ", ".join(f"rank {r}: {s * 1e3:.1f} ms" for r, s in enumerate(per_rank)),
                    ]
                )
            )
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and iterations")
    parser.add_argument("--rounds", type=int, default=None, help="A/B rounds (default 20; 4 quick)")
    parser.add_argument(
        "--iters", type=int, default=None, help="iterations per timing (default 30)"
    )
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--bucket-mb", type=float, default=2.0)
    parser.add_argument("--saves", type=int, default=5)
    args = parser.parse_args()
    args.rounds = args.rounds or (4 if args.quick else 20)
    args.iters = args.iters or (10 if args.quick else 30)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"load average before: {os.getloadavg()}, {os.cpu_count()} CPUs, {WORLD} gloo ranks")
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "report")
        mp.spawn(bench_rank, args=(free_port(), args, out), nprocs=WORLD, join=True)
        print(Path(out).read_text())
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
