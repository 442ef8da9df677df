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

from trackcfg.tracking.mlflow_run import TAG_CONFIG_HASH, TAG_GIT_COMMIT, TAG_GIT_DIRTY

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

__all__ = [
    "RunRow",
    "find_resumable",
    "find_runs",
    "hash_filter",
    "store_exists",
    "tracking_uri",
]

_SEARCH_PAGE = 1000
#: Experiments per search page: MLflow returns at most 1000 unless paged, and a team
#: store can hold more.
_EXPERIMENT_PAGE = 1000


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run, as ``trackcfg runs`` lists it."""

    run_id: str
    name: str
    experiment: str
    status: str
    start_time_ms: int | None
    config_hash: str
    git_commit: str | None
    git_dirty: bool
    metrics: Mapping[str, float]


def tracking_uri() -> str:
    """The store ``trackcfg run`` writes to: ``MLFLOW_TRACKING_URI``, else ``./mlflow.db``."""
    from trackcfg.tracking.mlflow_run import resolve_tracking_uri

    return resolve_tracking_uri()


def store_exists() -> bool:
    """False when the store is a local SQLite file that does not exist yet (nothing ran here)."""
    from trackcfg.tracking.mlflow_run import local_sqlite_path

    db = local_sqlite_path(tracking_uri())
    return db is None or db.exists()


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


def _row(run: Run, experiments: Mapping[str, str]) -> RunRow:
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
    )


def find_runs(config_hash: str | None = None, experiment: str | None = None) -> list[RunRow]:
    """trackcfg runs in the store, newest first.

    Args:
        config_hash: Only runs with this config hash (or hash prefix).
        experiment: Only runs in the experiment of this name.

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
        rows.extend(_row(run, experiments) for run in page)
        token = page.token
        if not token:
            return rows


def find_resumable(config_hash: str, experiment: str | None = None) -> str | None:
    """The newest run with ``config_hash`` that did not finish (killed, failed, running), or None.

    A RUNNING run may be a preempted one whose status nobody could set, or one still
    training elsewhere; ``trackcfg run --resume auto`` continues it either way, as
    mmengine's ``resume='auto'`` continues the newest checkpoint.
    """
    for row in find_runs(config_hash, experiment):
        if row.status != "FINISHED":
            return row.run_id
    return None
