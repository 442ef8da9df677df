"""IterBasedRunner: stage order and counters, workflow semantics, endless loaders."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from tests.unit.runner.toys import RecordingHook, RunnerFactory
from trackcfg.runner.iter_based_runner import IterBasedRunner, IterLoader

Loader = Callable[..., torch.utils.data.DataLoader[object]]


def test_stages_fire_in_order_with_mmcv_counters(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    runner = make_runner(IterBasedRunner, max_iters=4)
    hook = RecordingHook()
    runner.register_hook(hook)
    runner.run([toy_loader(12)], [("train", 1)])  # 3 batches per loader epoch
    assert hook.events == [
        ("before_run", None, 0, 0, 0),
        ("before_train_epoch", None, 0, 0, 0),
        ("before_train_iter", "train", 0, 0, 0),
        ("after_train_iter", "train", 0, 0, 0),
        ("before_train_iter", "train", 0, 1, 0),
        ("after_train_iter", "train", 0, 1, 0),
        ("before_train_iter", "train", 0, 2, 0),
        ("after_train_iter", "train", 0, 2, 0),
        ("before_train_iter", "train", 1, 3, 0),  # the loader wrapped into epoch 1
        ("after_train_iter", "train", 1, 3, 0),
        ("after_train_epoch", "train", 1, 4, 0),
        ("after_run", "train", 1, 4, 0),
    ]


@pytest.mark.parametrize(
    ("workflow", "max_iters", "modes"),
    [
        ([("train", 2)], 3, ["train"] * 3),
        (
            [("train", 2), ("val", 1)],
            5,
            ["train", "train", "val", "train", "train", "val", "train", "val"],
        ),
    ],
)
def test_workflow_counts_only_training_iterations(
    make_runner: RunnerFactory,
    toy_loader: Loader,
    workflow: list[tuple[str, int]],
    max_iters: int,
    modes: list[str],
) -> None:
    runner = make_runner(IterBasedRunner, max_iters=max_iters)
    hook = RecordingHook()
    runner.register_hook(hook)
    runner.run([toy_loader() for _ in workflow], workflow)
    ran = [
        mode
        for stage, mode, *_ in hook.events
        if stage.startswith("before_") and stage.endswith("_iter")
    ]
    assert ran == modes
    assert runner.iter == max_iters


def test_inner_iter_counts_within_a_workflow_entry(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    runner = make_runner(IterBasedRunner, max_iters=4)
    hook = RecordingHook()
    runner.register_hook(hook)
    runner.run([toy_loader(), toy_loader()], [("train", 2), ("val", 1)])
    inner = [
        (stage, e[4])
        for e in hook.events
        if (stage := e[0]) in ("before_train_iter", "before_val_iter")
    ]
    assert inner == [
        ("before_train_iter", 0),
        ("before_train_iter", 1),
        ("before_val_iter", 0),
        ("before_train_iter", 0),
        ("before_train_iter", 1),
        ("before_val_iter", 0),
    ]


def test_iter_loader_cycles_and_counts_epochs(toy_loader: Loader) -> None:
    loader = IterLoader(toy_loader(8))  # 2 batches per epoch
    positions = []
    for _ in range(5):
        next(loader)
        positions.append((loader.epoch, loader.position))
    assert positions == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1)]


def test_iter_loader_starts_at_a_restored_position(toy_loader: Loader) -> None:
    fresh = IterLoader(toy_loader(8))
    batches = [next(fresh) for _ in range(5)]
    restored = IterLoader(toy_loader(8), epoch=1, position=1)
    x_expected, _ = batches[3]  # type: ignore[misc]
    x_restored, _ = next(restored)  # type: ignore[misc]
    assert torch.equal(x_expected, x_restored)


def test_training_hooks_count_iterations_by_default(make_runner: RunnerFactory) -> None:
    runner = make_runner(IterBasedRunner, max_iters=4)
    log_config = {"interval": 1, "hooks": [{"type": "TextLoggerHook"}]}
    runner.register_training_hooks(
        lr_config={"policy": "step", "step": [2]},
        checkpoint_config={"interval": 1, "by_epoch": True},  # explicit wins
        log_config=log_config,
    )
    by_epoch = {type(h).__name__: getattr(h, "by_epoch", None) for h in runner.hooks}
    assert by_epoch == {
        "StepLrUpdaterHook": False,
        "CheckpointHook": True,
        "IterTimerHook": None,
        "TextLoggerHook": False,
    }
    assert log_config == {"interval": 1, "hooks": [{"type": "TextLoggerHook"}]}
