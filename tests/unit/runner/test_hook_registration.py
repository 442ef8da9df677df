"""Hook registration: type and stage checks, priority order, config-built hooks, hook info."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.unit.runner.toys import RecordingHook, RunnerFactory
from trackcfg.errors import HookRegistrationError
from trackcfg.registry import HOOKS
from trackcfg.runner.epoch_based_runner import EpochBasedRunner
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.iter_based_runner import IterBasedRunner
from trackcfg.runner.priority import Priority
from trackcfg.runner.stage import Stage


class Named(Hook):
    def __init__(self, name: str) -> None:
        self.name = name


class Misspelled(Hook):
    def after_trian_iter(self, runner: object) -> None:
        """Typo: never a stage."""


class UnknownStage(Hook):
    def before_everything(self, runner: object) -> None:
        """No stage of that name."""


def test_register_hook_rejects_non_hook(make_runner: RunnerFactory) -> None:
    runner = make_runner(EpochBasedRunner)
    with pytest.raises(HookRegistrationError, match="expected a Hook instance, got object"):
        runner.register_hook(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        (Misspelled(), "Misspelled.after_trian_iter is not a hook stage"),
        (UnknownStage(), "UnknownStage.before_everything is not a hook stage"),
    ],
)
def test_register_hook_rejects_unknown_stage_method(
    make_runner: RunnerFactory, hook: Hook, message: str
) -> None:
    runner = make_runner(EpochBasedRunner)
    with pytest.raises(HookRegistrationError, match=message):
        runner.register_hook(hook)


def test_misspelled_stage_error_suggests_the_stage(make_runner: RunnerFactory) -> None:
    runner = make_runner(EpochBasedRunner)
    with pytest.raises(HookRegistrationError) as info:
        runner.register_hook(Misspelled())
    assert info.value.hint == "did you mean 'after_train_iter'?"


@pytest.mark.parametrize(
    ("priorities", "expected"),
    [
        ([("a", "NORMAL"), ("b", "HIGH"), ("c", "LOW")], ["b", "a", "c"]),
        ([("a", 50), ("b", 50), ("c", 50)], ["a", "b", "c"]),  # stable among equals
        ([("a", "LOW"), ("b", 10), ("c", Priority.LOW), ("d", "highest")], ["d", "b", "a", "c"]),
        ([("a", 100), ("b", 0), ("c", 100), ("d", 0)], ["b", "d", "a", "c"]),
    ],
)
def test_register_hook_orders_by_priority_stably(
    make_runner: RunnerFactory, priorities: list[tuple[str, int | str]], expected: list[str]
) -> None:
    runner = make_runner(EpochBasedRunner)
    for name, priority in priorities:
        runner.register_hook(Named(name), priority)
    assert [h.name for h in runner.hooks] == expected  # type: ignore[attr-defined]


def test_register_hook_default_priority_is_the_hooks_own(make_runner: RunnerFactory) -> None:
    class Early(Hook):
        priority = "VERY_HIGH"

    runner = make_runner(EpochBasedRunner)
    runner.register_hook(Named("normal"))
    early = Early()
    runner.register_hook(early)
    assert runner.hooks[0] is early
    assert early.priority == 10


@pytest.mark.parametrize("priority", ["SOMETIMES", 101, -1, 2.5])
def test_register_hook_rejects_bad_priority(make_runner: RunnerFactory, priority: object) -> None:
    runner = make_runner(EpochBasedRunner)
    with pytest.raises(HookRegistrationError):
        runner.register_hook(Named("x"), priority)  # type: ignore[arg-type]


def test_call_hook_rejects_a_string_stage(make_runner: RunnerFactory) -> None:
    runner = make_runner(EpochBasedRunner)
    with pytest.raises(HookRegistrationError, match="call_hook expects a Stage"):
        runner.call_hook("after_train_iter")  # type: ignore[arg-type]


def test_call_hook_calls_generic_methods_for_specific_stages(make_runner: RunnerFactory) -> None:
    class Generic(Hook):
        def __init__(self) -> None:
            self.calls = 0

        def after_iter(self, runner: object) -> None:
            self.calls += 1

    runner = make_runner(EpochBasedRunner)
    hook = Generic()
    runner.register_hook(hook)
    runner.call_hook(Stage.AFTER_TRAIN_ITER)
    runner.call_hook(Stage.AFTER_VAL_ITER)
    runner.call_hook(Stage.BEFORE_TRAIN_ITER)
    assert hook.calls == 2


def test_hook_exception_keeps_type_and_names_the_hook(make_runner: RunnerFactory) -> None:
    class Failing(Hook):
        def before_run(self, runner: object) -> None:
            raise ZeroDivisionError("boom")

    runner = make_runner(EpochBasedRunner)
    runner.register_hook(Failing())
    with pytest.raises(ZeroDivisionError) as info:
        runner.call_hook(Stage.BEFORE_RUN)
    assert any("Failing.before_run" in note for note in info.value.__notes__)


@HOOKS.register_module(force=True)
class RegistrationTestHook(Hook):
    def __init__(self, value: int = 0) -> None:
        self.value = value


def test_register_hook_from_cfg_builds_and_keeps_cfg_intact(make_runner: RunnerFactory) -> None:
    runner = make_runner(EpochBasedRunner)
    cfg = {"type": "RegistrationTestHook", "value": 3, "priority": "VERY_LOW"}
    runner.register_hook_from_cfg(cfg)
    (hook,) = runner.hooks
    assert isinstance(hook, RegistrationTestHook)
    assert (hook.value, hook.priority) == (3, 90)
    assert cfg == {"type": "RegistrationTestHook", "value": 3, "priority": "VERY_LOW"}


def test_register_training_hooks_uses_mmcv_types_and_priorities(make_runner: RunnerFactory) -> None:
    runner = make_runner(EpochBasedRunner)
    runner.register_training_hooks(
        lr_config={"policy": "step", "step": [1]},
        optimizer_config={"grad_clip": None},
        checkpoint_config={"interval": 1},
        log_config={"interval": 5, "hooks": [{"type": "TextLoggerHook"}]},
        custom_hooks_config=[{"type": "RegistrationTestHook", "priority": "HIGHEST"}],
    )
    assert [(type(h).__name__, h.priority) for h in runner.hooks] == [
        ("RegistrationTestHook", 0),
        ("StepLrUpdaterHook", 10),
        ("OptimizerHook", 40),
        ("CheckpointHook", 50),
        ("IterTimerHook", 70),
        ("TextLoggerHook", 90),
    ]


def test_register_training_hooks_maps_cosine_policy(make_runner: RunnerFactory) -> None:
    runner = make_runner(EpochBasedRunner)
    runner.register_training_hooks(lr_config={"policy": "CosineAnnealing", "min_lr": 0.0})
    assert [type(h).__name__ for h in runner.hooks] == [
        "CosineAnnealingLrUpdaterHook",
        "IterTimerHook",
    ]


def test_get_hook_info_lists_hooks_per_stage(make_runner: RunnerFactory) -> None:
    runner = make_runner(EpochBasedRunner)
    runner.register_hook(RecordingHook(), "HIGH")
    runner.register_hook(Named("plain"))
    info = runner.get_hook_info()
    assert info.splitlines()[:3] == [
        "before_run:",
        f"({'HIGH':<12}) {'RecordingHook':<35}",
        " -------------------- ",
    ]
    assert "Named" not in info  # a hook that overrides no stage fires nowhere


class FailingIterHook(Hook):
    def __init__(self, stage: str) -> None:
        self.stage = stage

    def before_train_iter(self, runner: object) -> None:
        if self.stage == "before_train_iter":
            raise ZeroDivisionError("boom")

    def after_train_iter(self, runner: object) -> None:
        if self.stage == "after_train_iter":
            raise ZeroDivisionError("boom")


@pytest.mark.parametrize("runner_cls", [EpochBasedRunner, IterBasedRunner])
@pytest.mark.parametrize("stage", ["before_train_iter", "after_train_iter"])
def test_iteration_hook_exception_in_the_loop_names_the_hook_and_counters(
    make_runner: RunnerFactory,
    toy_loader: Callable[..., object],
    runner_cls: type[EpochBasedRunner],
    stage: str,
) -> None:
    runner = make_runner(runner_cls, **({"max_iters": 3} if runner_cls is IterBasedRunner else {}))
    runner.register_hook(FailingIterHook(stage))
    with pytest.raises(ZeroDivisionError) as info:
        runner.run(
            [toy_loader()],
            [("train", 1)],
            **({"max_epochs": 1} if runner_cls is EpochBasedRunner else {}),
        )
    assert info.value.__notes__[0] == f"in FailingIterHook.{stage} (epoch=0, iter=0, inner_iter=0)"


def test_train_step_exception_gets_no_hook_note(
    make_runner: RunnerFactory, toy_loader: Callable[..., object]
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=1)
    runner.register_hook(FailingIterHook("none"))

    def broken_step(*args: object, **kwargs: object) -> dict[str, object]:
        raise ZeroDivisionError("step")

    runner.model.train_step = broken_step  # type: ignore[method-assign]
    with pytest.raises(ZeroDivisionError) as info:
        runner.run([toy_loader()], [("train", 1)])
    assert not any(" (epoch=" in note for note in getattr(info.value, "__notes__", []))
