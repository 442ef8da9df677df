"""Kill/resume driver: trains a tiny model through `trackcfg.train` (run as a subprocess).

Everything that makes exact resume hard is here on purpose: dropout, shuffled
data, augmentation drawing from Python's, NumPy's and torch's RNGs inside the
dataset, DataLoader workers, gradient clipping, an LR schedule, momentum, and a
checkpoint every iteration. ``--runner hooks`` adds gradient accumulation, EMA,
a momentum schedule and evaluation with a best checkpoint to the epoch run.

Usage::

    python driver.py --runner epoch|iter|hooks --work-dir DIR --workers N --out FINAL.pt
                     --losses LOSSES.jsonl [--kill-at-iter K] [--resume auto] [--plain-ddp]

``--kill-at-iter K`` SIGKILLs the process at the end of training iteration K
(0-based, after its hooks ran, before its checkpoint is committed).
``TRACKCFG_FAILPOINT=checkpoint-write:N`` kills it halfway through a checkpoint write.
Per-iteration losses are appended to LOSSES as JSON lines ``{"iter", "loss"}``
(``loss`` as ``float.hex``, exact). Launched like ``torchrun`` (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` set), each rank joins a gloo
process group (`trackcfg.train` wraps the model in DDP) and suffixes LOSSES and
FINAL.pt with ``.rank<r>``. ``--plain-ddp`` sets ``ddp=dict(exact_reduction=False)``
(DDP's own all-reduce: resume is then bit-identical with 2 ranks, not with 3).
``--resume PATH --allow-world-size-change`` resumes a checkpoint of another world size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

import trackcfg
from trackcfg.registry import DATASETS, MODELS
from trackcfg.runner.hooks.hook import Hook

N_SAMPLES = 40
BATCH = 8  # 5 batches per epoch


@DATASETS.register_module()
class ResumeDriverData(Dataset[dict[str, torch.Tensor]]):
    """Fixed synthetic samples plus random augmentation from every RNG."""

    def __init__(self, n: int = N_SAMPLES) -> None:
        generator = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, 6, generator=generator)
        self.y = (self.x.sum(dim=1) > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def evaluate(self, results: list[int], logger: object = None) -> dict[str, float]:
        """Accuracy of predicted classes (for EvalHook)."""
        correct = sum(int(r == int(y)) for r, y in zip(results, self.y, strict=True))
        return {"accuracy": correct / len(self.y)}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x = self.x[index].clone()
        x = x * (1.0 + 0.2 * random.random())  # Python RNG
        x = x + torch.from_numpy(np.random.normal(0, 0.05, size=6)).float()  # NumPy RNG
        x = x + 0.05 * torch.randn(6)  # torch RNG
        return {"x": x, "y": self.y[index]}


@MODELS.register_module()
class ResumeDriverNet(nn.Module):
    """MLP with dropout and the mmcv train_step/val_step protocol."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 2), nn.BatchNorm1d(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train_step(
        self, batch: dict[str, torch.Tensor], optimizer: object = None
    ) -> dict[str, object]:
        loss = nn.functional.cross_entropy(self(batch["x"]), batch["y"])
        return {"loss": loss, "log_vars": {"loss": loss.item()}, "num_samples": len(batch["x"])}

    def val_step(
        self, batch: dict[str, torch.Tensor], optimizer: object = None
    ) -> dict[str, object]:
        return self.train_step(batch, optimizer)

    def test_step(self, batch: dict[str, torch.Tensor]) -> list[int]:
        return [int(c) for c in self(batch["x"]).argmax(dim=1)]


class LossRecorder(Hook):
    """Appends each iteration's loss, exactly, to a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def after_train_iter(self, runner: trackcfg.BaseRunner) -> None:
        loss = runner.outputs["loss"]
        assert isinstance(loss, torch.Tensor)
        with open(self.path, "a") as f:
            f.write(json.dumps({"iter": runner.iter, "loss": float(loss.item()).hex()}) + "\n")


class Killer(Hook):
    """SIGKILLs the process at the end of one training iteration."""

    def __init__(self, at_iter: int) -> None:
        self.at_iter = at_iter

    def after_train_iter(self, runner: trackcfg.BaseRunner) -> None:
        if runner.iter == self.at_iter:
            os.kill(os.getpid(), signal.SIGKILL)


def config(
    runner: str, work_dir: str, workers: int, distributed: bool, plain_ddp: bool = False
) -> dict[str, object]:
    extra: dict[str, object] = {}
    if plain_ddp:
        extra["ddp"] = {"exact_reduction": False}
    if runner == "hooks":
        # The epoch run with issue 15's hooks: gradient accumulation (windows of 4 over
        # 15 iterations: the last one is 3 long), EMA (evaluated: it swaps in after each
        # epoch), per-iteration cosine momentum, evaluation keeping the best checkpoint.
        runner = "epoch"
        extra = {
            "optimizer_config": {
                "type": "GradientCumulativeOptimizerHook",
                "cumulative_iters": 4,
                "grad_clip": {"max_norm": 0.5},
            },
            "momentum_config": {
                "policy": "CosineAnnealing",
                "min_momentum_ratio": 0.5,
                "by_epoch": False,
            },
            "custom_hooks": [{"type": "EMAHook", "momentum": 0.2, "warm_up": 2}],
            "evaluation": {"interval": 1, "save_best": "auto"},
            "workflow": [("train", 1)],
        }
    if runner == "epoch":
        runner_cfg: dict[str, object] = {"type": "EpochBasedRunner", "max_epochs": 3}
        lr_config: dict[str, object] = {"policy": "step", "step": [1, 2], "gamma": 0.5}
        workflow = [("train", 1), ("val", 1)]
    else:
        runner_cfg = {"type": "IterBasedRunner", "max_iters": 14}
        lr_config = {"policy": "step", "step": [6, 11], "gamma": 0.5, "by_epoch": False}
        workflow = [("train", 4), ("val", 1)]
    return {
        "model": {"type": "ResumeDriverNet"},
        "data": {
            "samples_per_gpu": BATCH,
            "workers_per_gpu": workers,
            "train": {"type": "ResumeDriverData"},
            "val": {"type": "ResumeDriverData", "n": 16},
        },
        "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
        "optimizer_config": {"grad_clip": {"max_norm": 0.5}},
        "lr_config": lr_config,
        "runner": runner_cfg,
        "checkpoint_config": {"interval": 1, "by_epoch": False, "max_keep_ckpts": 3},
        "log_config": {"interval": 1, "hooks": [{"type": "TextLoggerHook"}]},
        "workflow": workflow,
        "seed": 7,
        "diff_rank_seed": distributed,  # every rank its own dropout stream
        # CPU kernels used here are deterministic already; deterministic=True would cost
        # ~3 s per process (torch.use_deterministic_algorithms imports torch._inductor).
        "deterministic": False,
        "work_dir": work_dir,
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runner", choices=["epoch", "iter", "hooks"], required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--losses", required=True)
    parser.add_argument("--kill-at-iter", type=int, default=None)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--plain-ddp", action="store_true")
    parser.add_argument("--allow-world-size-change", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # Launched like torchrun (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): one process per rank.
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    suffix = ""
    if distributed:
        torch.distributed.init_process_group("gloo")
        suffix = f".rank{torch.distributed.get_rank()}"
    hooks: list[tuple[Hook, int | str]] = [(LossRecorder(Path(args.losses + suffix)), "LOWEST")]
    if args.kill_at_iter is not None:
        hooks.append((Killer(args.kill_at_iter), "LOWEST"))
    runner = trackcfg.train(
        config(args.runner, args.work_dir, args.workers, distributed, args.plain_ddp),
        resume_from=args.resume,
        extra_hooks=hooks,
        allow_world_size_change=args.allow_world_size_change,
    )
    optimizer = runner.optimizer
    assert isinstance(optimizer, torch.optim.Optimizer)
    torch.save(
        {"model": runner.model.state_dict(), "optimizer": optimizer.state_dict()},
        args.out + suffix,
    )
    if distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
