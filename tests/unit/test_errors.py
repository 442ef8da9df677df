"""How errors render and which built-ins they also are."""

from __future__ import annotations

import pickle

import pytest

from trackcfg.config.location import Location
from trackcfg.errors import (
    CanonicalizationError,
    CheckpointCorruptError,
    ConfigAttributeError,
    ConfigImportError,
    ConfigKeyError,
    ConfigMergeError,
    ConfigOptionError,
    DuplicateRegistrationError,
    HookRegistrationError,
    JournalBusyError,
    RunTerminatedError,
    TrackcfgError,
    UnknownTypeError,
    WorkDirError,
)


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
        (WorkDirError, OSError),
        (JournalBusyError, TimeoutError),
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
