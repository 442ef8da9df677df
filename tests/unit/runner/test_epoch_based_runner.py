"""EpochBasedRunner: stage order and counters, workflow semantics, run errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.unit.runner.toys import RecordingHook, RunnerFactory, StepHook
from trackcfg.errors import RunnerError
from trackcfg.runner.epoch_based_runner import EpochBasedRunner

Loader = Callable[..., torch.utils.data.DataLoader[object]]


def test_stages_fire_in_order_with_mmcv_counters(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=2)
    hook = RecordingHook()
    runner.register_hook(hook)
    runner.run([toy_loader(12), toy_loader(4)], [("train", 1), ("val", 1)])
    # (stage, mode, epoch, iter, inner_iter); in after_train_iter `iter` is the index just run.
    epoch = [
        ("before_train_epoch", "train", "E", "I", 0),
        ("before_train_iter", "train", "E", "I", 0),
        ("after_train_iter", "train", "E", "I", 0),
        ("before_train_iter", "train", "E", "I+1", 1),
        ("after_train_iter", "train", "E", "I+1", 1),
        ("before_train_iter", "train", "E", "I+2", 2),
        ("after_train_iter", "train", "E", "I+2", 2),
        ("after_train_epoch", "train", "E", "I+3", 2),
        ("before_val_epoch", "val", "E+1", "I+3", 2),
        ("before_val_iter", "val", "E+1", "I+3", 0),
        ("after_val_iter", "val", "E+1", "I+3", 0),
        ("after_val_epoch", "val", "E+1", "I+3", 0),
    ]

    def at(e: int, i: int) -> list[tuple[str, str | None, int, int, int]]:
        out = []
        for stage, mode, ep, it, inner in epoch:
            ep_v = e + (1 if ep == "E+1" else 0)
            it_v = i + (0 if it == "I" else int(it[2:]))
            out.append((stage, mode, ep_v, it_v, inner))
        return out

    expected = [("before_run", None, 0, 0, 0), *at(0, 0), *at(1, 3), ("after_run", "val", 2, 6, 0)]
    assert hook.events == expected


@pytest.mark.parametrize(
    ("workflow", "max_epochs", "modes"),
    [
        ([("train", 1)], 3, ["train", "train", "train"]),
        ([("train", 2), ("val", 1)], 3, ["train", "train", "val", "train", "val"]),
        ([("val", 1), ("train", 2)], 2, ["val", "train", "train"]),
        ([("train", 1), ("val", 2)], 1, ["train", "val", "val"]),
    ],
)
def test_workflow_counts_only_training_epochs(
    make_runner: RunnerFactory,
    toy_loader: Loader,
    workflow: list[tuple[str, int]],
    max_epochs: int,
    modes: list[str],
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=max_epochs)
    hook = RecordingHook()
    runner.register_hook(hook)
    runner.run([toy_loader(4) for _ in workflow], workflow)
    started = [
        mode
        for stage, mode, *_ in hook.events
        if stage.startswith("before_") and stage.endswith("_epoch")
    ]
    assert started == modes
    assert runner.epoch == max_epochs


def test_run_trains_the_model(make_runner: RunnerFactory, toy_loader: Loader) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=1)
    runner.register_hook(StepHook())
    before = [p.detach().clone() for p in runner.model.parameters()]
    runner.run([toy_loader()], [("train", 1)])
    assert runner.iter == 3 and runner.max_iters == 3
    assert any(
        not torch.equal(a, b) for a, b in zip(before, runner.model.parameters(), strict=True)
    )


@pytest.mark.parametrize(
    ("workflow", "n_loaders", "message"),
    [
        ([("train", 1)], 2, "workflow has 1 entries but 2 data loader"),
        ([("test", 1)], 1, r"workflow\[0\] must be"),
        ([("train", 0)], 1, r"workflow\[0\] must be"),
        ([("val", 1)], 1, "no 'train' entry"),
    ],
)
def test_run_rejects_bad_workflow(
    make_runner: RunnerFactory,
    toy_loader: Loader,
    workflow: list[tuple[str, int]],
    n_loaders: int,
    message: str,
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=1)
    with pytest.raises(RunnerError, match=message):
        runner.run([toy_loader() for _ in range(n_loaders)], workflow)


def test_run_without_max_epochs_is_an_error(make_runner: RunnerFactory, toy_loader: Loader) -> None:
    runner = make_runner(EpochBasedRunner)
    with pytest.raises(RunnerError, match="max_epochs must be given"):
        runner.run([toy_loader()], [("train", 1)])


def test_train_step_must_return_a_dict(make_runner: RunnerFactory, toy_loader: Loader) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=1)
    runner.model.train_step = lambda batch, optimizer: 1.0  # type: ignore[assignment]
    with pytest.raises(TypeError, match="train_step must return a dict, got float"):
        runner.run([toy_loader()], [("train", 1)])


def test_after_run_sees_the_failure(make_runner: RunnerFactory, toy_loader: Loader) -> None:
    seen: list[BaseException | None] = []

    class Watch(RecordingHook):
        def after_run(self, runner: object) -> None:
            seen.append(getattr(runner, "error", None))

    runner = make_runner(EpochBasedRunner, max_epochs=1)
    runner.register_hook(Watch())
    runner.model.train_step = lambda batch, optimizer: None  # type: ignore[assignment]
    with pytest.raises(TypeError):
        runner.run([toy_loader()], [("train", 1)])
    assert len(seen) == 1 and isinstance(seen[0], TypeError)


def test_constructor_rejects_both_max_epochs_and_max_iters(make_runner: RunnerFactory) -> None:
    with pytest.raises(RunnerError, match="only one of max_epochs and max_iters"):
        make_runner(EpochBasedRunner, max_epochs=1, max_iters=1)


def test_constructor_rejects_a_non_optimizer(make_runner: RunnerFactory) -> None:
    with pytest.raises(TypeError, match="optimizer must be an Optimizer"):
        EpochBasedRunner(torch.nn.Linear(1, 1), batch_processor=lambda *a, **k: {}, optimizer=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["subclass", "instance"])
def test_an_overridden_run_iter_runs_every_training_iteration(
    make_runner: RunnerFactory, toy_loader: Loader, how: str
) -> None:
    # the loop writes the stock run_iter out for speed; an override must still be used
    calls: list[bool] = []

    class Counting(EpochBasedRunner):
        def run_iter(self, data_batch: object, train_mode: bool, **kwargs: object) -> None:
            calls.append(train_mode)
            super().run_iter(data_batch, train_mode, **kwargs)

    runner = make_runner(Counting if how == "subclass" else EpochBasedRunner, max_epochs=1)
    if how == "instance":
        stock = runner.run_iter

        def counting(data_batch: object, train_mode: bool, **kwargs: object) -> None:
            calls.append(train_mode)
            stock(data_batch, train_mode, **kwargs)

        runner.run_iter = counting  # type: ignore[method-assign]
    runner.run([toy_loader(12)], [("train", 1)])
    assert calls == [True, True, True]
    assert runner.iter == 3 and "loss" in runner.log_buffer.val_history


def test_batch_processor_runs_training_iterations(toy_loader: Loader, tmp_path: Path) -> None:
    net = torch.nn.Linear(4, 2)
    seen: list[bool] = []

    def processor(model: torch.nn.Module, batch: object, train_mode: bool) -> dict[str, object]:
        x, y = batch  # type: ignore[misc]
        seen.append(train_mode)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        return {"loss": loss, "log_vars": {"loss": loss.item()}, "num_samples": len(x)}

    runner = EpochBasedRunner(net, batch_processor=processor, work_dir=tmp_path, max_epochs=1)
    runner.run([toy_loader(12)], [("train", 1)])
    assert seen == [True, True, True]
    assert len(runner.log_buffer.val_history["loss"]) == 3


def test_log_vars_of_any_scalar_type_are_logged_as_log_buffer_update_does(
    toy_loader: Loader, tmp_path: Path
) -> None:
    # the loop appends plain floats itself; other values and counts take LogBuffer.update
    from trackcfg.runner.log_buffer import LogBuffer

    steps = iter(
        [
            ({"loss": 0.5}, 4),
            ({"loss": torch.tensor(1.5), "acc": 2}, 4),
            ({"acc": 0.25, "loss": 3.0}, 2.0),
        ]
    )

    class Net(torch.nn.Module):
        def train_step(self, batch: object, optimizer: object) -> dict[str, object]:
            log_vars, count = next(steps)
            return {"log_vars": log_vars, "num_samples": count}

    runner = EpochBasedRunner(Net(), work_dir=tmp_path, max_epochs=1)
    runner.run([toy_loader(12)], [("train", 1)])
    expected = LogBuffer()
    expected.update({"loss": 0.5}, 4)
    expected.update({"loss": torch.tensor(1.5), "acc": 2}, 4)
    expected.update({"acc": 0.25, "loss": 3.0}, 2.0)  # type: ignore[arg-type]
    assert runner.log_buffer.val_history == expected.val_history
    assert runner.log_buffer.n_history == expected.n_history
