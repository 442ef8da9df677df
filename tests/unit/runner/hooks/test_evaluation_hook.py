"""EvalHook inside the real EpochBasedRunner: when it evaluates, which checkpoint is best.

The dataset's ``evaluate`` plays back a fixed list of scores (one per evaluation),
so which epoch wins is known in advance. mmcv 1.7.2's EvalHook (tests/mmcv_oracle.py)
decides when to evaluate and which rule a metric gets; ours must decide the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tests.mmcv_oracle import mmcv_runner
from trackcfg.registry import HOOKS
from trackcfg.runner.base_runner import BaseRunner
from trackcfg.runner.epoch_based_runner import EpochBasedRunner
from trackcfg.runner.hooks.evaluation import EvalHook
from trackcfg.runner.hooks.logger import LoggerHook


class ScoredData(Dataset[torch.Tensor]):
    """Four samples; ``evaluate`` returns the next of ``scores`` as ``acc`` (and a loss)."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = list(scores)
        self.seen: list[int] = []

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.full((2,), float(index))

    def evaluate(self, results: list[object], logger: object = None) -> dict[str, float]:
        self.seen.append(len(results))
        score = self.scores.pop(0)
        return {"acc": score, "loss": 1 - score}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def train_step(self, batch: torch.Tensor, optimizer: object) -> dict[str, object]:
        loss = self.fc(batch).pow(2).mean()
        return {"loss": loss, "log_vars": {"loss": loss.item()}, "num_samples": len(batch)}

    def test_step(self, batch: torch.Tensor) -> list[float]:
        return [float(v) for v in self.fc(batch).squeeze(1)]


def make_runner(work_dir: Path, epochs: int) -> EpochBasedRunner:
    torch.manual_seed(0)
    model = Net()
    return EpochBasedRunner(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        work_dir=work_dir,
        logger=logging.getLogger("test.eval"),
        max_epochs=epochs,
    )


def train_with(
    work_dir: Path,
    scores: list[float],
    epochs: int,
    resume: Path | None = None,
    **eval_args: object,
) -> tuple[EpochBasedRunner, EvalHook]:
    runner = make_runner(work_dir, epochs)
    runner.register_training_hooks(
        None,
        {"type": "OptimizerHook"},
        {"interval": 1, "max_keep_ckpts": 1},
        None,
    )
    data = ScoredData(scores)
    hook = EvalHook(DataLoader(data, batch_size=2), **eval_args)  # type: ignore[arg-type]
    runner.register_hook(hook, "LOW")
    if resume is not None:
        runner.resume(resume)
    runner.run([DataLoader(ScoredData([]), batch_size=2)], [("train", 1)])
    return runner, hook


def best_files(work_dir: Path) -> list[str]:
    return sorted(p.name for p in work_dir.glob("best_*.pth"))


def test_best_checkpoint_is_the_best_epoch_and_survives_keep_last(tmp_path: Path) -> None:
    runner, hook = train_with(tmp_path, [0.5, 0.9, 0.7, 0.8], 4, save_best="auto")
    assert best_files(tmp_path) == ["best_acc_epoch_2.pth"]
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pth")) == ["epoch_4.pth"]  # keep-last-1
    assert runner.meta is not None
    assert runner.meta["hook_msgs"]["best_score"] == 0.9  # type: ignore[index]
    assert hook.rule == "greater"


def test_less_rule_picks_the_lowest(tmp_path: Path) -> None:
    train_with(tmp_path, [0.5, 0.9, 0.7], 3, save_best="loss")
    assert best_files(tmp_path) == ["best_loss_epoch_2.pth"]


def test_best_score_survives_a_resume(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    train_with(whole, [0.5, 0.9, 0.7, 0.8], 4, save_best="acc")
    part = tmp_path / "part"
    train_with(part, [0.5, 0.9], 2, save_best="acc")
    # the resumed run sees 0.7 and 0.8: neither beats the 0.9 of before the resume
    _, hook = train_with(part, [0.7, 0.8], 4, resume=part / "epoch_2.pth", save_best="acc")
    assert hook.best_score == 0.9
    assert best_files(part) == best_files(whole) == ["best_acc_epoch_2.pth"]


class RecordingLogger(LoggerHook):
    """Keeps what a logger hook would log: (tags, step)."""

    def __init__(self) -> None:
        super().__init__(interval=100)
        self.logged: list[tuple[dict[str, float], int]] = []

    def log(self, runner: BaseRunner) -> None:
        self.logged.append((self.get_loggable_tags(runner), self.get_iter(runner)))


def test_metrics_are_logged_as_val_metrics_at_the_epochs_step(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, 2)
    runner.register_training_hooks(None, {"type": "OptimizerHook"})
    logger = RecordingLogger()
    runner.register_hook(logger, "VERY_LOW")
    runner.register_hook(EvalHook(DataLoader(ScoredData([0.25, 0.5]), batch_size=2)), "LOW")
    runner.run([DataLoader(ScoredData([]), batch_size=2)], [("train", 1)])
    evals = [(tags["val/acc"], step) for tags, step in logger.logged if "val/acc" in tags]
    # 2 iterations per epoch; as for mmcv's val epochs, the step is runner.iter + 1,
    # and after an epoch runner.iter counts the epoch's iterations already
    assert evals == [(0.25, 3), (0.5, 5)]


@dataclass
class Counters:
    epoch: int = 0
    iter: int = 0


@pytest.mark.parametrize(
    "args",
    [
        {"interval": 1},
        {"interval": 3},
        {"start": 2, "interval": 2},
        {"start": 0, "interval": 3},
        {"by_epoch": False, "interval": 4},
        {"by_epoch": False, "start": 5, "interval": 3},
    ],
)
def test_when_to_evaluate_matches_mmcv(args: dict[str, object]) -> None:
    loader = DataLoader(ScoredData([]), batch_size=2)
    ours = EvalHook(loader, **args)  # type: ignore[arg-type]
    theirs = mmcv_runner().EvalHook(loader, **args)
    for step in range(20):
        counters = Counters(epoch=step, iter=step)
        assert ours._should_evaluate(counters) == theirs._should_evaluate(counters), step  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("save_best", "extra"),
    [
        ("acc", {}),
        ("top1_acc", {}),
        ("val_loss", {}),
        ("mAP", {}),
        ("AR@100", {}),
        ("score", {"greater_keys": ["score"]}),
        ("err", {"less_keys": ["err"]}),
        ("anything", {"rule": "less"}),
    ],
)
def test_rule_inference_matches_mmcv(save_best: str, extra: dict[str, object]) -> None:
    loader = DataLoader(ScoredData([]), batch_size=2)
    ours = EvalHook(loader, save_best=save_best, **extra)  # type: ignore[arg-type]
    theirs = mmcv_runner().EvalHook(loader, save_best=save_best, **extra)
    assert ours.rule == theirs.rule


def test_uninferable_rule_names_save_best() -> None:
    from trackcfg.errors import ArgumentValueError

    with pytest.raises(ArgumentValueError) as info:
        HOOKS.build(
            {"type": "EvalHook", "save_best": "f1"},
            default_args={"dataloader": DataLoader(ScoredData([]), batch_size=2)},
        )
    assert info.value.key_path == "save_best"
