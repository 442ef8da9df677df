"""MLflow runs for trackcfg: the store, experiments, run tags and config params.

The one seam to MLflow: other modules name MLflow's types for annotations only and
call the functions here (clients, tags, metric batches, artifact repositories,
errors).

Everything goes through an explicit ``MlflowClient``; MLflow's process-global
active run (``mlflow.start_run``) is never used. mlflow is imported inside the
functions that need it, so ``import trackcfg`` stays fast.

The store is ``MLFLOW_TRACKING_URI`` when set, else MLflow's embedded SQLite
store ``sqlite:///<cwd>/mlflow.db`` (MLflow 3.x's own default, made absolute so
that a later ``cd`` cannot move it). For a local SQLite store MLflow 3.17 puts
artifacts in ``./mlruns/<experiment id>`` relative to the *current directory*;
experiments trackcfg creates get ``<directory of mlflow.db>/mlruns/<name>``
instead, so artifacts always sit beside the database whatever directory a run
starts from. A tracking server decides its artifact location itself.

Credentials never reach MLflow inside a URI it could print: MLflow writes the URI
it was given into its "View run … at: URI" line, its artifact URLs and its error
messages. `to_client_uri` moves an http(s) URI's user and password into this
process's ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (MLflow's own
basic-auth settings, read at every request and inherited by the tracking agent)
and MLflow gets the URI without them. A database URI keeps its credentials (its
driver reads them only there); trackcfg shows any URI through `redact_url`.

Params are the flattened config (dotted key paths, dicts flattened, lists kept
whole) within MLflow's limits (mlflow.utils.validation in 3.17: 100 params per
``log_batch``, keys of at most 250 characters matching ``[/\\w.\\- :]``, values
of at most 6,000 characters). A value over the limit is cut, a key MLflow
refuses is rewritten, and both are listed in the tag ``trackcfg.truncated_params``;
the complete config is always in the snapshot.

What MLflow's UI shows comes from its own conventions (MLflow 3.17): experiments
trackcfg creates are tagged ``mlflow.experimentKind = custom_model_development``,
which opens them in the UI's classic training view (runs, metrics, charts) instead
of the GenAI one; runs carry ``mlflow.source.name``/``mlflow.source.type``/
``mlflow.user`` ("Source", "Created by"), their datasets as run inputs with a
digest ("Dataset"), a description in ``mlflow.note.content``, and the git patch as
a ``.txt`` artifact, an extension the artifact viewer previews (it previews no
``.patch``). Notes stack: a failure or a forced resume puts its section above the
description (`prepend_note`), and a finishing resume removes only the failure's.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from trackcfg.errors import RunNotFoundError, TrackingError, first_line
from trackcfg.tracking.redaction import redact_text, redact_url, split_credentials

if TYPE_CHECKING:
    import numpy as np
    import torch
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.store.artifact.artifact_repo import ArtifactRepository

    from trackcfg.tracking.gitstate import GitState

__all__ = [
    "DEFAULT_EXPERIMENT",
    "EXPERIMENT_KIND_TRAINING",
    "FAILURE_NOTE",
    "MAX_PARAMS_PER_BATCH",
    "MAX_PARAM_KEY_LENGTH",
    "MAX_PARAM_VALUE_LENGTH",
    "MAX_TAG_VALUE_LENGTH",
    "NOTE_SEPARATOR",
    "PATCH_PREVIEW_ARTIFACT",
    "TAG_BEST_CHECKPOINT",
    "TAG_BEST_EPOCH",
    "TAG_BEST_ITER",
    "TAG_BEST_METRIC",
    "TAG_CHECKPOINT_PREFIX",
    "TAG_CONFIG_FILE",
    "TAG_CONFIG_HASH",
    "TAG_ERROR",
    "TAG_EXPERIMENT_KIND",
    "TAG_FORCED_CHANGES",
    "TAG_GIT_DIRTY",
    "TAG_LATEST_CHECKPOINT",
    "TAG_LATEST_CHECKPOINT_DIGEST",
    "TAG_LATEST_CHECKPOINT_EPOCH",
    "TAG_LATEST_CHECKPOINT_ITER",
    "TAG_LATEST_CHECKPOINT_TIME",
    "TAG_LINEAGE_HASH",
    "TAG_LOAD_FROM",
    "TAG_LOAD_FROM_DIGEST",
    "TAG_NOTE",
    "TAG_PREEMPTED",
    "TAG_RESUMED_FROM",
    "TAG_RESUME_COUNT",
    "TAG_SNAPSHOT_DIGEST",
    "TAG_TRUNCATED_PARAMS",
    "TAG_VERIFIED",
    "TAG_VERIFIED_BY",
    "TAG_VERIFIED_TIME",
    "TAG_VERIFIES",
    "TAG_WORK_DIR",
    "TAG_WORLD_SIZE_CHANGE",
    "DatasetRecord",
    "FlatParams",
    "artifact_repository",
    "clear_failure_tags",
    "clear_preempted_tag",
    "create_run",
    "download_artifact_uri",
    "flatten_params",
    "get_or_create_experiment",
    "get_run",
    "git_tags",
    "is_store_error",
    "local_sqlite_path",
    "log_datasets",
    "log_metric_batch",
    "log_model_directory",
    "log_params",
    "log_text_artifact",
    "open_client",
    "prepend_note",
    "refused_credentials",
    "register_model_version",
    "resolve_recorded_uri",
    "resolve_tracking_uri",
    "run_name",
    "save_pytorch_model",
    "set_experiment_tag",
    "set_tags",
    "source_tags",
    "store_errors",
    "terminate_run",
    "to_client_uri",
    "unusable_store",
    "with_failure_note",
]

#: Experiment used when none is given.
DEFAULT_EXPERIMENT = "trackcfg"

# MLflow 3.17 limits (mlflow/utils/validation.py).
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000

TAG_CONFIG_HASH = "trackcfg.config_hash"
TAG_LINEAGE_HASH = "trackcfg.lineage_hash"
#: Root digest (``sha256:<hex>``) of the snapshot's manifest; see `trackcfg.tracking.manifest`.
TAG_SNAPSHOT_DIGEST = "trackcfg.snapshot_digest"
TAG_CONFIG_FILE = "trackcfg.config_file"
TAG_GIT_DIRTY = "trackcfg.git_dirty"
TAG_WORK_DIR = "trackcfg.work_dir"
TAG_TRUNCATED_PARAMS = "trackcfg.truncated_params"
TAG_LATEST_CHECKPOINT = "trackcfg.latest_checkpoint"
TAG_LATEST_CHECKPOINT_DIGEST = "trackcfg.latest_checkpoint_digest"
TAG_LATEST_CHECKPOINT_ITER = "trackcfg.latest_checkpoint_iter"
TAG_LATEST_CHECKPOINT_EPOCH = "trackcfg.latest_checkpoint_epoch"
TAG_LATEST_CHECKPOINT_TIME = "trackcfg.latest_checkpoint_time"
#: The best checkpoint `EvalHook(save_best=...)` kept (artifact path), the metric that
#: chose it, and the epoch/iteration where it was reached.
TAG_BEST_CHECKPOINT = "trackcfg.best_checkpoint"
TAG_BEST_METRIC = "trackcfg.best_metric"
TAG_BEST_EPOCH = "trackcfg.best_epoch"
TAG_BEST_ITER = "trackcfg.best_iter"
#: Where a run's initial weights came from (``load_from``) and the digest of their bytes.
TAG_LOAD_FROM = "trackcfg.load_from"
TAG_LOAD_FROM_DIGEST = "trackcfg.load_from_digest"
TAG_RESUME_COUNT = "trackcfg.resume_count"
TAG_RESUMED_FROM = "trackcfg.resumed_from"
TAG_ERROR = "trackcfg.error"
#: On a run stopped by a preemption signal after its checkpoint was saved (status
#: KILLED): ``iter=<i> epoch=<e> signal=<name>``, the boundary reached. Removed when
#: the run later ends otherwise (a resume finished it, or it failed).
TAG_PREEMPTED = "trackcfg.preempted"
TAG_FORCED_CHANGES = "trackcfg.forced_changes"
#: A resume forced past a world-size change: ``from=N to=M checkpoint=NAME``.
TAG_WORLD_SIZE_CHANGE = "trackcfg.world_size_change"
#: One tag per uploaded checkpoint, ``trackcfg.checkpoint.<file name>``, that stays
#: when keep-last-K deletes the file: ``iter=<i> epoch=<e> xxh3-128=<file> state=<state>``.
TAG_CHECKPOINT_PREFIX = "trackcfg.checkpoint."
#: On a run made by ``trackcfg verify``: the run it verifies.
TAG_VERIFIES = "trackcfg.verifies"
#: On a verified run: ``bitwise``, ``diverged@<step>`` or ``partial@<steps>``; the
#: verifying run's id; when (ms since the epoch).
TAG_VERIFIED = "trackcfg.verified"
TAG_VERIFIED_BY = "trackcfg.verified_by"
TAG_VERIFIED_TIME = "trackcfg.verified_time"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_GIT_BRANCH = "mlflow.source.git.branch"
TAG_GIT_REPO_URL = "mlflow.source.git.repoURL"
TAG_NOTE = "mlflow.note.content"
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_USER = "mlflow.user"
TAG_DATASET_CONTEXT = "mlflow.data.context"
#: Experiment tag that picks the UI's view (MLflow 3: GenAI unless told otherwise).
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
#: Its value for model training (the UI's "Machine learning" kind).
EXPERIMENT_KIND_TRAINING = "custom_model_development"
#: Between the sections of a run's note (the newest first, the description last).
NOTE_SEPARATOR = "\n\n---\n\n"
#: A copy of the snapshot's ``git.patch`` that the UI's artifact viewer previews.
PATCH_PREVIEW_ARTIFACT = "git.patch.txt"

_INVALID_KEY_CHARS = re.compile(r"[^/\w.\- :]")
_TRUNCATION_MARK = "…[truncated]"


def resolve_tracking_uri(cwd: Path | None = None) -> str:
    """The tracking URI a run uses, as MLflow is to get it (see `to_client_uri`).

    Args:
        cwd: Directory of the default store; defaults to the current directory.

    Returns:
        ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<cwd>/mlflow.db`` (absolute).
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return to_client_uri(env)
    base = (cwd or Path.cwd()).resolve()
    # An absolute posix path after "sqlite:///" gives MLflow's own form "sqlite:////abs".
    return "sqlite:///" + (base / "mlflow.db").as_posix()


def to_client_uri(uri: str) -> str:
    """``uri`` as this process hands it to MLflow: an HTTP store's credentials go to the env.

    For an ``http``/``https`` URI with a user (and password), sets
    ``MLFLOW_TRACKING_USERNAME`` (and ``MLFLOW_TRACKING_PASSWORD``) in this process's
    environment, replaces ``MLFLOW_TRACKING_URI`` there when it was ``uri`` (so that
    child processes inherit no credential in it), and returns ``uri`` without the
    userinfo. MLflow sends basic auth only with both a user and a password; a user
    alone takes the password from ``MLFLOW_TRACKING_PASSWORD``. Any other URI is
    returned as it is. Idempotent.

    Example:
        >>> to_client_uri("http://127.0.0.1:5000")
        'http://127.0.0.1:5000'
    """
    stripped, credentials = split_credentials(uri)
    if credentials is None or not uri.lower().startswith(("http://", "https://")):
        return uri
    os.environ["MLFLOW_TRACKING_USERNAME"] = credentials.username
    if credentials.password is not None:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = credentials.password
    if os.environ.get("MLFLOW_TRACKING_URI") == uri:
        os.environ["MLFLOW_TRACKING_URI"] = stripped
    return stripped


def resolve_recorded_uri(recorded: str) -> str:
    """The URI to reach the store that a journal recorded redacted, with its credentials.

    ``MLFLOW_TRACKING_URI`` when it names the same store (its redacted form is
    ``recorded``'s): it carries the credentials. Otherwise ``recorded`` itself, for
    which MLflow takes ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``
    from the environment (`refused_credentials` says when they are missing).
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and redact_url(env) == redact_url(recorded):
        return to_client_uri(env)
    return to_client_uri(recorded)


def refused_credentials(uri: str, run_id: str) -> TrackingError | None:
    """The error to report when the HTTP store at ``uri`` refuses our credentials, else None.

    One request without retries (a store that is away is not a credential problem,
    and must not hold a `sync` up): reading the run answered 401 or 403.
    """
    if not uri.lower().startswith(("http://", "https://")):
        return None
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(  # type: ignore[no-untyped-call]
            get_default_host_creds(uri),  # type: ignore[no-untyped-call]
            "/api/2.0/mlflow/runs/get",
            "GET",
            max_retries=0,
            timeout=10,
            params={"run_id": run_id},
        )
    except Exception:  # unreachable: the delivery's own retries report that
        return None
    if response.status_code not in (401, 403):
        return None
    return TrackingError(
        f"tracking store {redact_url(uri)}: the server refused the request "
        f"(HTTP {response.status_code}); run {run_id}'s journal records the store "
        "without its credentials",
        hint=_CREDENTIALS_HINT,
    )


_CREDENTIALS_HINT = (
    "set MLFLOW_TRACKING_URI to the store with its credentials (http://user:password@host), "
    "or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
)


def local_sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a local ``sqlite:///`` URI, else None.

    Examples:
        >>> local_sqlite_path("sqlite:////tmp/x/mlflow.db").as_posix()
        '/tmp/x/mlflow.db'
        >>> local_sqlite_path("http://127.0.0.1:5000") is None
        True
    """
    split = urlsplit(tracking_uri)
    if split.scheme != "sqlite" or split.path in ("", "/", "/:memory:"):
        return None
    # sqlite:///relative.db -> path "/relative.db"; sqlite:////abs.db -> "//abs.db".
    raw = unquote(split.path)
    path = Path(raw[1:]) if raw.startswith("/") else Path(raw)
    return path.resolve()


def open_client(tracking_uri: str) -> MlflowClient:
    """An ``MlflowClient`` for ``tracking_uri`` (see `to_client_uri`; creates a SQLite
    store's directory)."""
    from mlflow import MlflowClient

    uri = to_client_uri(tracking_uri)
    db = local_sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(uri)


def unusable_store(tracking_uri: str, error: BaseException) -> TrackingError:
    """The error to report for a store that cannot be used: its URI and ``error``'s first line.

    Both redacted; a store that refused the credentials gets a hint on giving them.
    """
    code = getattr(error, "error_code", "")
    if code == "PERMISSION_DENIED":
        # Logged in, but not allowed (MLflow's basic auth: no EDIT on the experiment).
        hint = (
            "the server knows who you are but does not let you do this: ask the "
            "experiment's owner or an admin for permission (MLflow's EDIT or MANAGE)"
        )
    elif code == "UNAUTHENTICATED":
        hint = _CREDENTIALS_HINT
    else:
        hint = "check that the server is running, or set MLFLOW_TRACKING_URI to another store"
    return TrackingError(
        f"tracking store {redact_url(tracking_uri)}: " + redact_text(first_line(error, limit=1000)),
        hint=hint,
    )


def get_or_create_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created when missing.

    For a local SQLite store a new experiment's artifacts go beside the database
    (``<db dir>/mlruns/<name>``); otherwise the store decides. An experiment with no
    ``mlflow.experimentKind`` tag gets the training kind (one that has a kind keeps it).

    Raises:
        TrackingError: the experiment exists but is deleted.
    """
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        location = None
        db = local_sqlite_path(tracking_uri)
        if db is not None:
            slug = re.sub(r"[^\w.\-]+", "_", name).strip("._") or "experiment"
            location = (db.parent / "mlruns" / slug).as_uri()
        kind = {TAG_EXPERIMENT_KIND: EXPERIMENT_KIND_TRAINING}
        try:
            return str(client.create_experiment(name, artifact_location=location, tags=kind))
        except MlflowException:
            # Another process created it meanwhile.
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage != "active":
        raise TrackingError(
            f"experiment {name!r} is deleted",
            hint="restore it in the MLflow UI or choose another --experiment",
        )
    if TAG_EXPERIMENT_KIND not in found.tags:
        client.set_experiment_tag(
            found.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND_TRAINING
        )
    return str(found.experiment_id)


def run_name(config_file: str, config_hash: str) -> str:
    """``<config stem>@<first 8 hex of the hash>``.

    Example:
        >>> run_name("configs/digits/mlp.py", "0123456789abcdef0123456789abcdef")
        'mlp@01234567'
    """
    return f"{Path(config_file).stem}@{config_hash[:8]}"


def git_tags(git: GitState) -> dict[str, str]:
    """The ``mlflow.source.git.*`` tags and ``trackcfg.git_dirty`` for a git state."""
    tags: dict[str, str] = {}
    if git.repo is None:
        return tags
    if git.commit is not None:
        tags[TAG_GIT_COMMIT] = git.commit
    if git.branch is not None:
        tags[TAG_GIT_BRANCH] = git.branch
    if git.repo_url is not None:
        tags[TAG_GIT_REPO_URL] = git.repo_url
    tags[TAG_GIT_DIRTY] = "true" if git.dirty else "false"
    return tags


def source_tags(config_file: str) -> dict[str, str]:
    """MLflow's source and user tags for a run of ``config_file`` (the UI's "Source",
    "Created by").

    The source is the leaf config, relative to the project root, as a local source;
    with the ``mlflow.source.git.commit`` tag the UI links it to the commit. The user
    is the login name, left out where the system has none for this process.

    Example:
        >>> tags = source_tags("configs/digits/cnn_sgd_10e.py")
        >>> tags["mlflow.source.name"], tags["mlflow.source.type"]
        ('configs/digits/cnn_sgd_10e.py', 'LOCAL')
    """
    import getpass

    tags = {TAG_SOURCE_NAME: config_file, TAG_SOURCE_TYPE: "LOCAL"}
    # No login name and no passwd entry (some containers): no user tag.
    with contextlib.suppress(OSError, KeyError):
        tags[TAG_USER] = getpass.getuser()
    return tags


def create_run(
    client: MlflowClient, experiment_id: str, *, name: str, tags: Mapping[str, str]
) -> str:
    """Create a run with ``name`` and ``tags``; returns its id."""
    run = client.create_run(experiment_id, run_name=name, tags=dict(tags))
    return str(run.info.run_id)


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    """Set several tags in one request (values cut to MLflow's tag limit)."""
    from mlflow.entities import RunTag

    items = [RunTag(k, _cut(v, MAX_TAG_VALUE_LENGTH)) for k, v in tags.items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, tags=items[start : start + MAX_PARAMS_PER_BATCH])


def set_experiment_tag(client: MlflowClient, experiment_id: str, key: str, value: str) -> None:
    """Set one tag of an experiment."""
    client.set_experiment_tag(experiment_id, key, value)


@dataclass(frozen=True, slots=True)
class DatasetRecord:
    """A dataset a run uses, as an MLflow run input.

    Attributes:
        name: What the UI shows (the dataset's type).
        digest: A short content digest (MLflow allows 36 characters).
        context: The split it is used for (``train``, ``val``, ``test``).
        source: JSON saying where it is defined.
        profile: JSON the UI shows with it (its config), or None.
    """

    name: str
    digest: str
    context: str
    source: str
    profile: str | None = None


def log_datasets(client: MlflowClient, run_id: str, datasets: Sequence[DatasetRecord]) -> None:
    """Log ``datasets`` as the run's inputs (the UI's "Dataset" column and run page)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = [
        DatasetInput(
            Dataset(d.name, d.digest, "code", d.source, profile=d.profile),
            tags=[InputTag(TAG_DATASET_CONTEXT, d.context)],
        )
        for d in datasets
    ]
    if inputs:
        client.log_inputs(run_id, datasets=inputs)


def log_text_artifact(client: MlflowClient, run_id: str, text: str, artifact_file: str) -> None:
    """Store ``text`` as the run's artifact ``artifact_file``."""
    client.log_text(run_id, text, artifact_file)


def get_run(client: MlflowClient, run_id: str) -> Run:
    """The run ``run_id``.

    Raises:
        RunNotFoundError: no such run in the store.
    """
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as error:
        if getattr(error, "error_code", "") in (
            "RESOURCE_DOES_NOT_EXIST",
            "INVALID_PARAMETER_VALUE",
        ):
            raise RunNotFoundError(
                f"no run {run_id!r} in the tracking store {redact_url(client.tracking_uri)}",
                hint="list runs with `trackcfg runs`; set MLFLOW_TRACKING_URI for another store",
            ) from error
        raise


@dataclass(frozen=True, slots=True)
class FlatParams:
    """The config as MLflow params.

    Attributes:
        params: Param key -> value string, each within MLflow's limits.
        truncated: Key paths whose value was cut or whose key had to be rewritten.
    """

    params: dict[str, str]
    truncated: tuple[str, ...]


def flatten_params(data: Mapping[str, object]) -> FlatParams:
    """Flatten a resolved config into MLflow params.

    Dicts are flattened into dotted key paths; every other value (lists and
    tuples included) becomes one param: strings as they are, the rest as
    ``repr``. An empty dict is the param ``"{}"``.

    Example:
        >>> flatten_params({"model": {"depth": 50, "name": "r"}, "x": (1, 2)}).params
        {'model.depth': '50', 'model.name': 'r', 'x': '(1, 2)'}
    """
    params: dict[str, str] = {}
    truncated: list[str] = []
    for key_path, value in _leaves(data, ""):
        text = value if isinstance(value, str) else _repr(value)
        key = _param_key(key_path)
        cut = _cut(text, MAX_PARAM_VALUE_LENGTH)
        if key != key_path or cut != text:
            truncated.append(key_path)
        while key in params:  # a rewritten key collided with another one
            key = _param_key(key[: MAX_PARAM_KEY_LENGTH - 2] + "_" + str(len(params) % 10))
        params[key] = cut
    return FlatParams(params=params, truncated=tuple(truncated))


def log_params(client: MlflowClient, run_id: str, flat: FlatParams) -> None:
    """Log ``flat`` in batches of 100 and list truncated key paths in a tag."""
    from mlflow.entities import Param, RunTag

    items = [Param(k, v) for k, v in flat.params.items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])
    if flat.truncated:
        text = json.dumps(list(flat.truncated))
        if len(text) > MAX_TAG_VALUE_LENGTH:
            text = _cut(text, MAX_TAG_VALUE_LENGTH)
        client.log_batch(run_id, tags=[RunTag(TAG_TRUNCATED_PARAMS, text)])


def _leaves(data: Mapping[str, object], prefix: str) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_leaves(value, path + "."))
        else:
            out.append((path, value))
    return out


def _repr(value: object) -> str:
    if isinstance(value, Mapping):
        return "{}" if not value else repr(dict(value))
    if isinstance(value, type) or callable(value):
        module = getattr(value, "__module__", None)
        name = getattr(value, "__qualname__", None)
        if module and name:
            return f"{module}.{name}"
    return repr(value)


def _param_key(key_path: str) -> str:
    key = _INVALID_KEY_CHARS.sub("_", key_path)
    norm = posixpath.normpath(key) if key else "_"
    if norm != key or norm in (".", "") or norm.startswith(("..", "/")):
        # MLflow refuses keys that resolve to another path ("a//b", "a/../b", "/a").
        key = re.sub(r"/+", "_", key).replace("..", "__") or "_"
    if len(key) > MAX_PARAM_KEY_LENGTH:
        key = key[:MAX_PARAM_KEY_LENGTH]
    return key


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(_TRUNCATION_MARK)] + _TRUNCATION_MARK


#: How the note of a FAILED run starts (`clear_failure_tags` recognises it).
FAILURE_NOTE = "Run failed: "


def prepend_note(note: str, section: str) -> str:
    """``note`` with ``section`` above it (separated by `NOTE_SEPARATOR`).

    Example:
        >>> prepend_note("Config hash 57a1", "Run failed: boom")
        'Run failed: boom\\n\\n---\\n\\nConfig hash 57a1'
        >>> prepend_note("", "Run failed: boom")
        'Run failed: boom'
    """
    return f"{section}{NOTE_SEPARATOR}{note}" if note else section


def with_failure_note(note: str, error: str) -> str:
    """``note`` with the failure section for ``error`` on top (replacing an earlier one).

    Example:
        >>> with_failure_note("Run failed: old\\n\\n---\\n\\ndesc", "new")
        'Run failed: new\\n\\n---\\n\\ndesc'
    """
    if note.startswith(FAILURE_NOTE):
        note = note.partition(NOTE_SEPARATOR)[2]
    return prepend_note(note, f"{FAILURE_NOTE}{error}")


def clear_failure_tags(client: MlflowClient, run_id: str) -> None:
    """Delete the error tag, and the failure note's section, that an earlier end left.

    For a run that now ends FINISHED (a resume finished it). The sections below the
    failure's (the description, a forced resume's) stay.
    """
    tags = client.get_run(run_id).data.tags
    for stale in (TAG_ERROR, TAG_PREEMPTED):
        if stale in tags:
            client.delete_tag(run_id, stale)
    note = tags.get(TAG_NOTE, "")
    if note.startswith(FAILURE_NOTE):
        _, separator, rest = note.partition(NOTE_SEPARATOR)
        if separator and rest:
            client.set_tag(run_id, TAG_NOTE, rest)
        else:
            client.delete_tag(run_id, TAG_NOTE)


def clear_preempted_tag(client: MlflowClient, run_id: str) -> None:
    """Delete `TAG_PREEMPTED` if the run has it (an earlier preemption's, now stale)."""
    if TAG_PREEMPTED in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, TAG_PREEMPTED)


def terminate_run(client: MlflowClient, run_id: str, status: str, end_time: int | None) -> int:
    """Set the run's final ``status``, ending no earlier than it started; returns the end.

    The end time comes from where the run ended (the trainer's clock, or a journal
    read back by `sync` later); the start from whoever created the run. An end
    before the start shows as a negative duration in MLflow's UI, so it is raised
    to the start. None: now.
    """
    started = client.get_run(run_id).info.start_time
    now = int(time.time() * 1000) if end_time is None else end_time
    end_time = max(now, started or 0)
    client.set_terminated(run_id, status=status, end_time=end_time)
    return end_time


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Report a tracking store that cannot be used as one `TrackingError`."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as error:
        raise unusable_store(uri, error) from error


def is_store_error(error: BaseException) -> bool:
    """Whether ``error`` is MLflow's own (a refused request, a missing artifact)."""
    from mlflow.exceptions import MlflowException

    return isinstance(error, MlflowException)


def log_metric_batch(
    client: MlflowClient, run_id: str, metrics: Sequence[tuple[str, float, int, int]]
) -> None:
    """Log ``(key, value, timestamp ms, step)`` rows in one synchronous request."""
    from mlflow.entities import Metric

    rows = [Metric(key, value, timestamp, step) for key, value, timestamp, step in metrics]
    client.log_batch(run_id, metrics=rows, synchronous=True)


def artifact_repository(client: MlflowClient, run_id: str) -> ArtifactRepository:
    """The artifact repository of run ``run_id`` (to delete artifacts, which the client cannot)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    artifact_uri = client.get_run(run_id).info.artifact_uri
    return get_artifact_repository(artifact_uri, tracking_uri=client.tracking_uri)


def download_artifact_uri(uri: str, destination: Path, tracking_uri: str) -> Path:
    """Download the artifact at ``uri`` (``runs:/…``, ``mlflow-artifacts:/…``, ``s3://…``).

    Raises:
        MlflowException or OSError: it cannot be downloaded (callers turn it into theirs).
    """
    import mlflow.artifacts

    destination.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=str(destination), tracking_uri=tracking_uri
    )
    return Path(local)


# -- models: a run's weights as an MLflow model, and its versions in the Model Registry --


def save_pytorch_model(
    model: torch.nn.Module, input_example: np.ndarray[Any, Any], directory: Path
) -> None:
    """Save ``model`` as an MLflow model (``pytorch`` flavor, ``pt2`` form) in ``directory``.

    ``pt2`` is ``torch.export``'s program, traced with ``input_example``: MLflow
    3.17's default outside Databricks, loaded by ``mlflow.pytorch.load_model``
    without unpickling anything (a pickled model needs
    ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION``) and without trackcfg or the config's
    modules installed. Local only: a model that cannot be exported fails here,
    before anything is written to the store. The requirements are pinned rather
    than inferred (inference loads the model in a subprocess: seconds).

    Raises:
        What ``torch.export`` raises for a model it cannot trace, or MlflowException.
    """
    import mlflow.pytorch
    import torch

    mlflow.pytorch.save_model(
        model,
        str(directory),
        input_example=input_example,
        serialization_format="pt2",
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
    )


def log_model_directory(
    client: MlflowClient,
    run_id: str,
    directory: Path,
    *,
    name: str,
    tags: Mapping[str, str],
    step: int,
) -> str:
    """Log the MLflow model saved in ``directory`` as run ``run_id``'s output; returns its id.

    MLflow 3's own steps for ``mlflow.<flavor>.log_model``, through this client and
    without an active run (``log_model`` would resume the run and end it again,
    changing a finished run's end time, and would put the model in the fluent
    API's current experiment): a logged model in the run's experiment
    (``source_run_id`` the run), the ``MLmodel`` file given its ids, the directory
    uploaded into the model's own artifacts, the model finalised READY and linked
    to the run as its output at ``step`` (the run page's "Logged models"). A
    failure after the model was created finalises it FAILED.
    """
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model

    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(
        experiment_id, name=name, source_run_id=run_id, tags=dict(tags)
    )
    try:
        mlmodel = directory / "MLmodel"
        metadata = Model.load(str(mlmodel))
        metadata.artifact_path = logged.artifact_location
        metadata.model_uuid = logged.model_id
        metadata.model_id = logged.model_id
        metadata.run_id = run_id
        metadata.save(str(mlmodel))
        client.log_model_artifacts(logged.model_id, str(directory))
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    client.finalize_logged_model(logged.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])
    return str(logged.model_id)


def register_model_version(
    client: MlflowClient,
    name: str,
    model_id: str,
    *,
    run_id: str,
    tags: Mapping[str, str],
    description: str,
) -> str:
    """Register logged model ``model_id`` as a new version of ``name``; returns the version.

    The registered model is created when missing (another process creating it
    meanwhile is fine). The version's source is ``models:/<model_id>``, MLflow 3's
    form for a logged model, so ``models:/<name>/<version>`` downloads the model's
    own artifacts; ``run_id`` is the run the UI links it to.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if getattr(error, "error_code", "") not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    version = client.create_model_version(
        name,
        source=f"models:/{model_id}",
        run_id=run_id,
        tags=dict(tags),
        description=description,
        model_id=model_id,
    )
    return str(version.version)
