"""``trackcfg verify``: re-run a tracked run from its recorded sources and compare bit for bit.

Steps: read the original run (status, metric history, per-checkpoint records,
environment) from the store once; re-create its sources exactly as ``reproduce``
does (`trackcfg.session.reproduction`: worktree at the recorded commit, recorded
patch, lineage files, config hash checked); train there, in this process, as a
*new* run of the same store tagged ``trackcfg.verifies=<RUN_ID>``; store the
verdict on the original (``trackcfg.verified`` = ``bitwise`` / ``diverged@<step>``
/ ``partial@<steps>``, with the verifying run's id and the time).

The comparison is streamed, not a second pass: `_ComparisonHook` receives every
scalar the run's logger hook journals (``MlflowLoggerHook.add_listener``) and every
durably written checkpoint (``add_checkpoint_listener``), compares each with the
original's record as it comes, and stops training (`TrainingStopped`; the
verifying run ends KILLED with the reason as its error) at the first difference
or after ``steps`` iterations. Metrics compare exactly (a float equals a float;
NaN equals NaN); checkpoints compare by their training-state digest
(`trackcfg.runner.checkpoint.training_state_digest`), recorded per checkpoint by
the upload path (tag ``trackcfg.checkpoint.<name>``): file digests differ between
identical runs (``meta['time']``, the work dir's path, measured timings).

What cannot be re-created (no commit, a commit not in this repository, lineage
outside the project, a patch that does not apply, a config hashing differently,
a store without the run, an unfinished original without ``steps``) is a
`VerificationError` or another `TrackingError` (exit 2), never "diverged".

Training runs inside the worktree: the process's working directory and the
front of ``sys.path`` are the worktree's while it trains, so ``custom_imports``
modules come from the recorded sources. A module of the same name imported
earlier in the process (from another checkout) would be used instead; the CLI
starts a fresh process, Python callers should too.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trackcfg.errors import TrainingStopped, VerificationError
from trackcfg.runner.hooks.hook import Hook

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from trackcfg.runner.base_runner import BaseRunner
    from trackcfg.runner.checkpoint import SavedCheckpoint
    from trackcfg.session.reproduction import Reproduction
    from trackcfg.session.runs import RunResult
    from trackcfg.tracking.snapshot import Snapshot

__all__ = [
    "CheckpointMatch",
    "EnvironmentDifference",
    "MetricDifference",
    "Verification",
    "environment_differences",
    "verify",
    "verify_run",
]

_logger = logging.getLogger(__name__)

BITWISE = "bitwise"
DIVERGED = "diverged"
PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class MetricDifference:
    """The first logged value that differs (None: logged on one side only)."""

    step: int
    key: str
    original: float | None
    verifying: float | None


@dataclass(frozen=True, slots=True)
class CheckpointMatch:
    """One checkpoint of the verifying run against the original's record of it.

    Attributes:
        name: The file name (``epoch_2.pth``).
        iter: Completed iterations when it was taken.
        same: True/False; None when the original recorded no training-state digest
            for it (a run made before they were recorded).
    """

    name: str
    iter: int
    same: bool | None


@dataclass(frozen=True, slots=True)
class EnvironmentDifference:
    """One environment entry (``packages.torch``, ``cpu``) whose value differs."""

    key: str
    original: object
    verifying: object


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of `verify_run`.

    Attributes:
        run_id: The run verified.
        verifying_run_id: The new run that re-trained it.
        verdict: ``bitwise``, ``diverged`` or ``partial`` (identical as far as it ran).
        tag: The value stored as ``trackcfg.verified`` on the original.
        steps: Iterations the verifying run trained.
        metrics_compared: Logged values compared.
        difference: The first metric that differs, or None.
        diverged_at: The step of the first difference (metric or checkpoint), or None.
        checkpoints: Every checkpoint of the verifying run, compared, in order.
        environment: What differs between the original's recorded environment and
            this one.
        config_notes: Settings of the config that allow runs to differ (no seed,
            determinism off); its hash is the original's (checked).
        config_hash: The config hash of both runs.
        reproduction: The worktree the run was re-created in.
        kept: Whether the worktree (and the verifying run's work dir) was kept.
        time_ms: When the verdict was stored (ms since the epoch).
    """

    run_id: str
    verifying_run_id: str
    verdict: str
    tag: str
    steps: int
    metrics_compared: int
    difference: MetricDifference | None
    diverged_at: int | None
    checkpoints: tuple[CheckpointMatch, ...]
    environment: tuple[EnvironmentDifference, ...]
    config_notes: tuple[str, ...]
    config_hash: str
    reproduction: Reproduction
    kept: bool
    time_ms: int

    @property
    def exit_code(self) -> int:
        """0 identical (``bitwise`` or ``partial``), 1 diverged, as diff(1)."""
        return 1 if self.verdict == DIVERGED else 0

    @property
    def first_checkpoint_difference(self) -> CheckpointMatch | None:
        """The first checkpoint whose training state differs, or None."""
        return next((c for c in self.checkpoints if c.same is False), None)


# -- the original run, read once ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Original:
    run_id: str
    status: str
    experiment: str
    history: Mapping[int, Mapping[str, float]]  # step -> key -> value
    checkpoints: Mapping[str, tuple[int, str | None]]  # file name -> (iter, state digest)

    @property
    def last_step(self) -> int:
        return max(self.history, default=0)


def _read_original(client: MlflowClient, run_id: str) -> _Original:
    from trackcfg.tracking import mlflow_run as mr

    run = mr.get_run(client, run_id)
    tags = dict(run.data.tags)
    if mr.TAG_VERIFIES in tags:
        raise VerificationError(
            f"run {run_id} is itself a verifying run (of {tags[mr.TAG_VERIFIES]})",
            hint=f"verify the original: trackcfg verify {tags[mr.TAG_VERIFIES]}",
        )
    history: dict[int, dict[str, float]] = {}
    for key in sorted(run.data.metrics):
        for metric in client.get_metric_history(run_id, key):
            # A resumed run holds every step once; should a step be there twice, the
            # first value logged is the one training went on from.
            history.setdefault(int(metric.step), {}).setdefault(key, float(metric.value))
    checkpoints: dict[str, tuple[int, str | None]] = {}
    for key, value in tags.items():
        if key.startswith(mr.TAG_CHECKPOINT_PREFIX):
            fields = dict(item.split("=", 1) for item in value.split() if "=" in item)
            if fields.get("iter", "").isdigit():
                name = key[len(mr.TAG_CHECKPOINT_PREFIX) :]
                checkpoints[name] = (int(fields["iter"]), fields.get("state"))
    experiment = client.get_experiment(run.info.experiment_id).name
    return _Original(run_id, run.info.status, experiment, history, checkpoints)


# -- the comparison, in the training process -----------------------------------------


class _ComparisonHook(Hook):
    """Compare what the verifying run logs and checkpoints with the original, as it comes.

    The last hook of every stage (``LOWEST``), so at an iteration's end the logger
    hooks have logged (and this hook compared) before it stops training.
    """

    priority = "LOWEST"

    def __init__(self, original: _Original, steps: int | None) -> None:
        self.original = original
        self.steps = steps
        self.compared = 0
        self.difference: MetricDifference | None = None
        self.unrecorded: int | None = None  # a step the original's record lacks entirely
        self.logged: set[int] = set()
        self.trained = 0  # iterations trained
        self.checkpoints: list[CheckpointMatch] = []
        self._lock = threading.Lock()  # checkpoints come from the writer thread
        self._runner: BaseRunner | None = None

    def before_run(self, runner: BaseRunner) -> None:
        from trackcfg.session.hooks import MlflowLoggerHook

        self._runner = runner
        loggers = [h for h in runner.hooks if isinstance(h, MlflowLoggerHook)]
        if not loggers:
            raise VerificationError("the verifying run has no MLflow logger hook to compare")
        loggers[0].add_listener(self.on_metrics)
        runner.add_checkpoint_listener(self.on_checkpoint)

    def on_metrics(self, tags: Mapping[str, float], step: int) -> None:
        """Compare one step's logged scalars; stop training at the first difference."""
        expected = self.original.history.get(step)
        self.logged.add(step)
        if self._runner is not None and self._runner.mode == "train":
            self.trained = self._runner.iter + 1  # logged after its iteration
        if expected is None:
            # The same config logs at the same steps: a step missing from the original's
            # record as a whole means its record is incomplete, not that runs differ.
            self.unrecorded = step
            raise TrainingStopped(f"trackcfg verify: the original recorded nothing at {step}")
        for key in sorted(set(tags) | set(expected)):
            mine, theirs = tags.get(key), expected.get(key)
            self.compared += 1
            if not _same_value(theirs, mine):
                self.difference = MetricDifference(step, key, theirs, mine)
                raise TrainingStopped(f"trackcfg verify: diverged at iter {step} ({key})")

    def on_checkpoint(self, saved: SavedCheckpoint) -> None:
        """Compare a durably written checkpoint's training state (on the writer thread)."""
        recorded = self.original.checkpoints.get(saved.path.name)
        same: bool | None = None
        if recorded is not None and recorded[1]:
            same = recorded == (saved.iter, saved.state_digest)
        elif recorded is not None and recorded[0] != saved.iter:
            same = False
        with self._lock:
            self.checkpoints.append(CheckpointMatch(saved.path.name, saved.iter, same))

    def checkpoint_difference(self) -> CheckpointMatch | None:
        with self._lock:
            return next((c for c in self.checkpoints if c.same is False), None)

    def after_train_iter(self, runner: BaseRunner) -> None:
        self.trained = runner.iter + 1
        self._check(runner)
        if self.steps is not None and self.trained >= self.steps:
            raise TrainingStopped(f"trackcfg verify: stopped after {self.trained} iterations")

    def after_train_epoch(self, runner: BaseRunner) -> None:
        self._check(runner)

    def after_val_epoch(self, runner: BaseRunner) -> None:
        self._check(runner)

    def _check(self, runner: BaseRunner) -> None:
        differing = self.checkpoint_difference()
        if differing is not None:
            raise TrainingStopped(
                f"trackcfg verify: checkpoint {differing.name} (iter {differing.iter}) differs"
            )


def _same_value(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


# -- the environment ------------------------------------------------------------------


def environment_differences(
    original: Mapping[str, object], verifying: Mapping[str, object]
) -> tuple[EnvironmentDifference, ...]:
    """Every entry of two ``environment.json`` records that differs, nested keys dotted.

    An entry the original did not record (an older trackcfg) is not a difference.

    Example:
        >>> environment_differences(
        ...     {"packages": {"torch": "2.12.1"}, "python": "3.11"},
        ...     {"packages": {"torch": "2.13.0"}, "python": "3.11", "cpu": "EPYC"},
        ... )
        (EnvironmentDifference(key='packages.torch', original='2.12.1', verifying='2.13.0'),)
    """
    a, b = _flatten(original), _flatten(verifying)
    return tuple(
        EnvironmentDifference(key, a[key], b.get(key)) for key in sorted(a) if a[key] != b.get(key)
    )


def _flatten(tree: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def _config_notes(config: Mapping[str, object]) -> tuple[str, ...]:
    """Config settings under which two runs of one config may differ."""
    notes = []
    if config.get("seed") is None:
        notes.append("seed is not set: each run draws its own")
    if not config.get("deterministic", False):
        notes.append("deterministic is False: non-deterministic algorithms are allowed")
    return tuple(notes)


# -- the entry point --------------------------------------------------------------------


def verify_run(
    run_id: str,
    directory: Path | str | None = None,
    *,
    steps: int | None = None,
    keep: bool = False,
    cwd: Path | None = None,
    on_start: Callable[[RunResult], None] | None = None,
) -> Verification:
    """Re-run ``run_id`` from its recorded sources and compare it bit for bit (``trackcfg.verify``).

    What ``trackcfg verify`` does::

        import trackcfg
        result = trackcfg.verify(run_id)
        assert result.verdict == "bitwise", result.difference

    Args:
        run_id: The run to verify (in the store ``trackcfg run`` uses:
            ``MLFLOW_TRACKING_URI``, else ``./mlflow.db``).
        directory: Where to re-create the sources (new or empty); default
            ``<repo>-<run id[:8]>`` beside the repository, as ``reproduce``.
        steps: Stop after this many iterations (verdict ``partial@<steps>`` when
            training had more to go).
        keep: Keep the worktree and the verifying run's work dir (``work_dirs/verify``
            in it); by default both are removed at the end.
        cwd: A directory of the repository the run was made from (default: cwd).
        on_start: Called with the verifying run once it is RUNNING.

    Returns:
        The verdict, also stored on the original run as tags.

    Raises:
        RunNotFoundError: No such run.
        SnapshotError: The run has no usable snapshot, or records no commit.
        VerificationError: The run cannot be re-run as it was: unfinished (without
            ``steps``), a verifying run itself, or the config no longer hashes alike
            with its modules imported; or the verifying run failed.
        TrackingError: The sources cannot be re-created (commit missing, patch not
            applying, hash mismatch, directory not empty).
    """
    from trackcfg.session import reproduction
    from trackcfg.session.catalog import tracking_uri
    from trackcfg.session.target import load_run_snapshot
    from trackcfg.tracking import mlflow_run as mr
    from trackcfg.tracking.sync import bound_http_retries

    if steps is not None and steps < 1:
        raise VerificationError(f"steps must be at least 1, got {steps}")
    # The training side's imports (torch above all) overlap the store's (MLflow) on
    # another thread: `trackcfg run` overlaps them in two processes, and verify's
    # cost must stay close to a re-run's.
    warming = threading.Thread(target=_import_training_side, name="trackcfg-verify-imports")
    warming.start()
    try:
        bound_http_retries()
        uri = mr.to_client_uri(_absolute(tracking_uri()))
        client = mr.open_client(uri)
        original = _read_original(client, run_id)
        if original.status != "FINISHED" and (steps is None or steps > original.last_step):
            raise VerificationError(
                f"run {run_id} is {original.status}: its record ends at iter "
                f"{original.last_step}, a complete re-run cannot be compared with it",
                hint=f"resume it first (trackcfg resume {run_id}), or compare its first "
                f"iterations with --steps N (N <= {original.last_step})",
            )
        snap = load_run_snapshot(run_id)
        target = None if directory is None else Path(directory).absolute()
        existed = target is not None and target.is_dir()
        rep = reproduction.reproduce(run_id, target, cwd, snapshot=snap)
    finally:
        warming.join()
    try:
        return _train_and_compare(client, uri, original, snap, rep, steps, keep, on_start)
    finally:
        if not keep:
            reproduction.remove_worktree(rep, cwd, keep_directory=existed)


def _import_training_side() -> None:
    import importlib

    for name in ("torch", "trackcfg.runner.train", "trackcfg.session.runs"):
        try:
            importlib.import_module(name)
        except Exception:
            # Not lost: the training side imports it again and the error surfaces there.
            continue


def _train_and_compare(
    client: MlflowClient,
    uri: str,
    original: _Original,
    snap: Snapshot,
    rep: Reproduction,
    steps: int | None,
    keep: bool,
    on_start: Callable[[RunResult], None] | None,
) -> Verification:
    from trackcfg.config.config import Config
    from trackcfg.session.runs import start_run
    from trackcfg.tracking import mlflow_run as mr
    from trackcfg.tracking.environment import capture_environment

    # Before training, as `start_run` captured the original's: training applies the
    # config's determinism settings to the process.
    now_environment = capture_environment().to_json()
    hook = _ComparisonHook(original, steps)
    started: list[RunResult] = []

    def announce(result: RunResult) -> None:
        started.append(result)
        if on_start is not None:
            on_start(result)

    with _inside(rep.directory):
        cfg = snap.load_at(rep.directory, import_custom_modules=True)
        if cfg.hash != snap.config_hash:
            raise VerificationError(
                f"{snap.config_file}: with its custom_imports imported the config hashes to "
                f"{cfg.hash}, the run's tag is {snap.config_hash}",
                hint="a module of custom_imports changes the config it is imported into",
            )
        given = Config.fromfile(
            rep.directory / snap.config_file, import_custom_modules=True, root=rep.directory
        )
        stopped: TrainingStopped | None = None
        try:
            start_run(
                given,
                options=list(snap.cfg_options),
                work_dir=rep.directory / "work_dirs" / "verify",
                experiment=original.experiment,
                tracking_uri=uri,
                on_start=announce,
                tags={mr.TAG_VERIFIES: original.run_id},
                extra_hooks=[(hook, "LOWEST")],
            )
        except TrainingStopped as caught:
            stopped = caught
        except Exception as error:
            which = f" {started[0].run_id}" if started else ""
            raise VerificationError(
                f"run {original.run_id}: the verifying run{which} failed: "
                f"{type(error).__name__}: {error}",
                hint="nothing was compared past the failure; no verdict was stored",
            ) from error
    if not started:
        raise VerificationError(f"run {original.run_id}: the verifying run never started")
    verifying = started[0]
    if hook.unrecorded is not None:
        raise VerificationError(
            f"run {original.run_id}: its record holds no metric at iter {hook.unrecorded}, "
            f"where the verifying run {verifying.run_id} logged some: the record is incomplete",
            hint="deliver what its work dir's journal still holds (`trackcfg sync`), then "
            f"verify again, or compare the steps before it with --steps {hook.unrecorded - 1}",
        )
    environment = environment_differences(snap.environment, now_environment)
    difference = hook.difference
    if difference is None and stopped is None:
        # Trained to the end: whatever the original logged and this run did not differs.
        difference = _first_missing(original, hook.logged)
    elif difference is None and stopped is not None:
        difference = _first_missing(original, hook.logged, up_to=hook.trained)
    differing = hook.checkpoint_difference()
    candidates = [d for d in (difference.step if difference else None,) if d is not None]
    if differing is not None:
        candidates.append(differing.iter)
    diverged_at = min(candidates) if candidates else None
    if diverged_at is not None:
        verdict, tag = DIVERGED, f"diverged@{diverged_at}"
    elif stopped is not None:
        verdict, tag = PARTIAL, f"partial@{hook.trained}"
    else:
        verdict, tag = BITWISE, BITWISE
    now = int(time.time() * 1000)
    mr.set_tags(
        client,
        original.run_id,
        {
            mr.TAG_VERIFIED: tag,
            mr.TAG_VERIFIED_BY: verifying.run_id,
            mr.TAG_VERIFIED_TIME: str(now),
        },
    )
    return Verification(
        run_id=original.run_id,
        verifying_run_id=verifying.run_id,
        verdict=verdict,
        tag=tag,
        steps=hook.trained,
        metrics_compared=hook.compared,
        difference=difference,
        diverged_at=diverged_at,
        checkpoints=tuple(sorted(hook.checkpoints, key=lambda c: c.iter)),
        environment=environment,
        config_notes=_config_notes(snap.config),
        config_hash=snap.config_hash,
        reproduction=rep,
        kept=keep,
        time_ms=now,
    )


def _first_missing(
    original: _Original, logged: set[int], up_to: int | None = None
) -> MetricDifference | None:
    """The first step the original logged and the verifying run did not (up to ``up_to``)."""
    for step in sorted(original.history):
        if up_to is not None and step > up_to:
            return None
        if step not in logged:
            key = min(original.history[step])
            return MetricDifference(step, key, original.history[step][key], None)
    return None


@contextlib.contextmanager
def _inside(directory: Path) -> Iterator[None]:
    """Work in ``directory``, with its modules first on ``sys.path`` (restored after)."""
    previous = Path.cwd()
    entry = str(directory)
    os.chdir(directory)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        os.chdir(previous)
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _absolute(uri: str) -> str:
    # Training runs in the worktree: a relative SQLite path would open another store.
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + Path(uri[len(prefix) :]).absolute().as_posix()
    return uri


#: The public Python name (``trackcfg.verify``) of what ``trackcfg verify`` does.
verify = verify_run
