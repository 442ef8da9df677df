"""MLflow run helpers against a real SQLite store: URIs, experiments, params within limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from trackcfg.tracking import mlflow_run as mr


class Net:
    pass


@pytest.mark.parametrize(
    ("data", "params", "truncated"),
    [
        ({"a": 1, "b": {"c": "x"}}, {"a": "1", "b.c": "x"}, ()),
        ({"t": (1, 2), "l": [1, "a"]}, {"t": "(1, 2)", "l": "[1, 'a']"}, ()),
        ({"e": {}, "n": None, "f": 0.1}, {"e": "{}", "n": "None", "f": "0.1"}, ()),
        ({"cls": Net}, {"cls": f"{__name__}.Net"}, ()),
        ({"a+b": 1}, {"a_b": "1"}, ("a+b",)),
        ({"a//b": 1}, {"a_b": "1"}, ("a//b",)),
        ({"../x": 1}, {"___x": "1"}, ("../x",)),
    ],
)
def test_flatten_params_dotted_keys_and_readable_values(
    data: dict[str, object], params: dict[str, str], truncated: tuple[str, ...]
) -> None:
    flat = mr.flatten_params(data)
    assert flat.params == params
    assert flat.truncated == truncated


def test_flatten_params_cuts_values_over_mlflows_limit_and_lists_them() -> None:
    flat = mr.flatten_params({"short": "x", "long": "y" * 7000})
    assert len(flat.params["long"]) == mr.MAX_PARAM_VALUE_LENGTH
    assert flat.params["long"].endswith("[truncated]")
    assert flat.truncated == ("long",)


def test_flatten_params_cuts_keys_over_mlflows_limit() -> None:
    key = "k" * 300
    flat = mr.flatten_params({key: 1})
    assert [len(k) for k in flat.params] == [mr.MAX_PARAM_KEY_LENGTH]
    assert flat.truncated == (key,)


def test_log_params_sends_more_than_one_batch_and_tags_truncated_keys(sqlite_store: str) -> None:
    uri = sqlite_store
    client = mr.open_client(uri)
    experiment = mr.get_or_create_experiment(client, "exp", uri)
    run_id = mr.create_run(client, experiment, name="r@0", tags={})
    data: dict[str, object] = {f"p{i}": i for i in range(250)}
    data["long"] = "z" * 6500
    mr.log_params(client, run_id, mr.flatten_params(data))
    run = client.get_run(run_id)
    assert len(run.data.params) == 251
    assert run.data.params["p249"] == "249"
    assert json.loads(run.data.tags[mr.TAG_TRUNCATED_PARAMS]) == ["long"]


def test_default_tracking_uri_is_an_absolute_sqlite_file_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = mr.resolve_tracking_uri()
    assert uri == "sqlite:///" + (tmp_path.resolve() / "mlflow.db").as_posix()
    assert mr.local_sqlite_path(uri) == tmp_path.resolve() / "mlflow.db"


def test_tracking_uri_comes_from_the_environment_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert mr.resolve_tracking_uri() == "http://127.0.0.1:5999"


def test_new_experiments_of_a_sqlite_store_keep_artifacts_beside_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_store: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = sqlite_store
    client = mr.open_client(uri)
    experiment_id = mr.get_or_create_experiment(client, "my exp", uri)
    location = client.get_experiment(experiment_id).artifact_location
    assert location == (tmp_path / "store" / "mlruns" / "my_exp").as_uri()
    assert mr.get_or_create_experiment(client, "my exp", uri) == experiment_id


def test_get_run_of_an_unknown_id_raises_run_not_found(sqlite_store: str) -> None:
    from trackcfg.errors import RunNotFoundError

    client: MlflowClient = mr.open_client(sqlite_store)
    with pytest.raises(RunNotFoundError, match=r"no run 'f+'"):
        mr.get_run(client, "f" * 32)


def test_run_name_is_stem_at_short_hash() -> None:
    assert mr.run_name("configs/digits/cnn.py", "abcdef0123456789" * 2) == "cnn@abcdef01"


@pytest.fixture
def no_mlflow_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """`to_client_uri` writes MLflow's credential variables: keep that inside the test."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_mlflow_credentials")
def test_an_http_store_s_credentials_move_to_mlflow_s_environment_variables() -> None:
    import os

    from mlflow.utils.credentials import get_default_host_creds

    os.environ["MLFLOW_TRACKING_URI"] = "http://alice:p%40ss%2Fw%23rd@127.0.0.1:5000/"
    uri = mr.resolve_tracking_uri()
    assert uri == "http://127.0.0.1:5000/"
    assert os.environ["MLFLOW_TRACKING_URI"] == uri  # what child processes inherit
    creds = get_default_host_creds(uri)  # what MLflow sends: basic auth, decoded
    assert (creds.host, creds.username, creds.password) == (uri, "alice", "p@ss/w#rd")
    assert mr.to_client_uri(uri) == uri


@pytest.mark.usefixtures("no_mlflow_credentials")
def test_a_database_store_keeps_its_credentials_for_its_driver() -> None:
    import os

    uri = "postgresql://mlflow:pw@db.internal:5432/mlflow"
    assert mr.to_client_uri(uri) == uri
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ


@pytest.mark.usefixtures("no_mlflow_credentials")
@pytest.mark.parametrize(
    ("env", "recorded", "expected"),
    [
        # the environment names the recorded store: its credentials are used
        ("postgresql://u:pw@db/mlflow", "postgresql://db/mlflow", "postgresql://u:pw@db/mlflow"),
        ("http://u:pw@h:5000", "http://h:5000", "http://h:5000"),
        # another store: the recorded one, credentials from MLFLOW_TRACKING_USERNAME/PASSWORD
        ("postgresql://u:pw@other/mlflow", "postgresql://db/mlflow", "postgresql://db/mlflow"),
        (None, "http://h:5000", "http://h:5000"),
    ],
)
def test_a_journal_s_redacted_store_gets_its_credentials_from_the_environment(
    env: str | None, recorded: str, expected: str
) -> None:
    import os

    if env is not None:
        os.environ["MLFLOW_TRACKING_URI"] = env
    assert mr.resolve_recorded_uri(recorded) == expected
    if env is not None and env.startswith("http") and expected == recorded:
        assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "pw"


def test_experiments_open_in_the_ui_s_training_view(sqlite_store: str) -> None:
    client = MlflowClient(sqlite_store)
    created = mr.get_or_create_experiment(client, "new", sqlite_store)
    older = client.create_experiment("older")  # made before trackcfg tagged experiments
    mr.get_or_create_experiment(client, "older", sqlite_store)
    for experiment_id in (created, older):
        tags = client.get_experiment(experiment_id).tags
        assert tags["mlflow.experimentKind"] == "custom_model_development"


def test_an_experiment_s_own_kind_is_kept(sqlite_store: str) -> None:
    client = MlflowClient(sqlite_store)
    chosen = client.create_experiment("genai", tags={"mlflow.experimentKind": "genai_development"})
    mr.get_or_create_experiment(client, "genai", sqlite_store)
    assert client.get_experiment(chosen).tags["mlflow.experimentKind"] == "genai_development"


def test_datasets_are_the_run_s_inputs_with_digest_and_context(sqlite_store: str) -> None:
    client = MlflowClient(sqlite_store)
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    source = '{"key_path": "data.train"}'
    record = mr.DatasetRecord("DigitsDataset", "0123456789ab", "train", source)
    mr.log_datasets(client, run_id, [record])
    (logged,) = client.get_run(run_id).inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest) == ("DigitsDataset", "0123456789ab")
    assert [(t.key, t.value) for t in logged.tags] == [("mlflow.data.context", "train")]


def test_a_finishing_resume_removes_the_failure_s_section_of_the_note_only(
    sqlite_store: str,
) -> None:
    client = MlflowClient(sqlite_store)
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    note = mr.with_failure_note(mr.prepend_note("the description", "forced"), "boom")
    client.set_tag(run_id, mr.TAG_NOTE, mr.with_failure_note(note, "boom again"))
    client.set_tag(run_id, mr.TAG_ERROR, "boom again")
    mr.clear_failure_tags(client, run_id)
    tags = client.get_run(run_id).data.tags
    assert tags[mr.TAG_NOTE] == f"forced{mr.NOTE_SEPARATOR}the description"
    assert mr.TAG_ERROR not in tags
