"""A saved view of MLflow's runs table: runs grouped by config hash, or those of one hash.

MLflow 3's UI (3.17) restores a runs-table view from the experiment tag
``mlflow.sharedViewState.<key>`` when its URL carries ``?viewStateShareKey=<key>``:
what its own "Share" button writes. The tag holds JSON with the search facets
(``searchFilter``, ``orderByKey``, ``orderByAsc``) and the table's state
(``selectedColumns``, ``groupBy``). trackcfg writes one such view per question,
under a fixed key (``trackcfg-all``, ``trackcfg-<hash>``), so `trackcfg ui` can
print a link that opens the runs filtered by config hash, grouped by the
``trackcfg.config_hash`` tag, with the hash, source, dataset and latest metrics as
columns: nothing to click. The link also names the UI's "Model training" mode
(``workflowType=machine_learning``), which MLflow 3 otherwise takes from the
browser's last choice, GenAI by default. The view is rewritten each time (the metric columns
follow the runs); a user's own shared views are never touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from trackcfg.session.catalog import find_runs, hash_filter, store_exists, tracking_uri
from trackcfg.tracking.mlflow_run import DEFAULT_EXPERIMENT, TAG_CONFIG_HASH

__all__ = ["UiView", "save_ui_view"]

#: The experiment tag prefix MLflow's UI reads shared views from.
SHARED_VIEW_TAG = "mlflow.sharedViewState."
_MAX_METRIC_COLUMNS = 4
#: The URL parameter that puts the UI in its "Model training" mode for this page (the
#: mode a user last picked, else GenAI, is kept in the browser, not in the experiment).
WORKFLOW_PARAM = "workflowType=machine_learning"


@dataclass(frozen=True, slots=True)
class UiView:
    """A saved view, and where it opens.

    Attributes:
        experiment_id: The experiment it belongs to.
        route: The UI route to append to the UI's address (``#/experiments/...``).
        search: Its search filter (also what to paste into the UI's search box).
        runs: How many runs it shows.
        elsewhere: Names of other experiments holding runs of the hash (not shown).
    """

    experiment_id: str
    route: str
    search: str
    runs: int
    elsewhere: tuple[str, ...] = ()


def save_ui_view(config_hash: str | None = None, experiment: str | None = None) -> UiView | None:
    """Save the view of runs with ``config_hash`` (every trackcfg run when None).

    The view goes to the experiment of the newest such run (``experiment`` when
    given, else for every run the default experiment ``trackcfg``).

    Returns:
        The view, or None when there is no run to show (or no store yet).

    Raises:
        TrackingError: the hash is not hexadecimal; ``experiment`` does not exist.
    """
    from trackcfg.tracking.mlflow_run import open_client, set_experiment_tag

    search = hash_filter(config_hash)
    if not store_exists():
        return None
    if config_hash is None and experiment is None:
        experiment = DEFAULT_EXPERIMENT
    rows = find_runs(config_hash, experiment)
    if not rows:
        return None
    client = open_client(tracking_uri())
    name = rows[0].experiment
    found = client.get_experiment_by_name(name)
    if found is None:
        return None
    shown = [r for r in rows if r.experiment == name]
    # Validation metrics first (they tell runs apart), then training ones, then the rest.
    keys = {k for r in shown for k in r.metrics}
    metrics = sorted(keys, key=lambda k: (not k.startswith("val/"), not k.startswith("train/"), k))
    state = {
        "searchFilter": search,
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "selectedColumns": [
            f"tags.`{TAG_CONFIG_HASH}`",
            "attributes.`Source`",
            "attributes.`Dataset`",
            "attributes.`User`",
            *(f"metrics.`{k}`" for k in metrics[:_MAX_METRIC_COLUMNS]),
        ],
        "groupBy": {
            "aggregateFunction": "average",
            "groupByKeys": [{"mode": "tag", "groupByData": TAG_CONFIG_HASH}],
        },
    }
    key = f"trackcfg-{config_hash.lower() if config_hash else 'all'}"
    experiment_id = str(found.experiment_id)
    set_experiment_tag(client, experiment_id, SHARED_VIEW_TAG + key, json.dumps(state))
    return UiView(
        experiment_id=experiment_id,
        route=f"#/experiments/{experiment_id}/runs?{WORKFLOW_PARAM}&viewStateShareKey={key}",
        search=search,
        runs=len(shown),
        elsewhere=tuple(sorted({r.experiment for r in rows} - {name})),
    )
