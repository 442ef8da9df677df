"""Find tracked runs in the MLflow store: by config hash, by experiment, or resumable ones.

Runs are found through the ``trackcfg.config_hash`` tag that ``trackcfg run``
sets, so any MLflow client (the UI's search box included) can ask the same
question with ``tags.`trackcfg.config_hash` = '<hash>'``. A hash shorter than
32 characters matches as a prefix (what the run name shows is 8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trackcfg.tracking.mlflow_run import (
    TAG_BEST_EPOCH,
    TAG_BEST_ITER,
    TAG_BEST_METRIC,
    TAG_CONFIG_HASH,
    TAG_GIT_COMMIT,
    TAG_GIT_DIRTY,
    TAG_VERIFIED,
    TAG_VERIFIES,
)

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

__all__ = [
    "TAG_JOB_KEY",
    "BestCheckpoint",
    "RunRow",
    "check_port_free",
    "find_resumable",
    "find_runs",
    "hash_filter",
    "store_exists",
    "tracking_uri",
]

#: The run tag naming the job that made the run (``trackcfg.session.cluster``): a
#: restarted torchrun or requeued SLURM job finds its run by it.
TAG_JOB_KEY = "trackcfg.job_key"

_SEARCH_PAGE = 1000
#: Experiments per search page: MLflow returns at most 1000 unless paged, and a team
#: store can hold more.
_EXPERIMENT_PAGE = 1000


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run, as ``trackcfg runs`` lists it.

    ``verified`` is its ``trackcfg verify`` verdict (``bitwise``, ``diverged@137``,
    ``partial@50``), ``verifies`` the run a verifying run re-ran.
    """

    run_id: str
    name: str
    experiment: str
    status: str
    start_time_ms: int | None
    config_hash: str
    git_commit: str | None
    git_dirty: bool
    metrics: Mapping[str, float]
    verified: str | None = None
    verifies: str | None = None
    best: BestCheckpoint | None = None
    job_key: str | None = None


@dataclass(frozen=True, slots=True)
class BestCheckpoint:
    """The best checkpoint of a run (``evaluation=dict(save_best=...)``).

    Attributes:
        metric: The logged metric that chose it (``val/accuracy``).
        value: Its value there (None when the metric is not in the store yet).
        epoch: Completed epochs when it was reached.
        iter: Completed iterations when it was reached.
    """

    metric: str
    value: float | None
    epoch: int
    iter: int


def _best(client: MlflowClient, run: Run) -> BestCheckpoint | None:
    """The run's best checkpoint from its tags; the value from the metric's history.

    The evaluation is logged at step ``iter + 1`` (the logger hooks' step after a
    training epoch), ``iter`` being the completed iterations the tag records.
    """
    tags = run.data.tags
    name = tags.get(TAG_BEST_METRIC)
    if not name or not tags.get(TAG_BEST_ITER, "").isdigit():
        return None
    metric, done = f"val/{name}", int(tags[TAG_BEST_ITER])
    epoch = int(tags[TAG_BEST_EPOCH]) if tags.get(TAG_BEST_EPOCH, "").isdigit() else 0
    history = client.get_metric_history(run.info.run_id, metric)
    value = next((m.value for m in history if m.step == done + 1), None)
    return BestCheckpoint(metric=metric, value=value, epoch=epoch, iter=done)


def tracking_uri() -> str:
    """The store ``trackcfg run`` writes to: ``MLFLOW_TRACKING_URI``, else ``./mlflow.db``."""
    from trackcfg.tracking.mlflow_run import resolve_tracking_uri

    return resolve_tracking_uri()


def store_exists() -> bool:
    """False when the store is a local SQLite file that does not exist yet (nothing ran here)."""
    from trackcfg.tracking.mlflow_run import local_sqlite_path

    db = local_sqlite_path(tracking_uri())
    return db is None or db.exists()


def check_port_free(host: str, port: int) -> None:
    """Refuse to start a server on ``host:port`` when something listens there already.

    ``trackcfg ui`` would otherwise print its URL, fail to bind and exit 0 while the
    URL shows whatever else listens there (another store's UI). Checked by binding
    as uvicorn does (``SO_REUSEADDR``, so a port in TIME_WAIT counts as free); a
    server that takes the port in between still makes MLflow fail.

    Raises:
        PortInUseError: the port cannot be bound.
    """
    import os
    import socket

    from trackcfg.errors import PortInUseError

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        raise PortInUseError(
            f"cannot serve the MLflow UI on {host}:{port}: "
            + (os.strerror(error.errno) if error.errno else str(error)),
            hint="another server has the port (maybe another store's UI): stop it, or pass "
            "--port with a free one",
        ) from error


def hash_filter(config_hash: str | None) -> str:
    """An MLflow search filter for runs with ``config_hash`` (a prefix when shorter than 32).

    Example:
        >>> hash_filter("ab12cd34")
        "tags.`trackcfg.config_hash` LIKE 'ab12cd34%'"
    """
    if config_hash is None:
        return f"tags.`{TAG_CONFIG_HASH}` LIKE '%'"
    if any(c not in "0123456789abcdef" for c in config_hash.lower()):
        from trackcfg.errors import TrackingError

        raise TrackingError(f"{config_hash!r} is not a config hash (hexadecimal digits)")
    config_hash = config_hash.lower()
    if len(config_hash) >= 32:
        return f"tags.`{TAG_CONFIG_HASH}` = '{config_hash}'"
    return f"tags.`{TAG_CONFIG_HASH}` LIKE '{config_hash}%'"


def _experiments(client: MlflowClient, experiment: str | None) -> dict[str, str]:
    from trackcfg.config.keypath import suggest
    from trackcfg.errors import TrackingError

    if experiment is not None:
        # One lookup, not a scan of every experiment (a team store has thousands).
        named = client.get_experiment_by_name(experiment)
        if named is not None and named.lifecycle_stage == "active":
            return {named.experiment_id: named.name}
    by_id: dict[str, str] = {}
    token: str | None = None
    while True:
        page = client.search_experiments(max_results=_EXPERIMENT_PAGE, page_token=token)
        by_id.update((e.experiment_id, e.name) for e in page)
        token = page.token
        if not token:
            break
    if experiment is None:
        return by_id
    close = suggest(experiment, by_id.values())
    raise TrackingError(
        f"no experiment named {experiment!r} in {tracking_uri()}",
        hint=f"did you mean {', '.join(repr(c) for c in close)}?" if close else None,
    )


def _row(run: Run, experiments: Mapping[str, str], client: MlflowClient) -> RunRow:
    tags = run.data.tags
    return RunRow(
        run_id=run.info.run_id,
        name=run.info.run_name or "",
        experiment=experiments.get(run.info.experiment_id, run.info.experiment_id),
        status=run.info.status,
        start_time_ms=run.info.start_time,
        config_hash=tags.get(TAG_CONFIG_HASH, ""),
        git_commit=tags.get(TAG_GIT_COMMIT),
        git_dirty=tags.get(TAG_GIT_DIRTY, "").lower() == "true",
        metrics=dict(run.data.metrics),
        verified=tags.get(TAG_VERIFIED),
        verifies=tags.get(TAG_VERIFIES),
        best=_best(client, run),
        job_key=tags.get(TAG_JOB_KEY),
    )


def find_runs(
    config_hash: str | None = None, experiment: str | None = None, *, verified: bool = False
) -> list[RunRow]:
    """trackcfg runs in the store, newest first.

    Args:
        config_hash: Only runs with this config hash (or hash prefix).
        experiment: Only runs in the experiment of this name.
        verified: Only runs ``trackcfg verify`` proved bitwise reproducible.

    Raises:
        TrackingError: The experiment does not exist, or the hash is not hexadecimal.
    """
    from trackcfg.tracking.mlflow_run import open_client

    if not store_exists():
        return []  # a read must not create an empty store as a side effect
    client = open_client(tracking_uri())
    experiments = _experiments(client, experiment)
    if not experiments:
        return []
    rows: list[RunRow] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            experiment_ids=list(experiments),
            filter_string=hash_filter(config_hash),
            order_by=["attributes.start_time DESC"],
            max_results=_SEARCH_PAGE,
            page_token=token,
        )
        rows.extend(
            row
            for row in (_row(run, experiments, client) for run in page)
            if not verified or row.verified == "bitwise"
        )
        token = page.token
        if not token:
            return rows


def find_resumable(
    config_hash: str, experiment: str | None = None, *, job_key: str | None = None
) -> str | None:
    """The newest run with ``config_hash`` that did not finish (killed, failed, running), or None.

    A RUNNING run may be a preempted one whose status nobody could set, or one still
    training elsewhere; ``trackcfg run --resume auto`` continues it either way, as
    mmengine's ``resume='auto'`` continues the newest checkpoint. Runs made by
    ``trackcfg verify`` are never picked.

    Args:
        config_hash: The config hash (or a prefix of it).
        experiment: Only runs of this experiment.
        job_key: Only runs made by this job (tag ``trackcfg.job_key``): how a
            restarted cluster job finds its own run (``trackcfg.session.cluster``).
    """
    for row in find_runs(config_hash, experiment):
        # A verifying run stopped early is not a run to continue.
        if row.status == "FINISHED" or row.verifies is not None:
            continue
        if job_key is None or row.job_key == job_key:
            return row.run_id
    return None
