"""`sync`: deliver what a work dir's journals still hold, after a crash or an outage.

What each journal holds goes to the store in order: its metrics, then the
checkpoints its run published but no tracking agent uploaded (the agent was
killed; `trackcfg.tracking.agent.uploads`), then a final status that could not be
set at the time. Also the MLflow HTTP settings every tracked process uses
(`HTTP_DEFAULTS`) and the one way a store that cannot be used is reported.

Used by ``trackcfg sync``, by resume (which first waits for a killed run's agent)
and by a new run's agent (journals earlier runs left in its work dir).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trackcfg.tracking.agent.uploads import StrandedUploads

__all__ = [
    "AGENT_WAIT",
    "HTTP_DEFAULTS",
    "SyncReport",
    "bound_http_retries",
    "sync",
    "warn_if_refused",
]

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


#: Seconds `resume`/`sync` wait for a killed run's agent to finish delivering.
AGENT_WAIT = 150.0


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
    from trackcfg.errors import JournalBusyError
    from trackcfg.tracking.agent.delivery import JournalDelivery, mlflow_sender
    from trackcfg.tracking.agent.journal import (
        find_journals,
        pending_status,
        read_journal,
        read_journal_meta,
        without_pending_status,
        write_journal_meta,
    )
    from trackcfg.tracking.agent.uploads import StrandedUploads, stranded_checkpoints
    from trackcfg.tracking.mlflow_run import resolve_recorded_uri

    bound_http_retries()
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
                warn_if_refused(uri, run_id)
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
                    from trackcfg.tracking.agent.lease import release_dead_lease
                    from trackcfg.tracking.mlflow_run import (
                        clear_failure_tags,
                        open_client,
                        terminate_run,
                    )

                    client = open_client(uri)
                    if final[0] == "FINISHED":
                        clear_failure_tags(client, run_id)
                    terminate_run(client, run_id, final[0], final[1])
                    # The trainer that left this status has ended, and its agent died
                    # before it could remove the run's lease.
                    release_dead_lease(client, run_id)
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
    from trackcfg.tracking.agent.uploads import (
        StrandedUploads,
        stranded_checkpoints,
        upload_stranded,
    )
    from trackcfg.tracking.mlflow_run import open_client

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
    from trackcfg.tracking.agent.uploads import StrandedUploads

    return StrandedUploads(a.uploaded + b.uploaded, a.pending + b.pending, a.rejected + b.rejected)


def bound_http_retries() -> None:
    """Apply `HTTP_DEFAULTS` to this process where the user did not set them."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def warn_if_refused(uri: str, run_id: str) -> None:
    """Say so when metrics stay pending because the store refuses our credentials."""
    from trackcfg.tracking.mlflow_run import refused_credentials

    refused = refused_credentials(uri, run_id)
    if refused is not None:
        _logger.warning("trackcfg: %s", refused)
