"""Finding runs: every experiment of a store, however many pages they take."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from trackcfg.session import catalog

HASH = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    uri = "sqlite:///" + (tmp_path / "mlflow.db").as_posix()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(uri)


def test_runs_in_experiments_past_the_first_search_page_are_found(
    store: MlflowClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [
        store.create_experiment(f"e{i}", artifact_location=(tmp_path / f"a{i}").as_uri())
        for i in range(3)
    ]
    for experiment_id in ids:
        store.create_run(experiment_id, tags={"trackcfg.config_hash": HASH})
    # MLflow answers at most 1000 experiments per page; three with a page of two
    # stand for a team store with more than a thousand.
    original = MlflowClient.search_experiments

    def capped(self: MlflowClient, *args: object, **kwargs: object) -> object:
        kwargs["max_results"] = min(int(kwargs.get("max_results") or 1000), 2)  # type: ignore[call-overload]
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(MlflowClient, "search_experiments", capped)
    monkeypatch.setattr(catalog, "_EXPERIMENT_PAGE", 2, raising=False)
    found = catalog.find_runs(HASH[:8])
    assert sorted(r.experiment for r in found) == ["e0", "e1", "e2"]
    # ... and one named experiment is looked up, wherever it is listed.
    assert [r.experiment for r in catalog.find_runs(HASH, experiment="e0")] == ["e0"]
    with pytest.raises(Exception, match="no experiment named 'e9'"):
        catalog.find_runs(HASH, experiment="e9")
