"""How errors render and which built-ins they also are."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.runner.toys import ToyData, ToyNet
from trackcfg.config.config import Config
from trackcfg.config.location import Location
from trackcfg.errors import (
    ArgumentError,
    ArgumentKeyError,
    ArgumentTypeError,
    ArgumentValueError,
    CanonicalizationError,
    CheckpointCorruptError,
    CheckpointFormatError,
    ConfigAttributeError,
    ConfigBuildError,
    ConfigError,
    ConfigImportError,
    ConfigKeyError,
    ConfigMergeError,
    ConfigOptionError,
    DuplicateRegistrationError,
    HookRegistrationError,
    JournalBusyError,
    PortInUseError,
    PreemptedError,
    RunnerError,
    RunTerminatedError,
    TrackcfgError,
    UnknownTypeError,
    WorkDirError,
)
from trackcfg.registry import DATASETS, HOOKS, MODELS
from trackcfg.runner.epoch_based_runner import EpochBasedRunner
from trackcfg.runner.hooks.lr_updater import StepLrUpdaterHook
from trackcfg.runner.train import train
from trackcfg.session.hooks import MlflowLoggerHook


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (TrackcfgError("boom"), "boom"),
        (
            ConfigMergeError(
                "cannot merge a dict into a base value of type int",
                location=Location("configs/exp/r50.py", 14),
                key_path="model.backbone",
                details=["base value set at configs/_base_/models/resnet.py:6"],
                hint="put `_delete_=True` in this dict to replace the base value",
            ),
            "configs/exp/r50.py:14: model.backbone: cannot merge a dict into a base value"
            " of type int\n"
            "  base value set at configs/_base_/models/resnet.py:6\n"
            "  hint: put `_delete_=True` in this dict to replace the base value",
        ),
        (
            ConfigKeyError("no key 'lr'", key_path="optimizer", hint="did you mean 'lr_'?"),
            "optimizer: no key 'lr'\n  hint: did you mean 'lr_'?",
        ),
    ],
)
def test_error_renders_like_a_compiler(error: TrackcfgError, text: str) -> None:
    assert str(error) == text


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (ConfigKeyError, KeyError),
        (ConfigAttributeError, AttributeError),
        (ConfigAttributeError, KeyError),
        (ConfigImportError, ImportError),
        (ConfigOptionError, ValueError),
        (CanonicalizationError, TypeError),
        (UnknownTypeError, KeyError),
        (DuplicateRegistrationError, KeyError),
        (HookRegistrationError, TypeError),
        (CheckpointCorruptError, TrackcfgError),
        (CheckpointFormatError, CheckpointCorruptError),
        (CheckpointFormatError, ValueError),
        (ArgumentValueError, ValueError),
        (ArgumentTypeError, TypeError),
        (ArgumentKeyError, KeyError),
        (ArgumentKeyError, ArgumentError),
        (WorkDirError, OSError),
        (JournalBusyError, TimeoutError),
        (PortInUseError, OSError),
        (ConfigBuildError, ConfigError),
    ],
)
def test_error_is_also_its_builtin(cls: type[TrackcfgError], builtin: type[Exception]) -> None:
    with pytest.raises(builtin):
        raise cls("x")


def test_key_errors_are_not_quoted() -> None:
    assert str(ConfigKeyError("missing", key_path="a.b")) == "a.b: missing"


def test_error_survives_pickling_with_its_fields() -> None:
    err = ConfigMergeError("m", location=Location("f.py", 3), key_path="a", hint="h")
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), str(back), back.location, back.key_path) == (
        ConfigMergeError,
        str(err),
        Location("f.py", 3),
        "a",
    )


def test_a_termination_is_an_interrupt_that_except_exception_does_not_swallow() -> None:
    assert issubclass(RunTerminatedError, KeyboardInterrupt)
    assert not issubclass(RunTerminatedError, Exception)
    assert RunTerminatedError(15).signum == 15


def test_a_preemption_is_a_termination_that_names_the_iteration_it_saved() -> None:
    err = PreemptedError(15, epoch=2, iter=37)
    assert isinstance(err, RunTerminatedError) and not isinstance(err, Exception)
    assert (err.signum, err.epoch, err.iter) == (15, 2, 37)
    assert "after iteration 37" in str(err)


def test_every_exception_trackcfg_defines_is_in_the_errors_module() -> None:
    import importlib
    import pkgutil

    import trackcfg

    defined: set[type[BaseException]] = set()
    for info in pkgutil.walk_packages(trackcfg.__path__, "trackcfg."):
        if info.name.endswith("__main__"):
            continue  # running them is what they do
        module = importlib.import_module(info.name)
        defined.update(
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, BaseException)
            and value.__module__ == info.name
        )
    assert defined, "no module was read"
    outside = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in defined
        # A private exception never leaves its module (control flow inside it).
        if cls.__module__ != "trackcfg.errors" and not cls.__name__.startswith("_")
    )
    assert outside == [], "define errors in trackcfg/errors.py, in its tree"


# -- runner and hook errors: type, fields and exact text ---------------------------------

DATA = Path(__file__).parents[1] / "data" / "configs"
MODELS.register_module(name="ErrorTableNet", module=ToyNet, force=True)
DATASETS.register_module(name="ErrorTableData", module=ToyData, force=True)


Action = Callable[[Path], object]  # called with a fresh temporary directory


def train_config(name: str) -> Action:
    """Run ``hook_errors/<name>.py`` (tests/data/configs) as ``trackcfg run`` would."""

    def action(tmp: Path) -> object:
        return train(Config.fromfile(DATA / "hook_errors" / f"{name}.py", root=DATA), tmp)

    return action


def resume_with_inner_iter(value: object) -> Action:
    """Resume from a checkpoint (digest intact) whose runner counters hold ``value``."""

    def action(tmp: Path) -> object:
        runner = EpochBasedRunner(ToyNet(), work_dir=tmp, max_epochs=1)
        runner.inner_iter = value  # type: ignore[assignment]
        runner.save_checkpoint(tmp, filename_tmpl="bad_{}.pth")
        runner.wait_for_checkpoints()
        EpochBasedRunner(ToyNet(), work_dir=tmp, max_epochs=1).resume(tmp / "bad_1.pth")
        return None

    return action


def log_without_journal(tmp: Path) -> object:
    runner = EpochBasedRunner(ToyNet(), max_epochs=1)
    runner.mode = "train"
    return MlflowLoggerHook().log(runner)


# (case, action, error type, key path, message with <tmp> for the temporary directory)
CASES: list[tuple[str, Action, type[TrackcfgError], str | None, str]] = [
    (
        "hook argument out of range, from a config file",
        train_config("warmup_iters"),
        ArgumentValueError,
        "lr_config.warmup_iters",
        "hook_errors/warmup_iters.py:6: lr_config.warmup_iters: must be a positive integer, got 0",
    ),
    (
        "misspelled hook argument",
        train_config("checkpoint_typo"),
        ArgumentValueError,
        "checkpoint_config.sync_bufer",
        "hook_errors/checkpoint_typo.py:2: checkpoint_config.sync_bufer: unknown argument(s)"
        " sync_bufer of CheckpointHook; extra keywords go to runner.save_checkpoint, which"
        " takes create_symlink, filename_tmpl, meta\n"
        "  hint: did you mean 'sync_buffer'?",
    ),
    (
        "logger hook argument",
        train_config("logger_flush"),
        ArgumentValueError,
        "log_config.hooks.0.flush_interval",
        "hook_errors/logger_flush.py:4: log_config.hooks.0.flush_interval:"
        " must be >= 0 seconds, got -1",
    ),
    (
        "custom hook argument (located at the list, its elements have no line of their own)",
        train_config("custom_meta"),
        ArgumentValueError,
        "custom_hooks.1.meta",
        "hook_errors/custom_meta.py:2: custom_hooks.1.meta: must be a dict, got str",
    ),
    (
        "hook argument rejected in before_run",
        train_config("one_cycle"),
        ArgumentValueError,
        "lr_config.total_steps",
        "hook_errors/one_cycle.py:2: lr_config.total_steps: must be at least the runner's"
        " max_iters 3, got 2",
    ),
    (
        "hook argument, built in Python",
        lambda tmp: StepLrUpdaterHook(step=[2, 0]),
        ArgumentValueError,
        "step",
        "step: every step must be positive, got [2, 0]",
    ),
    (
        "hook argument of the wrong type, built from a dict",
        lambda tmp: HOOKS.build({"type": "StepLrUpdaterHook", "step": 1.5}, key_path="lr_config"),
        ArgumentTypeError,
        "lr_config.step",
        "lr_config.step: must be an int or a list of ints, got float",
    ),
    (
        "hook without the journal it logs into",
        log_without_journal,
        RunnerError,
        None,
        "MlflowLoggerHook has no journal to log into\n"
        "  hint: `trackcfg run` attaches one; in Python, call attach(journal) before the run"
        " starts",
    ),
    (
        "malformed runner counters in a checkpoint",
        resume_with_inner_iter("x"),
        CheckpointFormatError,
        None,
        "<tmp>/bad_1.pth: malformed 'runner' entry: runner state 'inner_iter' must be an int,"
        " got 'x'",
    ),
]


@pytest.mark.parametrize(
    ("case", "action", "error", "key_path", "message"), CASES, ids=[c[0] for c in CASES]
)
def test_runner_error_message(
    case: str,
    action: Action,
    error: type[TrackcfgError],
    key_path: str | None,
    message: str,
    tmp_path: Path,
) -> None:
    with pytest.raises(TrackcfgError) as info:
        action(tmp_path)
    text = message.replace("<tmp>", str(tmp_path))
    assert (type(info.value), info.value.key_path, str(info.value)) == (error, key_path, text)
