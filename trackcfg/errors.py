"""The whole trackcfg exception tree, in one place.

::

    TrackcfgError                          exit 2 at the CLI
    ├── ConfigError
    │   ├── ConfigFileNotFoundError (FileNotFoundError)   the top-level config file
    │   ├── ConfigSyntaxError              a .py/.json/.yaml file that does not parse
    │   ├── ConfigBaseError                missing, cyclic or conflicting `_base_` files
    │   ├── ConfigMergeError               `_delete_` misuse, dict merged into a non-dict
    │   ├── ConfigSubstitutionError        unknown `{{ }}` variable or `_base_` path
    │   ├── ConfigImportError (ImportError)        a failed `custom_imports` module
    │   ├── ConfigOptionError (ValueError)         a malformed `--cfg-options` string
    │   ├── CanonicalizationError (TypeError)      a value the hash cannot encode
    │   ├── ConfigLimitError               nested too deep, YAML aliases expanding too far
    │   ├── ConfigKeyError (KeyError)              a missing key
    │   │   └── ConfigAttributeError (AttributeError)
    │   ├── ConfigBuildError               a constructor the config names raised (its cause)
    │   └── ArgumentError                  a value a built object (a hook) rejects
    │       ├── ArgumentValueError (ValueError)
    │       ├── ArgumentTypeError (TypeError)
    │       └── ArgumentKeyError (KeyError)
    ├── RegistryError
    │   ├── UnknownTypeError (KeyError)
    │   └── DuplicateRegistrationError (KeyError)
    ├── RunnerError
    │   ├── HookRegistrationError (TypeError)      bad stage name, priority or hook type
    │   ├── WorkDirError (OSError)         the work dir cannot be created or written
    │   └── DistributedError               no backend / process group, or a rank disagrees
    ├── CheckpointError
    │   ├── WorldSizeMismatchError         resume refused: saved by another world size
    │   └── CheckpointCorruptError         digest mismatch, torn or unreadable file
    │       └── CheckpointFormatError (ValueError)   loads, but a part is malformed
    └── TrackingError
        ├── RunNotFoundError
        ├── SnapshotError                  a run without (or with a broken) snapshot
        ├── HashMismatchError              resume refused: the config hashes differently
        ├── RunLeaseError                  another trainer holds the run's lease
        ├── PortInUseError (OSError)       `trackcfg ui`: the port is taken
        ├── JournalBusyError (TimeoutError)        another process still delivers a journal
        ├── VerificationError              `verify` cannot re-run a run (never "diverged")
        └── RegistrationError              `register` cannot make a model of a run's checkpoint

    KeyboardInterrupt
    ├── RunTerminatedError                 SIGTERM while training (run KILLED)
    │   └── PreemptedError                 a preemption signal: checkpointed, then stopped
    └── TrainingStopped                    a hook ended training early on purpose (KILLED)

`RunTerminatedError` and `TrainingStopped` stay outside `TrackcfgError` (and
`Exception`), like the Ctrl-C they stand for: ``except Exception`` in user code must
not swallow a termination.

``ConfigWarning`` (a ``UserWarning``) is raised for configs that load but probably
not as meant; its text starts with ``file:line:`` like an error's.

Every error also subclasses the built-in that mmcv/mmengine code would catch, so
``except KeyError`` around ``cfg.missing`` keeps working.

Errors carry their parts as fields (``location``, ``key_path``, ``message``,
``hint``, ``details``) and render them like a compiler does, so editors can jump
to the line::

    configs/exp/r50.py:14: model.backbone: cannot merge a dict into a base value of type int
      base value set at configs/_base_/models/resnet.py:6
      hint: put `_delete_=True` in this dict to replace the base value
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from trackcfg.config.location import Location

__all__ = [
    "ArgumentError",
    "ArgumentKeyError",
    "ArgumentTypeError",
    "ArgumentValueError",
    "CanonicalizationError",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointFormatError",
    "ConfigAttributeError",
    "ConfigBaseError",
    "ConfigBuildError",
    "ConfigError",
    "ConfigFileNotFoundError",
    "ConfigImportError",
    "ConfigKeyError",
    "ConfigLimitError",
    "ConfigMergeError",
    "ConfigOptionError",
    "ConfigSubstitutionError",
    "ConfigSyntaxError",
    "ConfigWarning",
    "DistributedError",
    "DuplicateRegistrationError",
    "HashMismatchError",
    "HookRegistrationError",
    "JournalBusyError",
    "PortInUseError",
    "PreemptedError",
    "RegistrationError",
    "RegistryError",
    "RunLeaseError",
    "RunNotFoundError",
    "RunTerminatedError",
    "RunnerError",
    "SnapshotError",
    "TrackcfgError",
    "TrackingError",
    "TrainingStopped",
    "UnknownTypeError",
    "VerificationError",
    "WorkDirError",
    "WorldSizeMismatchError",
    "first_line",
]


class TrackcfgError(Exception):
    """Root of every error trackcfg raises on purpose.

    Args:
        message: What went wrong and what was expected, without the location prefix.
        location: Where it went wrong (file and line), when known.
        key_path: The config key path involved, formatted (``model.backbone.depth``).
        hint: One sentence on how to fix it.
        details: Extra indented lines (e.g. "base value set at ...").
    """

    #: Process exit status when the CLI reports this error.
    exit_code: ClassVar[int] = 2

    def __init__(
        self,
        message: str,
        *,
        location: Location | None = None,
        key_path: str | None = None,
        hint: str | None = None,
        details: Sequence[str] = (),
    ) -> None:
        self.message = message
        self.location = location
        self.key_path = key_path
        self.hint = hint
        self.details = tuple(details)
        super().__init__(message)

    def __str__(self) -> str:
        head = ""
        if self.location is not None:
            head += f"{self.location}: "
        if self.key_path:
            head += f"{self.key_path}: "
        lines = [head + self.message]
        lines.extend(f"  {d}" for d in self.details)
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only fields must survive pickling (multiprocessing, DataLoader workers).
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[TrackcfgError], message: str, state: dict[str, object]) -> TrackcfgError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class ConfigError(TrackcfgError):
    """A config file, option or value is wrong."""


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """The config file given to `Config.fromfile` does not exist."""


class ConfigSyntaxError(ConfigError):
    """A config file does not parse as Python, JSON or YAML."""


class ConfigBaseError(ConfigError):
    """A `_base_` file is missing, included cyclically, or two bases define one key."""


class ConfigMergeError(ConfigError):
    """Merging a child into its base is impossible (e.g. `_delete_` misuse)."""


class ConfigSubstitutionError(ConfigError):
    """A `{{ ... }}` placeholder names an unknown variable or `_base_` path."""


class ConfigImportError(ConfigError, ImportError):
    """A module listed in `custom_imports` failed to import."""


class ConfigOptionError(ConfigError, ValueError):
    """A `--cfg-options` / `merge_from_dict` entry is malformed."""


class CanonicalizationError(ConfigError, TypeError):
    """A resolved config holds a value the content hash cannot encode."""


class ConfigLimitError(ConfigError):
    """A config value past a bound of `trackcfg.config.limits` (depth, alias expansion)."""


class ConfigWarning(UserWarning):
    """A config loads, but probably not as its author meant (e.g. a function it drops)."""


class ConfigKeyError(ConfigError, KeyError):
    """A key path that does not exist; suggests close matches."""

    def __str__(self) -> str:
        # KeyError quotes its argument; ours is a full message.
        return TrackcfgError.__str__(self)


class ConfigAttributeError(ConfigKeyError, AttributeError):
    """Attribute access to a missing key of a `ConfigDict`."""


class ConfigBuildError(ConfigError):
    """Building an object the config names failed: its constructor raised.

    Raised by `trackcfg.runner.train.train` with the key path and the file and line
    that set the section's ``type``, ``from`` the constructor's own exception (its
    type and traceback stay on ``__cause__``; ``--debug`` prints them).
    """


class ArgumentError(ConfigError):
    """An object built from a config (a hook) rejects one of its arguments.

    Raised by the constructor (or a later method) with the argument's key path
    relative to the object's own config (``warmup_iters``). Whoever knows where
    that config sits makes it absolute once, with `locate`: `build_from_cfg` and
    the runner's hook registration (``lr_config.warmup_iters``), and the code
    holding the config adds the file and line the same way.
    """

    #: Whether `locate` has prefixed the key path (it does so once).
    located: bool = False

    def locate(self, key_path: str | None = None, location: Location | None = None) -> None:
        """Put the key path under ``key_path`` (once) and set ``location`` if none is known.

        Example:
            >>> err = ArgumentValueError("must be positive, got 0", key_path="warmup_iters")
            >>> err.locate("lr_config")
            >>> err.locate("runner")  # already located: unchanged
            >>> str(err)
            'lr_config.warmup_iters: must be positive, got 0'
        """
        if key_path is not None and not self.located:
            self.key_path = f"{key_path}.{self.key_path}" if self.key_path else key_path
            self.located = True
        if self.location is None:
            self.location = location


class ArgumentValueError(ArgumentError, ValueError):
    """An argument has the right type but a value the object cannot take."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument has a type the object cannot take."""


class ArgumentKeyError(ArgumentError, KeyError):
    """A dict argument lacks an entry the object needs."""

    def __str__(self) -> str:
        return TrackcfgError.__str__(self)


class RegistryError(TrackcfgError):
    """A registry lookup or registration failed."""


class UnknownTypeError(RegistryError, KeyError):
    """`type=` names nothing registered in the registry (or its parents)."""

    def __str__(self) -> str:
        return TrackcfgError.__str__(self)


class DuplicateRegistrationError(RegistryError, KeyError):
    """A name is already registered and `force` was not given."""

    def __str__(self) -> str:
        return TrackcfgError.__str__(self)


class RunnerError(TrackcfgError):
    """The runner was set up or driven wrongly."""


class HookRegistrationError(RunnerError, TypeError):
    """A hook is rejected at registration: unknown stage method, bad priority, not a Hook."""


class WorkDirError(RunnerError, OSError):
    """The work dir cannot be created or written (read-only, permissions, a file in the way)."""


class DistributedError(RunnerError):
    """Distributed training cannot be set up or continued.

    No backend for the devices at hand (NCCL without CUDA), no process group where
    one is needed, or ranks that disagree on something they must share.
    """


class CheckpointError(TrackcfgError):
    """A checkpoint cannot be written, found or loaded."""


class WorldSizeMismatchError(CheckpointError):
    """Resume refused: the checkpoint was saved by a job with another world size.

    Per-rank RNG streams and data positions cannot be carried over one to one; the
    message says which. Forced, the resume continues reproducibly but is no longer
    bit-identical to the uninterrupted run (and the run records that).
    """


class CheckpointCorruptError(CheckpointError):
    """A checkpoint's bytes do not match its recorded digest, or it is torn."""


class CheckpointFormatError(CheckpointCorruptError, ValueError):
    """A checkpoint loads, but a part trackcfg wrote (counters, RNG, log buffer) is malformed."""


class TrackingError(TrackcfgError):
    """Talking to the tracking store failed, or a run is not usable."""


class RunNotFoundError(TrackingError):
    """No run with the given id exists in the tracking store."""


class SnapshotError(TrackingError):
    """A run has no trackcfg snapshot, or the snapshot is incomplete."""


class HashMismatchError(TrackingError):
    """Resume refused: the config no longer hashes like the run's tag."""


class RunLeaseError(TrackingError):
    """Another trainer holds the run's lease: a run has one trainer at a time."""


class PortInUseError(TrackingError, OSError):
    """``trackcfg ui`` cannot listen on the port asked for (another server has it)."""


class JournalBusyError(TrackingError, TimeoutError):
    """Another process kept delivering a metric journal longer than we could wait."""


class VerificationError(TrackingError):
    """``trackcfg verify`` could not re-run a run (exit 2): its sources, config or store."""


class RegistrationError(TrackingError):
    """``trackcfg register`` cannot make a model of a run's checkpoint (none chosen, or
    one that does not fit the model its config builds, or a model that cannot be exported)."""


class RunTerminatedError(KeyboardInterrupt):
    """Training stopped by SIGTERM (the run is marked KILLED); ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


class PreemptedError(RunTerminatedError):
    """Training stopped on a preemption signal after saving a complete checkpoint.

    Raised on every rank at the same iteration boundary (the ranks agreed through one
    collective), once the checkpoint of that boundary is durably written. The run is
    KILLED and marked preempted; the process exits with the requeue exit code.

    Attributes:
        signum: The signal that asked for it.
        epoch: Epochs completed at the boundary (``runner.epoch``).
        iter: Iterations completed at the boundary (``runner.iter``).
    """

    def __init__(self, signum: int, epoch: int, iter: int) -> None:
        KeyboardInterrupt.__init__(
            self, f"preempted by signal {signum} after iteration {iter}: checkpoint saved"
        )
        self.signum = signum
        self.epoch = epoch
        self.iter = iter


class TrainingStopped(KeyboardInterrupt):
    """Training ended early on purpose by a hook (``trackcfg verify``); the run is KILLED.

    ``reason`` is the one-line why (recorded as the run's error).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of ``error``'s message (its type name when empty), cut at ``limit``.

    For one-line warnings about failures that are retried: MLflow's errors carry
    whole HTTP responses and tracebacks.

    Example:
        >>> first_line(ConnectionError("refused\\nretry 1\\nretry 2"))
        'refused'
    """
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[:limit] + "…"
