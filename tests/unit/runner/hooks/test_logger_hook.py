"""LoggerHook base: when it averages and logs (mmcv's stage logic), and the tags it builds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.unit.runner.hooks.fake_hook_runner import FakeRunnerFactory, fake_runner_factory
from trackcfg.runner.hooks.logger import LoggerHook


@pytest.fixture
def make_runner(tmp_path: Path) -> FakeRunnerFactory:
    return fake_runner_factory(tmp_path)


class RecordingLogger(LoggerHook):
    """Records (iter, tags) at every log call."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.logged: list[tuple[int, dict[str, float]]] = []

    def log(self, runner: object) -> None:
        self.logged.append(
            (self.get_iter(runner, inner_iter=True), self.get_loggable_tags(runner))  # type: ignore[arg-type]
        )


def sgd(lr: float = 0.1) -> torch.optim.SGD:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def train_epoch(runner: object, hooks: list[LoggerHook], length: int, epoch: int = 0) -> None:
    """One train epoch: loss = global iteration index, timings constant."""
    runner.mode, runner.epoch = "train", epoch  # type: ignore[attr-defined]
    runner.data_loader = list(range(length))  # type: ignore[attr-defined]
    for hook in hooks:
        hook.before_train_epoch(runner)  # type: ignore[arg-type]
    for i in range(length):
        runner.inner_iter = i  # type: ignore[attr-defined]
        runner.iter = epoch * length + i  # type: ignore[attr-defined]
        runner.log_buffer.update({"loss": float(runner.iter), "time": 0.5, "data_time": 0.1})  # type: ignore[attr-defined]
        for hook in hooks:
            hook.after_train_iter(runner)  # type: ignore[arg-type]
    for hook in hooks:
        hook.after_train_epoch(runner)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # by_epoch: every 2nd inner iteration; the partial interval at the end is dropped
        ({"interval": 2}, [(2, 0.5), (4, 2.5)]),
        # ... unless ignore_last=False: the last iteration averages the last `interval` values
        ({"interval": 2, "ignore_last": False}, [(2, 0.5), (4, 2.5), (5, 3.5)]),
        ({"interval": 5}, [(5, 2.0)]),
    ],
)
def test_train_logging_averages_each_interval(
    make_runner: Callable[..., object],
    kwargs: dict[str, object],
    expected: list[tuple[int, float]],
) -> None:
    runner = make_runner(optimizer=sgd())
    hook = RecordingLogger(**kwargs)
    runner.hooks = [hook]  # type: ignore[attr-defined]
    hook.before_run(runner)  # type: ignore[arg-type]
    train_epoch(runner, [hook], length=5)
    assert [(i, tags["train/loss"]) for i, tags in hook.logged] == expected


def test_iteration_based_logging_counts_global_iterations(
    make_runner: Callable[..., object],
) -> None:
    runner = make_runner(optimizer=sgd())
    hook = RecordingLogger(interval=3, by_epoch=False)
    runner.hooks = [hook]  # type: ignore[attr-defined]
    hook.before_run(runner)  # type: ignore[arg-type]
    train_epoch(runner, [hook], length=4, epoch=0)
    train_epoch(runner, [hook], length=4, epoch=1)
    # global iterations 3 and 6; the buffer restarts at each epoch (mmcv)
    assert [(i, tags["train/loss"]) for i, tags in hook.logged] == [(3, 1.0), (6, 4.5)]


def test_last_logger_hook_clears_output_after_every_logger_has_read_it(
    make_runner: Callable[..., object],
) -> None:
    runner = make_runner(optimizer=sgd())
    first, last = RecordingLogger(interval=2), RecordingLogger(interval=2)
    runner.hooks = [first, last]  # type: ignore[attr-defined]
    for hook in runner.hooks:  # type: ignore[attr-defined]
        hook.before_run(runner)
    assert (first.reset_flag, last.reset_flag) == (False, True)
    train_epoch(runner, [first, last], length=4)
    assert first.logged == last.logged
    assert len(last.logged) == 2
    assert not runner.log_buffer.ready  # type: ignore[attr-defined]


def test_val_epoch_logs_the_average_of_the_whole_epoch(
    make_runner: Callable[..., object],
) -> None:
    runner = make_runner(optimizer=sgd(), mode="val", epoch=1)
    hook = RecordingLogger(interval=2, reset_flag=True)
    hook.before_val_epoch(runner)  # type: ignore[arg-type]
    for acc in (0.5, 1.0, 0.0):
        runner.log_buffer.update({"accuracy": acc})  # type: ignore[attr-defined]
        hook.after_val_iter(runner)  # type: ignore[arg-type]
    hook.after_val_epoch(runner)  # type: ignore[arg-type]
    assert len(hook.logged) == 1
    assert hook.logged[0][1]["val/accuracy"] == 0.5
    assert hook.get_epoch(runner) == 1  # type: ignore[arg-type]  # val: already counted


def test_loggable_tags_have_mode_prefix_lr_and_momentum(make_runner: Callable[..., object]) -> None:
    runner = make_runner(optimizer=sgd(0.25))
    buf = runner.log_buffer  # type: ignore[attr-defined]
    buf.output.update(
        {"loss": 1.5, "acc": torch.tensor(0.75), "time": 0.1, "data_time": 0.01, "note": "hi"}
    )
    tags = RecordingLogger().get_loggable_tags(runner)  # type: ignore[arg-type]
    assert tags == {"train/loss": 1.5, "train/acc": 0.75, "learning_rate": 0.25, "momentum": 0.9}
    assert all(type(v) is float for v in tags.values())


def test_loggable_tags_options(make_runner: Callable[..., object]) -> None:
    runner = make_runner(optimizer=sgd())
    runner.log_buffer.output.update({"loss": 1.0, "time": 0.2, "note": "hi"})  # type: ignore[attr-defined]
    hook = RecordingLogger()
    tags = hook.get_loggable_tags(
        runner,  # type: ignore[arg-type]
        allow_scalar=False,
        allow_text=True,
        add_mode=False,
        tags_to_skip=(),
    )
    assert tags == {"note": "hi", "learning_rate": 0.1, "momentum": 0.9}
    assert hook.get_loggable_tags(runner)["train/loss"] == 1.0  # type: ignore[arg-type]  # 'time' -> train


def test_lr_and_momentum_tags_per_named_optimizer_with_adam_betas(
    make_runner: Callable[..., object],
) -> None:
    adam = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-3, betas=(0.8, 0.999))
    plain = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    runner = make_runner(optimizer={"gen": adam, "disc": plain})
    hook = RecordingLogger()
    assert hook.get_lr_tags(runner) == {"learning_rate/gen": 1e-3, "learning_rate/disc": 0.5}  # type: ignore[arg-type]
    assert hook.get_momentum_tags(runner) == {"momentum/gen": 0.8, "momentum/disc": 0.0}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("by_epoch", "inner", "expected"), [(True, True, 3), (True, False, 13), (False, True, 13)]
)
def test_get_iter_is_one_based(
    make_runner: Callable[..., object], by_epoch: bool, inner: bool, expected: int
) -> None:
    runner = make_runner(iter=12, inner_iter=2)
    assert RecordingLogger(by_epoch=by_epoch).get_iter(runner, inner_iter=inner) == expected  # type: ignore[arg-type]


def test_unknown_runner_mode_is_an_error(make_runner: Callable[..., object]) -> None:
    runner = make_runner(mode="test")
    with pytest.raises(ValueError, match="'train' or 'val', but got 'test'"):
        RecordingLogger().get_mode(runner)  # type: ignore[arg-type]


@pytest.mark.parametrize(("in_epoch", "kept"), [(True, True), (False, False)])
def test_refired_epoch_start_keeps_history_only_if_restored_mid_epoch(
    make_runner: Callable[..., object], in_epoch: bool, kept: bool
) -> None:
    source = make_runner()
    source.log_buffer.update({"loss": 1.0})  # type: ignore[attr-defined]
    source.log_buffer.in_epoch = in_epoch  # type: ignore[attr-defined]
    resumed = make_runner()
    resumed.log_buffer.load_state_dict(source.log_buffer.state_dict())  # type: ignore[attr-defined]
    RecordingLogger().before_train_epoch(resumed)  # type: ignore[arg-type]
    assert ("loss" in resumed.log_buffer.val_history) is kept  # type: ignore[attr-defined]
    assert resumed.log_buffer.in_epoch  # type: ignore[attr-defined]


def test_epoch_end_closes_the_epoch_so_the_next_start_clears(
    make_runner: Callable[..., object],
) -> None:
    runner = make_runner(optimizer=sgd())
    hook = RecordingLogger(interval=2)
    train_epoch(runner, [hook], length=2, epoch=0)
    assert not runner.log_buffer.in_epoch  # type: ignore[attr-defined]
    hook.before_train_epoch(runner)  # type: ignore[arg-type]
    assert dict(runner.log_buffer.val_history) == {}  # type: ignore[attr-defined]
