"""``load_from``: where a run's initial weights come from, fetched and verified.

``load_from`` (mmcv's key: weights only, a fresh run) may name

- a local checkpoint file, as in mmcv;
- ``'run:<RUN_ID>'``: the newest complete checkpoint of a tracked run (the one its
  "latest checkpoint" pointer names, verified against the pointer's digest), or
  ``'run:<RUN_ID>:<NAME>'``: one of its stored checkpoints by file name (e.g.
  ``best_accuracy_epoch_7.pth``), verified against its own digest trailer;
- any URI MLflow can download (``runs:/<RUN_ID>/checkpoints/epoch_3.pth``,
  ``mlflow-artifacts:/…``, ``s3://…``), verified against its trailer when it has one.

This is the session layer's job: the runner never imports the tracking code, it
gets a local path (`trackcfg.runner.train.train`'s ``load_from``), which it loads
with ``torch.load(weights_only=True)``. The run records where its weights came from
and the digest of their bytes (tags ``trackcfg.load_from`` and ``…_digest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trackcfg.errors import CheckpointCorruptError, CheckpointError, ConfigError, first_line

__all__ = ["InitialWeights", "is_remote_load_from", "resolve_load_from"]

_RUN_PREFIX = "run:"


@dataclass(frozen=True, slots=True)
class InitialWeights:
    """Resolved ``load_from``.

    Attributes:
        spec: ``load_from`` as the config gives it.
        path: The local checkpoint file to load.
        digest: xxh3-128 hex digest of its bytes.
    """

    spec: str
    path: Path
    digest: str


def is_remote_load_from(spec: str) -> bool:
    """Whether ``spec`` names a run or a URI (not a local file).

    Example:
        >>> is_remote_load_from("run:0123abcd"), is_remote_load_from("runs:/0123/ckpt.pth")
        (True, True)
        >>> is_remote_load_from("work_dirs/a/epoch_3.pth")
        False
    """
    return spec.startswith(_RUN_PREFIX) or "://" in spec or ":/" in spec


def resolve_load_from(spec: str, tracking_uri: str, work: Path) -> InitialWeights:
    """Fetch (if remote) and verify the checkpoint ``spec`` names.

    Args:
        spec: The config's ``load_from``.
        tracking_uri: The store a ``run:`` spec refers to.
        work: The run's work dir (downloads go to ``.trackcfg/load_from/`` in it).

    Raises:
        ConfigError: a malformed ``run:`` spec (key path ``load_from``).
        CheckpointError: it does not exist or cannot be downloaded.
        CheckpointCorruptError: its bytes do not verify.
    """
    from trackcfg.checkpoint_file import content_digest
    from trackcfg.runner.checkpoint import read_checkpoint_record, verify_checkpoint_file

    destination = work / ".trackcfg" / "load_from"
    if spec.startswith(_RUN_PREFIX):
        path = _from_run(spec, tracking_uri, destination)
    elif is_remote_load_from(spec):
        from trackcfg.tracking.mlflow_run import download_artifact_uri

        try:
            path = download_artifact_uri(spec, destination, tracking_uri)
        except Exception as error:  # MLflow's or the artifact store's own errors
            raise CheckpointError(
                f"load_from: cannot download {spec}: {first_line(error)}"
            ) from error
    else:
        path = Path(spec)
    if not path.is_file():
        raise CheckpointError(f"load_from: {spec} is not a checkpoint file")
    record = read_checkpoint_record(path)
    if record is not None:  # ours: its bytes against its own trailer
        verify_checkpoint_file(path)
        return InitialWeights(spec, path, record.digest)
    return InitialWeights(spec, path, content_digest(path))


def _from_run(spec: str, tracking_uri: str, destination: Path) -> Path:
    from trackcfg.session.checkpoints import download_resume_checkpoint
    from trackcfg.tracking.mlflow_run import open_client

    run_id, _, name = spec.removeprefix(_RUN_PREFIX).partition(":")
    if not run_id or any(c not in "0123456789abcdef" for c in run_id.lower()):
        raise ConfigError(
            f"{spec!r} does not name a run",
            key_path="load_from",
            hint="use 'run:<RUN_ID>' or 'run:<RUN_ID>:<checkpoint file name>'",
        )
    client = open_client(tracking_uri)
    try:
        tags = dict(client.get_run(run_id).data.tags)
    except Exception as error:
        raise CheckpointError(
            f"load_from: no run {run_id} in {tracking_uri}: {first_line(error)}"
        ) from error
    # (it downloads under <dir>/.trackcfg/resume: here, inside load_from/)
    path = download_resume_checkpoint(client, run_id, tags, destination, chosen=name or None)
    if path is None:
        raise CheckpointCorruptError(f"load_from: run {run_id} has no complete checkpoint")
    return path
