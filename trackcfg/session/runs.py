"""Tracked runs end to end: what ``trackcfg run``, ``resume`` and ``sync`` do.

`start_run` starts the tracking agent first (a child process that captures the
project's git state, imports MLflow and opens the store while this one starts
training; see `trackcfg.tracking.agent`), resolves the config, hashes it and
writes the snapshot locally; the agent creates the MLflow run (tags, name,
params) and uploads the snapshot with the git state added. Training runs
``train(..., extra_hooks=...)`` with the MLflow hooks, so a config never has
to mention MLflow; the first iteration waits until the agent reports the run
created and its snapshot stored (in practice it is ready long before: the
trainer is still importing torch and building its model). The run ends
FINISHED, FAILED (the error is a tag and the run's note) or KILLED (SIGINT, a
repeated SIGTERM, a preemption, or the trainer died and its agent says so).

Preemption (`trackcfg.runner.preemption`): SIGTERM, and the signals
``TRACKCFG_PREEMPT_SIGNALS`` names (``trackcfg run --preempt-signal USR1``), only
set a flag; at the next training iteration boundary every rank agrees, one
checkpoint of that boundary is written and handed to the agent, and
`PreemptedError` stops training. The run's end then waits for that checkpoint's
upload (within `PREEMPTION_BUDGET` of the signal: inside a 30 s grace) and the
run ends KILLED with the tag ``trackcfg.preempted`` (``iter=<i> epoch=<e>
signal=<name>``); ``trackcfg resume`` continues from that checkpoint, bit for
bit. A second signal of the same kind stops at once (`RunTerminatedError`).
Ranks other than 0 register the same hooks (the agreement is a collective).

`resume_run` needs nothing but the tracking store: it reads the run's snapshot,
re-resolves the config from it and compares the hash with the run's tag (a
mismatch is refused with the differing keys unless forced; forced changes are
recorded on the run), downloads the newest complete checkpoint, verifies its
digest and continues the *same* run. Metric steps the run already holds (in the
store or in a local journal) are not logged again, so the history has every
step once.

Before it resumes, `resume_run` lets `trackcfg.tracking.sync.sync` deliver what a
killed run's journal still holds (waiting for the run's agent if it still works).

A full disk loses no metric silently: the journal keeps what it cannot write
and retries; what it still cannot write when the run ends goes to the tracking
agent with the run's end (`MetricJournal.unjournaled`). Metrics that neither
the disk nor the store took make a run that finished training end with a
`TrackingError` naming how many were lost (exit 2 at the command line).

Under torchrun or srun (``trackcfg.session.cluster``) a job is one run: rank 0
tracks it and hands the resolved config, the work dir and, on resume, the
checkpoint's bytes to the other ranks, which train untracked.

These functions set MLflow's HTTP retry settings for this process when the user
has not (`trackcfg.tracking.sync.HTTP_DEFAULTS`): MLflow's own defaults retry one
request for minutes inside one call, which would hold back trackcfg's own
retry-with-backoff after an outage.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from trackcfg.errors import (
    HashMismatchError,
    PreemptedError,
    TrackingError,
    WorkDirError,
)
from trackcfg.runner.hooks.hook import Hook
from trackcfg.session import cluster
from trackcfg.session.checkpoints import artifact_name, download_resume_checkpoint
from trackcfg.session.config_keys import accepted_keys, load_config
from trackcfg.tracking.mlflow_run import store_errors
from trackcfg.tracking.redaction import redact_url
from trackcfg.tracking.sync import bound_http_retries, sync

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from trackcfg.config.config import Config
    from trackcfg.runner.base_runner import BaseRunner
    from trackcfg.runner.checkpoint import SavedCheckpoint
    from trackcfg.runner.plan import TrainingPlan
    from trackcfg.runner.preemption import PreemptionFlag
    from trackcfg.session.initial_weights import InitialWeights
    from trackcfg.tracking.agent.client import AgentReady, TrackingAgent
    from trackcfg.tracking.agent.journal import MetricJournal, MetricRecord

__all__ = ["RunResult", "resume", "resume_run", "run", "start_run"]

_logger = logging.getLogger(__name__)


#: Seconds a finished run waits for metrics to reach the store before leaving them
#: to `sync` (the journal keeps them), and for checkpoint uploads.
DELIVERY_TIMEOUT = 30.0
UPLOAD_TIMEOUT = 120.0
#: The same bounds for a run that failed or was killed: report it, do not linger.
ABORT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of `start_run` / `resume_run`.

    Attributes:
        run_id: The MLflow run id.
        run_name: ``<config stem>@<hash[:8]>``.
        experiment_id: The run's experiment.
        config_hash: The resolved config's hash (the run's tag).
        tracking_uri: The store the run lives in, redacted (no credentials: it is
            shown to people and recorded in the journal).
        work_dir: Checkpoints, logs and the metric journal.
        status: FINISHED (KILLED/FAILED raise instead of returning).
        metrics_pending: Metrics still only in the journal (``trackcfg sync`` sends them).
        checkpoints_pending: Checkpoints not uploaded (``trackcfg sync`` uploads them).
    """

    run_id: str
    run_name: str
    experiment_id: str
    config_hash: str
    tracking_uri: str
    work_dir: Path
    status: str
    metrics_pending: int = 0
    checkpoints_pending: int = 0


# -- public entry points -----------------------------------------------------------


def start_run(
    config_path: str | Path | Config,
    options: Sequence[str] = (),
    work_dir: Path | str | None = None,
    experiment: str | None = None,
    *,
    tracking_uri: str | None = None,
    on_start: Callable[[RunResult], None] | None = None,
    tags: Mapping[str, str] | None = None,
    extra_hooks: Sequence[tuple[Hook, str]] = (),
) -> RunResult:
    """Train ``config_path`` as a new tracked MLflow run (``trackcfg.run``).

    What ``trackcfg run`` does, callable from a user's own ``tools/train.py``::

        import trackcfg
        result = trackcfg.run("configs/digits/cnn_sgd_10e.py", ["optimizer.lr=0.05"])
        trackcfg.resume(result.run_id)  # after a crash: the same run, bit for bit

    Args:
        config_path: The config file, or a `Config` loaded from one
            (``Config.fromfile``; its lineage is the snapshot's).
        options: ``--cfg-options`` strings (``k=v``), as given on the command line;
            applied to a given `Config` too.
        work_dir: Checkpoints and logs; default ``cfg.work_dir``, else a new
            ``work_dirs/<config stem>/<time>-<hash[:8]>`` of the run's own.
        experiment: MLflow experiment name (created when missing); default
            ``trackcfg``.
        tracking_uri: The store; default ``MLFLOW_TRACKING_URI``, else
            ``sqlite:///<cwd>/mlflow.db``.
        on_start: Called with the RUNNING run once its snapshot is stored, before
            the first iteration: the moment a caller can tell users the run id.
        tags: More tags for the new run (``trackcfg verify`` marks its run).
        extra_hooks: ``(hook, priority)`` pairs trained with, after the MLflow hooks.

    Returns:
        The finished run.

    Raises:
        ConfigError: the config does not load.
        TrackingError: the store cannot be used; or training finished but metrics
            were lost (neither the work dir's disk nor the store took them).
        RunTerminatedError, KeyboardInterrupt: stopped by a signal (run KILLED).
        Exception: whatever training raised (run FAILED, error recorded).
        DistributedError: under torchrun/srun, the process group cannot be formed,
            or (on the other ranks) rank 0 failed before training.
    """
    given, config_path = _given_config(config_path)

    def load() -> Config:
        if given is None:
            return load_config(config_path, options, import_custom_modules=True)
        if options:
            from trackcfg.config.options import check_option_keys, parse_cfg_options

            parsed = parse_cfg_options(list(options))
            given.merge_from_dict(check_option_keys(given.to_dict(), parsed, accepted_keys))
        return given

    cluster.join_job(given if given is not None else config_path, options)
    if not cluster.is_rank_zero():
        return _follow()
    with _handing_off() as hand_off:
        return _start_rank_zero(
            load,
            config_path,
            options,
            work_dir,
            experiment,
            hand_off,
            tracking_uri=tracking_uri,
            on_start=on_start,
            tags=tags,
            extra_hooks=extra_hooks,
        )


def _start_rank_zero(
    load: Callable[[], Config],
    config_path: Path,
    options: Sequence[str],
    work_dir: Path | str | None,
    experiment: str | None,
    hand_off: Callable[[cluster.Handoff, Path | None], None],
    *,
    tracking_uri: str | None,
    on_start: Callable[[RunResult], None] | None,
    tags: Mapping[str, str] | None,
    extra_hooks: Sequence[tuple[Hook, str]],
) -> RunResult:
    """`start_run` on rank 0 (or alone): the run, its snapshot and its agent are this rank's."""
    from trackcfg.tracking import mlflow_run as mr
    from trackcfg.tracking.agent.client import TrackingAgent
    from trackcfg.tracking.agent.lease import new_lease
    from trackcfg.tracking.environment import capture_environment
    from trackcfg.tracking.snapshot import leaf_config_file, write_snapshot

    bound_http_retries()
    uri = mr.to_client_uri(tracking_uri or mr.resolve_tracking_uri())
    # First of all: the agent's git capture, MLflow import and store opening overlap
    # everything below.
    agent = TrackingAgent.spawn(
        uri, project=Path(config_path).parent, debug=_logger.isEnabledFor(logging.DEBUG)
    )
    fresh: Path | None = None  # a work dir made for this run: removed if no run comes of it
    try:
        cfg = load()
        plan = _plan(cfg)
        config_hash = cfg.hash
        if work_dir is None and plan.work_dir is None:
            # Under torchrun too: the other ranks get this one from rank 0.
            work = fresh = _new_work_dir(config_path, config_hash)
        else:
            work = _work_dir(plan, config_path, work_dir)
        _prepare_work_dir(work)  # before the agent creates a run that could not train
        config_file = leaf_config_file(cfg.lineage)
        name = mr.run_name(config_file, config_hash)
        tags = {
            mr.TAG_CONFIG_HASH: config_hash,
            mr.TAG_LINEAGE_HASH: cfg.lineage_hash,
            mr.TAG_CONFIG_FILE: config_file,
            mr.TAG_WORK_DIR: str(work),
            **(tags or {}),
        }  # and the git tags, which the agent adds
        job = cluster.job_identity()
        if job.key is not None:  # how a restarted job finds this run
            tags[cluster.TAG_JOB_KEY] = job.key
        initial = _initial_weights(cfg, uri, work)
        if initial is not None:
            tags[mr.TAG_LOAD_FROM] = initial.spec
            tags[mr.TAG_LOAD_FROM_DIGEST] = initial.digest
        flat = mr.flatten_params(cfg.to_dict())
        (work / _STAGING).mkdir(parents=True, exist_ok=True)
        staged = write_snapshot(
            Path(tempfile.mkdtemp(prefix="snapshot-", dir=work / _STAGING)) / "trackcfg",
            cfg,
            cfg_options=list(options),
            git=None,  # the agent adds it
            environment=capture_environment(),
        )
    except BaseException:
        agent.abandon()
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
        raise
    hand_off(
        cluster.Handoff(
            canonical=cfg.canonical_bytes(),
            config_hash=config_hash,
            filename=str(cfg.filename or config_path),
            work_dir=str(work),
            run_name=name,
            tracking_uri=redact_url(uri),
        ),
        None,
    )

    def create() -> None:
        # Only once everything is built (the first hook's before_run): a config that
        # cannot be built, or a run stopped before training, leaves no run in the store.
        agent.start(
            experiment=experiment or mr.DEFAULT_EXPERIMENT,
            name=name,
            tags=tags,
            params=flat.params,
            truncated=flat.truncated,
            snapshot=staged,
            work_dir=work,
            keep_last=plan.keep_last,
            lease=new_lease(),  # a new run: nobody else can hold it yet
        )

    def started(ready: AgentReady) -> RunResult:
        return RunResult(
            ready.run_id, name, ready.experiment_id, config_hash, redact_url(uri), work, "RUNNING"
        )

    try:
        return _train_tracked(
            cfg,
            plan,
            agent,
            work,
            started,
            on_start,
            resume_from=None,
            load_from=None if initial is None else initial.path,
            extra_hooks=extra_hooks,
            create=create,
        )
    finally:
        if not agent.started:  # no run was created: leave no trace of it either
            shutil.rmtree(fresh or staged.parent, ignore_errors=True)


def resume_run(
    run_id: str,
    work_dir: Path | str | None = None,
    force: bool = False,
    *,
    tracking_uri: str | None = None,
    config_path: str | Path | None = None,
    options: Sequence[str] = (),
    on_start: Callable[[RunResult], None] | None = None,
    checkpoint: str | None = None,
    lease_wait: float = 0.0,
    allow_world_size_change: bool = False,
) -> RunResult:
    """Continue run ``run_id`` from its newest complete checkpoint, in the same run.

    Works with nothing but the tracking store: the config comes from the run's
    snapshot, the checkpoint from its artifacts. Given ``config_path`` (``trackcfg
    run CONFIG --resume RUN_ID``), the config is resolved from that file and
    ``options`` instead, and must hash like the run's tag too. When the killed
    process's tracking agent is still delivering on this machine, resume waits
    for it first.

    The newest complete checkpoint is the one the run's pointer names; when its
    stored bytes do not verify, resume warns and falls back to the newest older
    stored checkpoint that does. A run has one trainer at a time: resume takes the
    run's lease (`trackcfg.tracking.agent.lease`) before it changes anything.

    Args:
        run_id: The MLflow run to continue.
        work_dir: Where to continue; default the run's own work dir when it still
            exists, else ``work_dirs/<run name>-<run id[:8]>``.
        force: Continue even if the config no longer hashes like the run's tag
            (the differing keys are recorded on the run: tag
            ``trackcfg.forced_changes`` and the run's note).
        tracking_uri: The store; default as `start_run`.
        config_path: Resolve the config from this file instead of the snapshot.
        options: ``--cfg-options`` strings applied to ``config_path``.
        on_start: As in `start_run`: called once the run is RUNNING again.
        checkpoint: Resume from this stored checkpoint (``epoch_3.pth`` or
            ``checkpoints/epoch_3.pth``) instead of the newest one.
        lease_wait: Seconds to wait for a lease another trainer holds (a restarted
            cluster job: its predecessor's host may be gone); default: refuse at once.
        allow_world_size_change: Continue a checkpoint saved by a job of another world
            size: reproducible, no longer bit-identical (tag ``trackcfg.world_size_change``
            and the run's note say so). Refused by default, before the run is touched.

    Returns:
        The finished run.

    Raises:
        RunNotFoundError: no such run.
        RunLeaseError: another trainer holds the run.
        SnapshotError: the run has no usable snapshot.
        HashMismatchError: the config hashes differently and ``force`` is False.
        CheckpointError: the chosen checkpoint is not stored.
        CheckpointCorruptError: no stored checkpoint (or not the chosen one) verifies.
        WorldSizeMismatchError: the checkpoint was saved by another world size and
            ``allow_world_size_change`` is False.
        TrackingError: training finished but metrics were lost (as `start_run`).
        DistributedError: as `start_run`; or the run's ``dist_params.backend`` is not
            the process group's (a group made before the config was known).
    """
    cluster.join_job()
    if not cluster.is_rank_zero():
        return _follow()
    with _handing_off() as hand_off:
        return _resume_rank_zero(
            run_id,
            work_dir,
            force,
            hand_off,
            tracking_uri=tracking_uri,
            config_path=config_path,
            options=options,
            on_start=on_start,
            checkpoint=checkpoint,
            lease_wait=lease_wait,
            allow_world_size_change=allow_world_size_change,
        )


def _resume_rank_zero(
    run_id: str,
    work_dir: Path | str | None,
    force: bool,
    hand_off: Callable[[cluster.Handoff, Path | None], None],
    *,
    tracking_uri: str | None,
    config_path: str | Path | None,
    options: Sequence[str],
    on_start: Callable[[RunResult], None] | None,
    checkpoint: str | None,
    lease_wait: float,
    allow_world_size_change: bool,
) -> RunResult:
    """`resume_run` on rank 0 (or alone): the store, the lease and the agent are this rank's."""
    from trackcfg.tracking import mlflow_run as mr
    from trackcfg.tracking.agent.client import TrackingAgent
    from trackcfg.tracking.agent.lease import release_lease
    from trackcfg.tracking.snapshot import fetch_snapshot

    bound_http_retries()
    uri = mr.to_client_uri(tracking_uri or mr.resolve_tracking_uri())
    with store_errors(uri):
        client = mr.open_client(uri)
        run = mr.get_run(client, run_id)
    work = _resume_work_dir(work_dir, dict(run.data.tags), run.info.run_name or run_id, run_id)
    _prepare_work_dir(work)  # before the run is touched
    # Then the lease: a second trainer of this run must not even touch its files.
    with store_errors(uri):  # a user who may read the run but not write it ends here
        lease = cluster.acquire_lease_waiting(client, run_id, lease_wait)
    with (
        _releasing(lambda: release_lease(client, run_id, lease)) as hand_over,
        tempfile.TemporaryDirectory(prefix="trackcfg-resume-") as tmp_text,
    ):
        # A killed process's agent may still be delivering its journal and uploads:
        # wait for it (and deliver what it left) before reading the run's state.
        old_work = run.data.tags.get(mr.TAG_WORK_DIR)
        for directory in {work, *([Path(old_work).resolve()] if old_work else [])}:
            sync(directory, timeout=10.0, only=run_id)
        run = mr.get_run(client, run_id)
        tags = dict(run.data.tags)
        tmp = Path(tmp_text)
        snap = fetch_snapshot(client, run, tmp / "download")  # verified against the run's tags
        tagged_hash = tags.get(mr.TAG_CONFIG_HASH, snap.config_hash)
        if config_path is None:
            # From the verified canonical bytes: no file of the store is executed.
            source = "the config rebuilt from its snapshot"
            cfg = snap.to_config()
        else:
            source = f"{config_path}"
            cfg = load_config(config_path, options, import_custom_modules=False)
        if cfg.hash != tagged_hash:
            changes = _describe_changes(snap.config, cfg)
            if not force:
                raise HashMismatchError(
                    f"run {run_id}: {source} hashes to {cfg.hash}, the run's tag is "
                    f"{tagged_hash}; differing keys:",
                    details=changes or ["(none: the canonical form changed)"],
                    hint="pass --force to continue with this config anyway (recorded on the run)",
                )
            mr.set_tags(
                client,
                run_id,
                {
                    mr.TAG_FORCED_CHANGES: json.dumps(
                        {"from": tagged_hash, "to": cfg.hash, "changes": changes}
                    ),
                    mr.TAG_NOTE: mr.prepend_note(
                        tags.get(mr.TAG_NOTE, ""),
                        "Resumed with --force; config changes:\n" + "\n".join(changes),
                    ),
                },
            )
        if "custom_imports" in cfg.to_dict():
            # The hash check ran without importing anything; training needs the modules.
            if config_path is None:
                cfg = snap.to_config(import_custom_modules=True)
            else:
                cfg = load_config(config_path, options, import_custom_modules=True)
        cluster.check_backend(cfg)
        plan = _plan(cfg)
        resume_from = download_resume_checkpoint(client, run_id, tags, work, chosen=checkpoint)
        resized = _world_size_change(resume_from, allow_world_size_change)
        skip = _logged_steps(client, run_id, run.data.metrics.keys())
        count = int(tags.get(mr.TAG_RESUME_COUNT, "0")) + 1
        resume_tags = {
            mr.TAG_RESUME_COUNT: str(count),
            mr.TAG_RESUMED_FROM: artifact_name(resume_from) or "(start)",
            mr.TAG_WORK_DIR: str(work),
        }
        if resized is not None:
            saved, now = resized
            change = f"from={saved} to={now} checkpoint={artifact_name(resume_from)}"
            resume_tags[mr.TAG_WORLD_SIZE_CHANGE] = change
            resume_tags[mr.TAG_NOTE] = mr.prepend_note(
                tags.get(mr.TAG_NOTE, ""),
                f"Resumed with --force-world-size ({saved} -> {now} ranks): reproducible, "
                "no longer bit-identical to an uninterrupted run.",
            )
        mr.set_tags(client, run_id, resume_tags)
        client.update_run(run_id, status="RUNNING")
        agent = TrackingAgent.spawn(uri, debug=_logger.isEnabledFor(logging.DEBUG))
        agent.attach(
            run_id=run_id,
            experiment_id=run.info.experiment_id,
            work_dir=work,
            keep_last=plan.keep_last,
            lease=lease,
        )
        hand_over()  # the agent renews the lease from now on, and removes it at the end
        name = run.info.run_name or run_id

        def started(ready: AgentReady) -> RunResult:
            return RunResult(
                run_id, name, ready.experiment_id, cfg.hash, redact_url(uri), work, "RUNNING"
            )

        hand_off(
            cluster.Handoff(
                canonical=cfg.canonical_bytes(),
                config_hash=cfg.hash,
                filename=str(cfg.filename or name),
                work_dir=str(work),
                run_id=run_id,
                run_name=name,
                experiment_id=run.info.experiment_id,
                tracking_uri=redact_url(uri),
                checkpoint=None if resume_from is None else resume_from.name,
                allow_world_size_change=allow_world_size_change,
            ),
            resume_from,
        )
        return _train_tracked(
            cfg,
            plan,
            agent,
            work,
            started,
            on_start,
            resume_from=resume_from,
            skip=skip,
            allow_world_size_change=allow_world_size_change,
        )


def _world_size_change(checkpoint: Path | None, allowed: bool) -> tuple[int, int] | None:
    """``(saved, now)`` ranks when ``checkpoint`` comes from another world size, else None.

    Checked before the run is touched, so a refused resume leaves it as it was.

    Raises:
        WorldSizeMismatchError: the world sizes differ and ``allowed`` is False.
    """
    from trackcfg.runner.base_runner import saved_world_size, world_size_mismatch

    if checkpoint is None:
        return None
    saved, now = saved_world_size(checkpoint), cluster.world_size()
    if saved == now:
        return None
    if not allowed:
        raise world_size_mismatch(checkpoint, saved, now)
    return saved, now


# -- the other ranks of a job --------------------------------------------------------------


@contextlib.contextmanager
def _handing_off() -> Iterator[Callable[[cluster.Handoff, Path | None], None]]:
    """Rank 0's side of `cluster.Handoff`: what fails before the handoff fails every rank.

    Yields the function that sends the handoff (and the checkpoint to resume from);
    an exception before it was called tells the other ranks, which raise too instead
    of waiting in a collective until its timeout. After it, training's own
    collectives carry any failure (torchrun ends the job's other workers).
    """
    sent = False

    def send(handoff: cluster.Handoff, checkpoint: Path | None) -> None:
        nonlocal sent
        sent = True
        cluster.send_handoff(handoff, checkpoint)

    try:
        yield send
    except BaseException as error:
        if not sent:
            cluster.send_failure(error)
        raise


def _follow() -> RunResult:
    """A rank other than 0: train what rank 0 hands over, untracked, in its work dir.

    The work dir is rank 0's path, on this node (node-local work dirs work: the
    other ranks write no checkpoint). On resume the checkpoint's bytes come from
    rank 0, are verified again, and removed once training ended.
    """
    handoff = cluster.receive_handoff()
    work = Path(handoff.work_dir)
    _prepare_work_dir(work)
    inbox = work / ".trackcfg" / f"received-rank{_rank()}"
    try:
        received = cluster.receive_checkpoint(handoff, inbox)
        cfg = cluster.config_from_handoff(handoff, received)
        cluster.check_backend(cfg)
        result = _train_untracked(
            cfg, work, allow_world_size_change=handoff.allow_world_size_change
        )
    finally:
        shutil.rmtree(inbox, ignore_errors=True)
    return RunResult(
        handoff.run_id,
        handoff.run_name,
        handoff.experiment_id,
        handoff.config_hash,
        handoff.tracking_uri,
        work,
        result.status,
    )


# -- training with the hooks ------------------------------------------------------------

#: Where a run's snapshot waits (inside the work dir) until the agent uploaded it.
_STAGING = Path(".trackcfg") / "staging"


class _RunStartedHook(Hook):
    """Before the first iteration: wait for the agent's run, attach the journal, announce.

    The hook with the highest priority, so no other hook's ``before_run`` sees a
    run that is not there yet.
    """

    def __init__(self, begin: Callable[[], None]) -> None:
        self._begin = begin

    def before_run(self, runner: BaseRunner) -> None:
        self._begin()


def _initial_weights(cfg: Config, uri: str, work: Path) -> InitialWeights | None:
    """The config's ``load_from``, fetched if remote and verified (None: not set)."""
    from trackcfg.session.initial_weights import resolve_load_from

    spec = cfg.to_dict().get("load_from")
    if not spec:
        return None
    return resolve_load_from(str(spec), uri, work)


def _train_tracked(
    cfg: Config,
    plan: TrainingPlan,
    agent: TrackingAgent,
    work: Path,
    started: Callable[[AgentReady], RunResult],
    on_start: Callable[[RunResult], None] | None,
    *,
    resume_from: Path | None,
    skip: frozenset[tuple[str, int]] = frozenset(),
    extra_hooks: Sequence[tuple[Hook, str]] = (),
    load_from: Path | None = None,
    create: Callable[[], None] | None = None,
    allow_world_size_change: bool = False,
) -> RunResult:
    """Train with the MLflow hooks while ``agent`` tracks the run; returns the finished run.

    ``create`` (a new run) asks the agent to create the run once training is built;
    without it the agent already tracks one (resume). When training stops before
    ``create`` was called, the agent is abandoned (no run exists) and the error
    propagates as it is.
    """
    from trackcfg.runner.preemption import preemption_hooks
    from trackcfg.runner.train import train
    from trackcfg.session.hooks import MlflowCheckpointHook, MlflowLoggerHook
    from trackcfg.tracking.agent.journal import MetricJournal, journal_dir

    logger_hook = MlflowLoggerHook(interval=plan.log_interval, by_epoch=plan.log_by_epoch)

    def publish(saved: SavedCheckpoint, seq: int) -> None:
        from trackcfg.tracking.agent.uploads import publish_pin

        path, source = saved.path, None
        if saved.pinned is not None:
            try:
                path, source = publish_pin(saved.pinned, saved.path.name), saved.path
            except OSError as error:  # a full disk: upload from the hidden pin anyway
                _logger.warning("trackcfg: cannot publish %s: %s", saved.pinned, error)
                path, source = saved.pinned, saved.path
        agent.checkpoint(
            path=path,
            source=source,
            digest=saved.digest,
            epoch=saved.epoch,
            iter=saved.iter,
            seq=seq,
        )

    checkpoint_hook = MlflowCheckpointHook(publish)
    journal: MetricJournal | None = None
    run: RunResult | None = None

    def begin() -> None:
        nonlocal journal, run
        if create is not None:
            create()
        waiting = time.perf_counter()
        ready = agent.wait_ready()
        _logger.debug(
            "trackcfg: run %s ready; the first iteration waited %.3f s for the tracking agent",
            ready.run_id,
            time.perf_counter() - waiting,
        )
        run = started(ready)
        if ready.git_dirty:
            _logger.warning(
                "trackcfg: the git tree has uncommitted changes; the run records them as a "
                "patch (`trackcfg reproduce %s` restores them)",
                ready.run_id,
            )
        journal = MetricJournal(
            journal_dir(work, run.run_id),
            run.run_id,
            run.tracking_uri,
            skip=skip,
            keep_last=plan.keep_last,
        )
        logger_hook.attach(journal)
        checkpoint_hook.attach(journal)
        if on_start is not None:
            on_start(run)

    status = "FAILED"
    error: BaseException | None = None
    # Around the run's end too: a signal while the end is stored only sets the flag
    # (a repeated one still stops at once).
    with _preemption() as flag:
        try:
            train(
                cfg,
                work_dir=work,
                resume_from=resume_from,
                load_from=load_from,
                allow_world_size_change=allow_world_size_change,
                extra_hooks=[
                    (_RunStartedHook(begin), "HIGHEST"),
                    (logger_hook, "VERY_LOW"),
                    (checkpoint_hook, "LOW"),
                    *extra_hooks,
                    *preemption_hooks(flag),
                ],
            )
            if run is None:  # nothing was left to train (no stage ran): still report it
                begin()
            status = "FINISHED"
        except BaseException as caught:
            if not agent.started:  # stopped before the run was created: nothing to end
                agent.abandon()
                raise
            error = caught
            if isinstance(caught, KeyboardInterrupt):  # SIGINT, a signal, a preemption
                status = "KILLED"
            raise
        finally:
            if agent.started:
                left = _end(agent, journal, status, error, preempted_at=flag.requested_at)
            if isinstance(error, PreemptedError):
                _join_ranks_after_preemption()  # the other ranks wait for the end above
    assert run is not None  # set by begin(), before the first stage or just above
    if left.lost:
        # Training finished (an exception would be on its way instead): the run is
        # complete but its record is not, and that must not look like success.
        raise TrackingError(
            f"run {run.run_id}: training finished, but {left.lost} metric(s) could neither be "
            f"journaled in {journal_dir(work, run.run_id)} nor delivered to "
            f"{run.tracking_uri}: they are lost",
            hint="free space on the work dir's disk; the run's checkpoints are complete",
        )
    return replace(
        run,
        status=status,
        metrics_pending=left.pending,
        checkpoints_pending=left.checkpoints_pending,
    )


def _end(
    agent: TrackingAgent,
    journal: MetricJournal | None,
    status: str,
    error: BaseException | None,
    *,
    preempted_at: float | None = None,
) -> _Left:
    """Hand the run's end to the agent (or leave it to `sync`): what is left undone.

    A preempted run (``error`` a `PreemptedError`) is tagged `TAG_PREEMPTED`, and its
    end waits for the preemption checkpoint's upload (and the metrics before it) for
    what is left of `PREEMPTION_BUDGET` since the signal came (``preempted_at``, a
    ``time.monotonic()``): long enough for an 84 MB checkpoint on a local store,
    short enough to exit inside a 30 s grace.
    """
    from trackcfg.tracking.mlflow_run import TAG_PREEMPTED

    ending = time.perf_counter()
    finished = status == "FINISHED"
    delivery_timeout = DELIVERY_TIMEOUT if finished else ABORT_TIMEOUT
    upload_timeout = UPLOAD_TIMEOUT if finished else ABORT_TIMEOUT
    tags: dict[str, str] = {}
    if isinstance(error, PreemptedError):
        tags[TAG_PREEMPTED] = preempted_tag(error)
        since = 0.0 if preempted_at is None else time.monotonic() - preempted_at
        left_s = max(PREEMPTION_BUDGET - since, 1.0)
        # The uploader waits for the metrics before the checkpoint, so most of the
        # budget goes to the upload; the delivery runs meanwhile and gets the rest.
        upload_timeout, delivery_timeout = 0.8 * left_s, 0.2 * left_s
    final_seq: int | None = None
    unjournaled: tuple[MetricRecord, ...] = ()
    if journal is not None:
        final_seq = journal.close()  # never raises; a full disk leaves `unjournaled`
        unjournaled = journal.unjournaled()
        if unjournaled:
            _logger.warning(
                "trackcfg: %d metric record(s) could not be journaled (%s); handing them "
                "to the tracking agent",
                len(unjournaled),
                journal.write_error,
            )
    done = agent.end(
        status,
        error=None if error is None else f"{type(error).__name__}: {error}",
        final_seq=final_seq,
        delivery_timeout=delivery_timeout,
        upload_timeout=upload_timeout,
        unjournaled=unjournaled,
        tags=tags,
    )
    _logger.debug(
        "trackcfg: the tracking agent stored the run's end %.3f s after training ended",
        time.perf_counter() - ending,
    )
    if done is None and journal is not None:
        left = _leave_to_sync(journal.directory, status, unjournaled)
    else:
        left = _Left(0, 0, 0)
        if done is not None:
            left = _Left(done.pending, done.lost, done.checkpoints_pending)
    return left


@dataclass(frozen=True, slots=True)
class _Left:
    """What the end of a run left undone: metrics pending and lost, checkpoints pending."""

    pending: int
    lost: int
    checkpoints_pending: int


def _leave_to_sync(journal: Path, status: str, unjournaled: Sequence[MetricRecord]) -> _Left:
    """The agent is gone: leave the final status and every record for `sync`.

    Never raises: on a full disk what cannot be left is reported (and counted as lost).
    """
    from trackcfg.tracking.agent.journal import append_records, read_journal, record_pending_status
    from trackcfg.tracking.agent.uploads import stranded_checkpoints

    lost = 0
    if unjournaled:
        try:
            append_records(journal, unjournaled)
        except OSError as error:
            lost = len(unjournaled)
            _logger.error("trackcfg: cannot journal %d metric record(s): %s", lost, error)
    try:
        record_pending_status(journal, status, int(time.time() * 1000))
    except OSError as error:
        _logger.error(
            "trackcfg: cannot leave the run's status %s for `trackcfg sync` in %s: %s",
            status,
            journal,
            error,
        )
    pending = len(read_journal(journal).undelivered)
    checkpoints = len(stranded_checkpoints(journal))
    _logger.warning(
        "trackcfg: the tracking agent did not confirm the end of the run; %d metric(s), "
        "%d checkpoint(s) and the status %s wait in %s: run `trackcfg sync %s`",
        pending,
        checkpoints,
        status,
        journal,
        journal.parents[2],
    )
    return _Left(pending, lost, checkpoints)


def _train_untracked(
    cfg: Config, work: Path, *, allow_world_size_change: bool = False
) -> RunResult:
    """Train without tracking (ranks other than 0): with the same preemption hooks.

    The ranks agree on preemption through a collective, so every rank registers them.
    """
    from trackcfg.runner.preemption import preemption_hooks
    from trackcfg.runner.train import train

    with _preemption() as flag:
        try:
            train(
                cfg,
                work_dir=work,
                extra_hooks=preemption_hooks(flag),
                allow_world_size_change=allow_world_size_change,
            )
        except PreemptedError:
            _join_ranks_after_preemption()
            raise
    return RunResult("", "", "", cfg.hash, "", work, "FINISHED")


def _join_ranks_after_preemption() -> None:
    """Every rank waits for rank 0 to store the preempted run's end (`join_ranks`)."""
    from trackcfg.runner.preemption import join_ranks

    join_ranks(PREEMPTION_BUDGET + 10.0)  # rank 0's end is bounded by the budget


#: Environment variable naming preemption signals besides SIGTERM (``USR1``, or
#: ``USR1,USR2``); ``trackcfg run/resume --preempt-signal`` sets it for the process.
PREEMPT_SIGNALS_ENV = "TRACKCFG_PREEMPT_SIGNALS"

#: Seconds from a preemption signal to the run's stored end (checkpoint uploaded,
#: status set): the process exits right after, well inside a 30 s grace period.
PREEMPTION_BUDGET = 20.0


def parse_preempt_signals(text: str) -> tuple[signal.Signals, ...]:
    """The signals ``text`` names, comma or space separated (``USR1``, ``SIGUSR2``, ``10``).

    Example:
        >>> [s.name for s in parse_preempt_signals("USR1, sigusr2")]
        ['SIGUSR1', 'SIGUSR2']

    Raises:
        ArgumentValueError: a name that is no signal, or one that cannot be a
            preemption signal (SIGKILL, SIGSTOP, SIGCHLD, fault signals).
    """
    from trackcfg.runner.preemption import parse_signal

    return tuple(parse_signal(word) for word in text.replace(",", " ").split())


def preemption_signals_from_env() -> tuple[signal.Signals, ...]:
    """SIGTERM and the signals `PREEMPT_SIGNALS_ENV` names (`parse_preempt_signals`).

    Raises:
        ArgumentValueError: as `parse_preempt_signals`; the message names the variable.
    """
    from trackcfg.errors import ArgumentValueError
    from trackcfg.runner.preemption import DEFAULT_SIGNALS

    try:
        extra = parse_preempt_signals(os.environ.get(PREEMPT_SIGNALS_ENV, ""))
    except ArgumentValueError as error:
        error.locate(PREEMPT_SIGNALS_ENV)
        raise
    return tuple(dict.fromkeys([*DEFAULT_SIGNALS, *extra]))


def preempted_tag(error: PreemptedError) -> str:
    """The value of `TAG_PREEMPTED`: ``iter=<i> epoch=<e> signal=<name>``.

    Example:
        >>> preempted_tag(PreemptedError(15, 2, 100))
        'iter=100 epoch=2 signal=SIGTERM'
    """
    try:
        name = signal.Signals(error.signum).name
    except ValueError:
        name = str(error.signum)
    return f"iter={error.iter} epoch={error.epoch} signal={name}"


@contextlib.contextmanager
def _preemption() -> Iterator[PreemptionFlag]:
    """`preemption_signals` for SIGTERM and `PREEMPT_SIGNALS_ENV`'s signals."""
    from trackcfg.runner.preemption import preemption_signals

    with preemption_signals(preemption_signals_from_env()) as flag:
        yield flag


# -- helpers ------------------------------------------------------------------------------


def _prepare_work_dir(work: Path) -> None:
    """Create ``work`` and its private ``.trackcfg`` (mode 0700), and prove it writable.

    Runs before the run is created or changed: a work dir that cannot hold the
    snapshot, journal and checkpoints must not leave a run that never trained.

    Raises:
        WorkDirError: it cannot be created or written (read-only file system,
            permissions, a file in the way).
    """
    private = work / ".trackcfg"  # journals and staged snapshots: the owner's only
    try:
        private.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix="write-test-", dir=private)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        where = "" if error.filename in (None, str(work)) else f" ({error.filename})"
        raise WorkDirError(
            f"work dir {work}: not writable: {error.strerror or error}{where}",
            hint="pass --work-dir with a writable directory (or set `work_dir` in the "
            "config), or make this one writable",
        ) from error


def _rank() -> int:
    from trackcfg.runner.dist import get_dist_info

    return get_dist_info()[0]


def _new_work_dir(config_path: str | Path, config_hash: str) -> Path:
    """A directory of its own for a new run: ``work_dirs/<stem>/<time>-<hash[:8]>``.

    Runs of one config must not share checkpoints and logs (epoch_3.pth of one run
    would replace the other's). Created here, exclusively: two runs started in the
    same second get ``...-1``. The run records it (tag ``trackcfg.work_dir``), which
    is where ``resume`` and ``run --resume auto`` look; ``sync`` finds it under
    ``work_dirs``. Under torchrun rank 0 picks it and hands it to the other ranks
    (`trackcfg.session.cluster.Handoff`).
    """
    base = (Path("work_dirs") / Path(config_path).stem).resolve()
    stamp = time.strftime("%Y%m%d_%H%M%S")
    for attempt in range(1000):
        candidate = base / (f"{stamp}-{config_hash[:8]}" + (f"-{attempt}" if attempt else ""))
        try:
            candidate.mkdir(parents=True)
        except FileExistsError:
            continue
        except OSError:
            return candidate  # `_prepare_work_dir` says what is wrong
        return candidate
    return candidate


def _work_dir(plan: TrainingPlan, config_path: str | Path, work_dir: Path | str | None) -> Path:
    if work_dir is not None:
        return Path(work_dir).resolve()
    if plan.work_dir is not None:
        return plan.work_dir.resolve()
    return (Path("work_dirs") / Path(config_path).stem).resolve()


def _resume_work_dir(
    work_dir: Path | str | None, tags: dict[str, str], name: str, run_id: str
) -> Path:
    from trackcfg.tracking.mlflow_run import TAG_WORK_DIR

    if work_dir is not None:
        return Path(work_dir).resolve()
    recorded = tags.get(TAG_WORK_DIR)
    if recorded and Path(recorded).is_dir():
        return Path(recorded).resolve()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return (Path("work_dirs") / f"{safe}-{run_id[:8]}").resolve()


def _given_config(config: str | Path | Config) -> tuple[Config | None, Path]:
    """A `Config` given to `start_run` (and its file), or None and the path given."""
    if isinstance(config, (str, Path)):
        return None, Path(config)
    if not config.filename or not config.lineage:
        raise TrackingError(
            "a tracked run needs its config's files (for the snapshot): pass a path, or a "
            "Config loaded with Config.fromfile"
        )
    return config, Path(config.filename)


def _plan(cfg: Config) -> TrainingPlan:
    from trackcfg.runner.plan import TrainingPlan

    return TrainingPlan.from_config(cfg.to_dict())


def _describe_changes(recorded: dict[str, object], cfg: Config) -> list[str]:
    """One line per key that differs between the recorded and the re-resolved config."""
    from trackcfg.config.canonical import from_canonical_bytes
    from trackcfg.config.diff import diff

    now = from_canonical_bytes(cfg.canonical_bytes())
    return [
        f"{change.key_path}: {change.kind.name.lower()} {change.old!r} -> {change.new!r}"
        for change in diff(recorded, now)
    ]


@contextlib.contextmanager
def _releasing(release: Callable[[], None]) -> Iterator[Callable[[], None]]:
    """Call ``release`` if the block fails before it calls the hand-over function it gets."""
    handed_over = False

    def hand_over() -> None:
        nonlocal handed_over
        handed_over = True

    try:
        yield hand_over
    except BaseException:
        if not handed_over:
            release()
        raise


def _logged_steps(
    client: MlflowClient, run_id: str, keys: Iterable[str]
) -> frozenset[tuple[str, int]]:
    """Every (metric key, step) the store already holds for the run."""
    steps: set[tuple[str, int]] = set()
    for key in keys:
        for metric in client.get_metric_history(run_id, key):
            steps.add((metric.key, int(metric.step)))
    return frozenset(steps)


#: The public Python names (``trackcfg.run``, ``trackcfg.resume``) of what the
#: ``trackcfg run`` and ``trackcfg resume`` commands do.
run = start_run
resume = resume_run
