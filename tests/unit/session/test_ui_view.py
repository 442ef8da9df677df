"""`save_ui_view`: the MLflow UI's shared view of runs grouped by (or filtered to) a hash."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from trackcfg.session.ui_view import save_ui_view

HASH_A = "a" * 32
HASH_B = "b" * 32


@pytest.fixture
def store(sqlite_store: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """The default experiment with two runs of HASH_A and one of HASH_B."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_store)
    client = MlflowClient(sqlite_store)
    experiment = client.create_experiment("trackcfg")
    for config_hash in (HASH_A, HASH_A, HASH_B):
        run = client.create_run(experiment, tags={"trackcfg.config_hash": config_hash})
        client.log_metric(run.info.run_id, "val/accuracy", 0.9)
    return client


def test_the_view_of_a_hash_filters_groups_and_shows_the_hash_column(
    store: MlflowClient,
) -> None:
    view = save_ui_view(HASH_A[:8])
    assert view is not None and view.runs == 2
    experiment = store.get_experiment(view.experiment_id)
    assert view.route == (
        f"#/experiments/{view.experiment_id}/runs?workflowType=machine_learning"
        f"&viewStateShareKey=trackcfg-{HASH_A[:8]}"
    )
    state = json.loads(experiment.tags[f"mlflow.sharedViewState.trackcfg-{HASH_A[:8]}"])
    assert state["searchFilter"] == f"tags.`trackcfg.config_hash` LIKE '{HASH_A[:8]}%'"
    assert state["groupBy"]["groupByKeys"] == [
        {"mode": "tag", "groupByData": "trackcfg.config_hash"}
    ]
    assert "tags.`trackcfg.config_hash`" in state["selectedColumns"]
    assert "metrics.`val/accuracy`" in state["selectedColumns"]


def test_without_a_hash_the_view_groups_every_run_of_the_default_experiment(
    store: MlflowClient,
) -> None:
    view = save_ui_view()
    assert view is not None and view.runs == 3
    assert view.route.endswith("viewStateShareKey=trackcfg-all")


def test_no_run_of_the_hash_gives_no_view(store: MlflowClient) -> None:
    assert save_ui_view("c" * 8) is None
