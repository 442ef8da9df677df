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
FINISHED, FAILED (the error is a tag and the run's note) or KILLED
(SIGTERM/SIGINT, or the trainer died and its agent says so).

`resume_run` needs nothing but the tracking store: it reads the run's snapshot,
re-resolves the config from it and compares the hash with the run's tag (a
mismatch is refused with the differing keys unless forced; forced changes are
recorded on the run), downloads the newest complete checkpoint, verifies its
digest and continues the *same* run. Metric steps the run already holds (in the
store or in a local journal) are not logged again, so the history has every
step once.

`sync` delivers what journals in a work dir still hold (after a crash or an
outage), uploads the checkpoints a run published but no tracking agent uploaded
(its agent was killed; `trackcfg.tracking.uploads`), and sets run statuses that
could not be set at the time.

A full disk loses no metric silently: the journal keeps what it cannot write
and retries; what it still cannot write when the run ends goes to the tracking
agent with the run's end (`MetricJournal.unjournaled`). Metrics that neither
the disk nor the store took make a run that finished training end with a
`TrackingError` naming how many were lost (exit 2 at the command line).

Only rank 0 (``RANK`` unset or 0) tracks; other ranks train untracked.

These functions set MLflow's HTTP retry settings for this process when the user
has not (see `HTTP_DEFAULTS`): MLflow's own defaults retry one request for
minutes inside one call, which would hold back trackcfg's own retry-with-backoff
after an outage.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from trackcfg.config.config import load_config
from trackcfg.errors import (
    CheckpointCorruptError,
    CheckpointError,
    HashMismatchError,
    TrackingError,
    WorkDirError,
    first_line,
)
from trackcfg.runner.hooks.hook import Hook
from trackcfg.tracking.redaction import redact_url

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from trackcfg.config.config import Config
    from trackcfg.runner.base_runner import BaseRunner
    from trackcfg.runner.checkpoint import SavedCheckpoint
    from trackcfg.tracking.agent_client import AgentReady, TrackingAgent
    from trackcfg.tracking.journal import MetricRecord
    from trackcfg.tracking.uploads import StrandedUploads

__all__ = ["RunResult", "RunTerminatedError", "SyncReport", "resume_run", "start_run", "sync"]

_logger = logging.getLogger(__name__)

#: MLflow client HTTP settings trackcfg uses unless the user set them: MLflow's
#: defaults retry one request for ~4 minutes inside a single call; the journal and
#: the checkpoint uploader retry on their own, so a short client-side retry keeps
#: their backoff (and recovery after an outage) in charge.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

#: Seconds a finished run waits for metrics to reach the store before leaving them
#: to `sync` (the journal keeps them), and for checkpoint uploads.
DELIVERY_TIMEOUT = 30.0
UPLOAD_TIMEOUT = 120.0
#: The same bounds for a run that failed or was killed: report it, do not linger.
ABORT_TIMEOUT = 10.0
#: Seconds `resume`/`sync` wait for a killed run's agent to finish delivering.
AGENT_WAIT = 150.0


class RunTerminatedError(KeyboardInterrupt):
    """Training stopped by SIGTERM (the run is marked KILLED); ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


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


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What `sync` did.

    Attributes:
        journals: Journals found.
        delivered: Metrics delivered now.
        pending: Metrics still undelivered (the store is away).
        statuses: Run statuses set now.
        checkpoints: Checkpoints uploaded now (published, but no agent uploaded them).
        checkpoints_pending: Checkpoints still not uploaded.
        checkpoints_rejected: Checkpoints whose bytes do not match their digest
            (never uploaded; set aside as ``<name>.rejected``).
    """

    journals: int
    delivered: int
    pending: int
    statuses: int
    checkpoints: int = 0
    checkpoints_pending: int = 0
    checkpoints_rejected: int = 0

    def __str__(self) -> str:
        text = (
            f"{self.journals} journal(s): {self.delivered} metric(s) delivered, "
            f"{self.pending} pending, {self.statuses} run status(es) set; "
            f"{self.checkpoints} checkpoint(s) uploaded, {self.checkpoints_pending} pending"
        )
        if self.checkpoints_rejected:
            text += f", {self.checkpoints_rejected} rejected (digest mismatch)"
        if self.pending or self.checkpoints_pending:
            text += " — run `trackcfg sync` again when the tracking store is reachable"
        return text


# -- public entry points -----------------------------------------------------------


def start_run(
    config_path: str | Path,
    options: Sequence[str] = (),
    work_dir: Path | str | None = None,
    experiment: str | None = None,
    *,
    tracking_uri: str | None = None,
    on_start: Callable[[RunResult], None] | None = None,
) -> RunResult:
    """Train ``config_path`` as a new tracked MLflow run.

    Args:
        config_path: The config file.
        options: ``--cfg-options`` strings (``k=v``), as given on the command line.
        work_dir: Checkpoints and logs; default ``cfg.work_dir``, else
            ``work_dirs/<config stem>``.
        experiment: MLflow experiment name (created when missing); default
            ``trackcfg``.
        tracking_uri: The store; default ``MLFLOW_TRACKING_URI``, else
            ``sqlite:///<cwd>/mlflow.db``.
        on_start: Called with the RUNNING run once its snapshot is stored, before
            the first iteration: the moment a caller can tell users the run id.

    Returns:
        The finished run.

    Raises:
        ConfigError: the config does not load.
        TrackingError: the store cannot be used; or training finished but metrics
            were lost (neither the work dir's disk nor the store took them).
        RunTerminatedError, KeyboardInterrupt: stopped by a signal (run KILLED).
        Exception: whatever training raised (run FAILED, error recorded).
    """
    from trackcfg.tracking import mlflow_run as mr
    from trackcfg.tracking.agent_client import TrackingAgent
    from trackcfg.tracking.environment import capture_environment
    from trackcfg.tracking.lease import new_lease
    from trackcfg.tracking.snapshot import leaf_config_file, write_snapshot

    if not _is_rank_zero():
        cfg = load_config(config_path, options, import_custom_modules=True)
        return _train_untracked(cfg, _work_dir(cfg, config_path, work_dir))
    _bound_http_retries()
    uri = mr.to_client_uri(tracking_uri or mr.resolve_tracking_uri())
    # First of all: the agent's git capture, MLflow import and store opening overlap
    # everything below.
    agent = TrackingAgent.spawn(
        uri, project=Path(config_path).parent, debug=_logger.isEnabledFor(logging.DEBUG)
    )
    try:
        cfg = load_config(config_path, options, import_custom_modules=True)
        work = _work_dir(cfg, config_path, work_dir)
        _prepare_work_dir(work)  # before the agent creates a run that could not train
        config_hash = cfg.hash
        config_file = leaf_config_file(cfg.lineage)
        name = mr.run_name(config_file, config_hash)
        tags = {
            mr.TAG_CONFIG_HASH: config_hash,
            mr.TAG_LINEAGE_HASH: cfg.lineage_hash,
            mr.TAG_CONFIG_FILE: config_file,
            mr.TAG_WORK_DIR: str(work),
        }  # and the git tags, which the agent adds
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
        raise
    agent.start(
        experiment=experiment or mr.DEFAULT_EXPERIMENT,
        name=name,
        tags=tags,
        params=flat.params,
        truncated=flat.truncated,
        snapshot=staged,
        work_dir=work,
        keep_last=_keep_last(cfg),
        lease=new_lease(),  # a new run: nobody else can hold it yet
    )

    def started(ready: AgentReady) -> RunResult:
        return RunResult(
            ready.run_id, name, ready.experiment_id, config_hash, redact_url(uri), work, "RUNNING"
        )

    return _train_tracked(cfg, agent, work, started, on_start, resume_from=None)


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
    run's lease (`trackcfg.tracking.lease`) before it changes anything.

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

    Returns:
        The finished run.

    Raises:
        RunNotFoundError: no such run.
        RunLeaseError: another trainer holds the run.
        SnapshotError: the run has no usable snapshot.
        HashMismatchError: the config hashes differently and ``force`` is False.
        CheckpointError: the chosen checkpoint is not stored.
        CheckpointCorruptError: no stored checkpoint (or not the chosen one) verifies.
        TrackingError: training finished but metrics were lost (as `start_run`).
    """
    from trackcfg.tracking import mlflow_run as mr
    from trackcfg.tracking.agent_client import TrackingAgent
    from trackcfg.tracking.lease import acquire_lease, new_lease, release_lease
    from trackcfg.tracking.snapshot import fetch_snapshot

    _bound_http_retries()
    uri = mr.to_client_uri(tracking_uri or mr.resolve_tracking_uri())
    with _store_errors(uri):
        client = mr.open_client(uri)
        run = mr.get_run(client, run_id)
    work = _resume_work_dir(work_dir, dict(run.data.tags), run.info.run_name or run_id, run_id)
    _prepare_work_dir(work)  # before the run is touched
    # Then the lease: a second trainer of this run must not even touch its files.
    lease = acquire_lease(client, run_id, new_lease())
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
                    mr.TAG_NOTE: "Resumed with --force; config changes:\n" + "\n".join(changes),
                },
            )
        if "custom_imports" in cfg.to_dict():
            # The hash check ran without importing anything; training needs the modules.
            if config_path is None:
                cfg = snap.to_config(import_custom_modules=True)
            else:
                cfg = load_config(config_path, options, import_custom_modules=True)
        resume_from = _download_checkpoint(client, run_id, tags, work, chosen=checkpoint)
        skip = _logged_steps(client, run_id, run.data.metrics.keys())
        count = int(tags.get(mr.TAG_RESUME_COUNT, "0")) + 1
        mr.set_tags(
            client,
            run_id,
            {
                mr.TAG_RESUME_COUNT: str(count),
                mr.TAG_RESUMED_FROM: _artifact_name(resume_from) or "(start)",
                mr.TAG_WORK_DIR: str(work),
            },
        )
        client.update_run(run_id, status="RUNNING")
        agent = TrackingAgent.spawn(uri, debug=_logger.isEnabledFor(logging.DEBUG))
        agent.attach(
            run_id=run_id,
            experiment_id=run.info.experiment_id,
            work_dir=work,
            keep_last=_keep_last(cfg),
            lease=lease,
        )
        hand_over()  # the agent renews the lease from now on, and removes it at the end
        name = run.info.run_name or run_id

        def started(ready: AgentReady) -> RunResult:
            return RunResult(
                run_id, name, ready.experiment_id, cfg.hash, redact_url(uri), work, "RUNNING"
            )

        return _train_tracked(
            cfg, agent, work, started, on_start, resume_from=resume_from, skip=skip
        )


def sync(
    work_dir: Path | str,
    *,
    timeout: float = 60.0,
    lock_timeout: float = AGENT_WAIT,
    only: str | None = None,
    exclude: Iterable[str] = (),
) -> SyncReport:
    """Deliver what journals in ``work_dir`` still hold; set pending run statuses.

    What each journal holds: metrics, then the checkpoints its run published but
    no agent uploaded (uploaded oldest first once the metrics are in the store,
    moving the run's pointer and honouring its keep-last-K), then a final status
    (set once nothing else is pending, clearing a stale error tag when FINISHED).
    A journal a tracking agent is still delivering (its run's trainer was killed
    moments ago) is waited for, up to ``lock_timeout`` seconds.

    Args:
        work_dir: A work dir (its ``.trackcfg/journal/*`` are read).
        timeout: Seconds to keep trying per journal while the store is away.
        lock_timeout: Seconds to wait for another process delivering a journal;
            a journal still busy then counts as pending.
        only: Only the journal of this run id.
        exclude: Run ids whose journals to leave alone.

    Returns:
        What was delivered and what is still pending.
    """
    from trackcfg.tracking.agent import clear_failure_tags
    from trackcfg.tracking.delivery import JournalBusyError, JournalDelivery, mlflow_sender
    from trackcfg.tracking.journal import (
        find_journals,
        pending_status,
        read_journal,
        read_journal_meta,
        without_pending_status,
        write_journal_meta,
    )
    from trackcfg.tracking.mlflow_run import resolve_recorded_uri
    from trackcfg.tracking.uploads import StrandedUploads, stranded_checkpoints

    _bound_http_retries()
    excluded = set(exclude)
    journals = find_journals(Path(work_dir))
    delivered = pending = statuses = 0
    uploads = StrandedUploads(0, 0, 0)
    seen = 0
    for directory in journals:
        meta = read_journal_meta(directory)
        run_id = str(meta.get("run_id", directory.name))
        recorded = str(meta.get("tracking_uri", ""))
        if run_id in excluded or (only is not None and run_id != only):
            continue
        seen += 1
        if not recorded:
            continue
        # Recorded without credentials: they come from the environment.
        uri = resolve_recorded_uri(recorded)
        try:
            delivery = JournalDelivery(
                directory, mlflow_sender(uri, run_id), lock_timeout=lock_timeout
            )
        except JournalBusyError:
            pending += len(read_journal(directory).undelivered)
            uploads = _add(uploads, StrandedUploads(0, len(stranded_checkpoints(directory)), 0))
            continue
        try:
            delivery.stop(timeout=timeout)
            delivered += delivery.delivered_count
            undelivered = delivery.pending_count
            pending += undelivered
            if undelivered:
                _warn_if_refused(uri, run_id)
            # Read again under the lock: the agent that held it may have left a status.
            meta = read_journal_meta(directory)
            # Checkpoints after the metrics: the pointer may move only once the
            # metrics logged before it are in the store.
            if undelivered == 0:
                uploaded = _upload_stranded(directory, uri, run_id, meta, timeout)
            else:
                uploaded = StrandedUploads(0, len(stranded_checkpoints(directory)), 0)
            uploads = _add(uploads, uploaded)
            final = pending_status(meta)
            # Only this journal's metrics and checkpoints hold its run's status back:
            # another run's unreachable store must not keep this one RUNNING.
            if final is not None and undelivered == 0 and uploaded.pending == 0:
                try:
                    from trackcfg.tracking.mlflow_run import open_client

                    client = open_client(uri)
                    if final[0] == "FINISHED":
                        clear_failure_tags(client, run_id)
                    client.set_terminated(run_id, status=final[0], end_time=final[1])
                except Exception as error:  # the store is still away: try next time
                    _logger.warning("trackcfg: cannot set status of run %s: %s", run_id, error)
                    continue
                write_journal_meta(directory, without_pending_status(meta))
                statuses += 1
        finally:
            delivery.release()
    return SyncReport(
        seen,
        delivered,
        pending,
        statuses,
        uploads.uploaded,
        uploads.pending,
        uploads.rejected,
    )


def _upload_stranded(
    directory: Path, uri: str, run_id: str, meta: dict[str, object], timeout: float
) -> StrandedUploads:
    """`upload_stranded` for one journal; a store that cannot be opened leaves them pending."""
    from trackcfg.tracking.mlflow_run import open_client
    from trackcfg.tracking.uploads import StrandedUploads, stranded_checkpoints, upload_stranded

    if not stranded_checkpoints(directory):
        return StrandedUploads(0, 0, 0)
    keep = meta.get("keep_last")
    try:
        client = open_client(uri)
    except Exception as error:  # the store is away: next time
        _logger.warning("trackcfg: cannot upload checkpoints of run %s: %s", run_id, error)
        return StrandedUploads(0, len(stranded_checkpoints(directory)), 0)
    return upload_stranded(
        directory,
        client,
        run_id,
        keep_last=keep if isinstance(keep, int) and keep > 0 else None,
        timeout=timeout,
    )


def _add(a: StrandedUploads, b: StrandedUploads) -> StrandedUploads:
    from trackcfg.tracking.uploads import StrandedUploads

    return StrandedUploads(a.uploaded + b.uploaded, a.pending + b.pending, a.rejected + b.rejected)


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


def _train_tracked(
    cfg: Config,
    agent: TrackingAgent,
    work: Path,
    started: Callable[[AgentReady], RunResult],
    on_start: Callable[[RunResult], None] | None,
    *,
    resume_from: Path | None,
    skip: frozenset[tuple[str, int]] = frozenset(),
) -> RunResult:
    """Train with the MLflow hooks while ``agent`` tracks the run; returns the finished run."""
    from trackcfg.runner.hooks.mlflow import MlflowCheckpointHook, MlflowLoggerHook
    from trackcfg.runner.train import train
    from trackcfg.tracking.journal import MetricJournal, journal_dir

    interval, by_epoch = _log_settings(cfg)
    logger_hook = MlflowLoggerHook(interval=interval, by_epoch=by_epoch)

    def publish(saved: SavedCheckpoint, seq: int) -> None:
        from trackcfg.tracking.uploads import publish_pin

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
        waiting = time.perf_counter()
        ready = agent.wait_ready()
        _logger.debug(
            "trackcfg: run %s ready; the first iteration waited %.3f s for the tracking agent",
            ready.run_id,
            time.perf_counter() - waiting,
        )
        run = started(ready)
        journal = MetricJournal(
            journal_dir(work, run.run_id),
            run.run_id,
            run.tracking_uri,
            skip=skip,
            keep_last=_keep_last(cfg),
        )
        logger_hook.attach(journal)
        checkpoint_hook.attach(journal)
        if on_start is not None:
            on_start(run)

    status = "FAILED"
    error: BaseException | None = None
    try:
        with _terminate_on_sigterm():
            train(
                cfg,
                work_dir=work,
                resume_from=resume_from,
                extra_hooks=[
                    (_RunStartedHook(begin), "HIGHEST"),
                    (logger_hook, "VERY_LOW"),
                    (checkpoint_hook, "LOW"),
                ],
            )
            if run is None:  # nothing was left to train (no stage ran): still report it
                begin()
        status = "FINISHED"
    except KeyboardInterrupt as caught:  # SIGINT, or SIGTERM via RunTerminatedError
        status, error = "KILLED", caught
        raise
    except BaseException as caught:
        error = caught
        raise
    finally:
        ending = time.perf_counter()
        finished = status == "FINISHED"
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
            delivery_timeout=DELIVERY_TIMEOUT if finished else ABORT_TIMEOUT,
            upload_timeout=UPLOAD_TIMEOUT if finished else ABORT_TIMEOUT,
            unjournaled=unjournaled,
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
    from trackcfg.tracking.journal import append_records, read_journal, record_pending_status
    from trackcfg.tracking.uploads import stranded_checkpoints

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


def _train_untracked(cfg: Config, work: Path) -> RunResult:
    from trackcfg.runner.train import train

    train(cfg, work_dir=work)
    return RunResult("", "", "", cfg.hash, "", work, "FINISHED")


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into `RunTerminatedError` on the main thread while training."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise RunTerminatedError(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def _store_errors(uri: str) -> Iterator[None]:
    """Report a tracking store that cannot be used as one `TrackingError`."""
    from mlflow.exceptions import MlflowException

    from trackcfg.tracking.mlflow_run import unusable_store

    try:
        yield
    except MlflowException as error:
        raise unusable_store(uri, error) from error


def _bound_http_retries() -> None:
    """Apply `HTTP_DEFAULTS` to this process where the user did not set them."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def _warn_if_refused(uri: str, run_id: str) -> None:
    """Say so when metrics stay pending because the store refuses our credentials."""
    from trackcfg.tracking.mlflow_run import refused_credentials

    refused = refused_credentials(uri, run_id)
    if refused is not None:
        _logger.warning("trackcfg: %s", refused)


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


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _work_dir(cfg: Config, config_path: str | Path, work_dir: Path | str | None) -> Path:
    if work_dir is not None:
        return Path(work_dir).resolve()
    configured = cfg.to_dict().get("work_dir")
    if isinstance(configured, str) and configured:
        return Path(configured).resolve()
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


def _log_settings(cfg: Config) -> tuple[int, bool]:
    """The logger interval and by_epoch flag the config's log_config uses."""
    data = cfg.to_dict()
    log_config = data.get("log_config")
    interval, by_epoch = 10, True
    runner = data.get("runner")
    if isinstance(runner, dict) and runner.get("type") == "IterBasedRunner":
        by_epoch = False
    if isinstance(log_config, dict):
        value = log_config.get("interval")
        if isinstance(value, int) and value > 0:
            interval = value
        hooks = log_config.get("hooks")
        if isinstance(hooks, (list, tuple)):
            for hook in hooks:
                if isinstance(hook, dict) and isinstance(hook.get("by_epoch"), bool):
                    by_epoch = hook["by_epoch"]
                    break
    return interval, by_epoch


def _keep_last(cfg: Config) -> int | None:
    checkpoint_config = cfg.to_dict().get("checkpoint_config")
    if isinstance(checkpoint_config, dict):
        keep = checkpoint_config.get("max_keep_ckpts")
        if isinstance(keep, int) and keep > 0:
            return keep
    return None


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


def _artifact_name(path: Path | None) -> str | None:
    from trackcfg.tracking.uploads import CHECKPOINT_ARTIFACT_DIR

    return None if path is None else f"{CHECKPOINT_ARTIFACT_DIR}/{path.name}"


def _download_checkpoint(
    client: MlflowClient, run_id: str, tags: dict[str, str], work: Path, *, chosen: str | None
) -> Path | None:
    """Download and verify the checkpoint to resume from (None: start over in the same run).

    Without ``chosen``: the one the run's pointer names, verified against the
    pointer's digest; if it does not verify, the newest older stored checkpoint
    whose own digest does (with a warning naming what was skipped). Checkpoints
    stored after the pointer's are never picked on their own: the pointer moves
    only once the metrics before a checkpoint are stored.
    """
    from trackcfg.tracking.mlflow_run import TAG_LATEST_CHECKPOINT, TAG_LATEST_CHECKPOINT_DIGEST
    from trackcfg.tracking.uploads import CHECKPOINT_ARTIFACT_DIR, checkpoint_number

    pointer = tags.get(TAG_LATEST_CHECKPOINT)
    expected = tags.get(TAG_LATEST_CHECKPOINT_DIGEST)
    destination = work / ".trackcfg" / "resume"
    if chosen is not None:
        artifact = _chosen_artifact(run_id, chosen)
        digest = expected if artifact == pointer else None
        return _fetch_checkpoint(client, run_id, artifact, digest, destination)
    if not pointer or not expected:
        return None  # killed before its first checkpoint: start over in the same run
    newest = checkpoint_number(pointer)
    older = sorted(
        (
            (number, f"{CHECKPOINT_ARTIFACT_DIR}/{name}")
            for name in _stored_checkpoints(client, run_id)
            if (number := checkpoint_number(name)) is not None
            and newest is not None
            and number < newest
            and name.split("_")[0] == pointer.rsplit("/", 1)[-1].split("_")[0]
        ),
        reverse=True,
    )
    failures: list[str] = []
    for artifact, digest in [(pointer, expected), *((a, None) for _, a in older)]:
        try:
            path = _fetch_checkpoint(client, run_id, artifact, digest, destination)
        except (CheckpointError, TrackingError) as error:
            failures.append(first_line(error))
            _logger.warning("trackcfg: skipping stored checkpoint %s: %s", artifact, failures[-1])
            continue
        if failures:
            _logger.warning(
                "trackcfg: run %s resumes from the older checkpoint %s (the newer one does not "
                "verify); the steps after it are trained again, identically",
                run_id,
                artifact,
            )
        return path
    raise CheckpointCorruptError(
        f"run {run_id}: no stored checkpoint verifies",
        details=failures,
        hint="the artifact store holds damaged files; `trackcfg resume RUN_ID --checkpoint NAME` "
        "picks one explicitly",
    )


def _chosen_artifact(run_id: str, chosen: str) -> str:
    """The artifact path of a checkpoint named on the command line (confined to checkpoints/)."""
    from trackcfg.tracking.uploads import CHECKPOINT_ARTIFACT_DIR

    name = chosen.removeprefix(f"{CHECKPOINT_ARTIFACT_DIR}/")
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise CheckpointError(
            f"run {run_id}: {chosen!r} is not the name of a stored checkpoint",
            hint=f"give a file name from the run's {CHECKPOINT_ARTIFACT_DIR}/ artifacts, "
            "e.g. epoch_3.pth",
        )
    return f"{CHECKPOINT_ARTIFACT_DIR}/{name}"


def _stored_checkpoints(client: MlflowClient, run_id: str) -> list[str]:
    """File names under the run's ``checkpoints/`` artifacts."""
    from trackcfg.tracking.uploads import CHECKPOINT_ARTIFACT_DIR

    try:
        infos = client.list_artifacts(run_id, CHECKPOINT_ARTIFACT_DIR)
    except Exception as error:
        raise TrackingError(f"run {run_id}: cannot list stored checkpoints: {error}") from error
    return [i.path.rsplit("/", 1)[-1] for i in infos if not i.is_dir]


def _fetch_checkpoint(
    client: MlflowClient, run_id: str, artifact: str, digest: str | None, destination: Path
) -> Path:
    """Download ``artifact`` and verify it: against ``digest`` if given, else its own trailer.

    Raises:
        CheckpointError: it is not stored (or cannot be downloaded).
        CheckpointCorruptError: its bytes do not verify.
    """
    from trackcfg.runner.checkpoint import read_checkpoint_record, verify_checkpoint_file

    destination.mkdir(parents=True, exist_ok=True)
    try:
        path = Path(client.download_artifacts(run_id, artifact, str(destination)))
    except Exception as error:
        raise CheckpointError(
            f"run {run_id}: cannot download checkpoint {artifact}: {first_line(error)}"
        ) from error
    if not path.is_file():
        raise CheckpointError(f"run {run_id}: {artifact} is not a stored checkpoint file")
    try:
        verify_checkpoint_file(path)  # its bytes against its own trailer
    except CheckpointCorruptError as error:
        raise CheckpointCorruptError(
            f"run {run_id}: stored {artifact} is damaged: {error.message}",
            hint="the artifact store holds a damaged file",
        ) from error
    record = read_checkpoint_record(path)
    if digest is not None and (record is None or record.digest != digest):
        raise CheckpointCorruptError(
            f"{artifact}: downloaded checkpoint does not match the digest {digest} the run records",
            hint="the artifact store holds a damaged file",
        )
    return path


def _logged_steps(
    client: MlflowClient, run_id: str, keys: Iterable[str]
) -> frozenset[tuple[str, int]]:
    """Every (metric key, step) the store already holds for the run."""
    steps: set[tuple[str, int]] = set()
    for key in keys:
        for metric in client.get_metric_history(run_id, key):
            steps.add((metric.key, int(metric.step)))
    return frozenset(steps)
