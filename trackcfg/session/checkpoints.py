"""Which stored checkpoint a resume starts from, downloaded and verified.

The newest complete checkpoint is the one the run's pointer names (the tags
``trackcfg.latest_checkpoint`` and ``…_digest``), checked against the pointer's
digest. When its stored bytes do not verify, the newest older stored checkpoint
whose own digest does is used, with a warning; one the user names
(``--checkpoint``) is used as asked, confined to the run's ``checkpoints/``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from trackcfg.errors import CheckpointCorruptError, CheckpointError, TrackingError, first_line

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["artifact_name", "download_resume_checkpoint", "download_stored_checkpoint"]

_logger = logging.getLogger(__name__)


def artifact_name(path: Path | None) -> str | None:
    from trackcfg.tracking.agent.uploads import CHECKPOINT_ARTIFACT_DIR

    return None if path is None else f"{CHECKPOINT_ARTIFACT_DIR}/{path.name}"


def download_resume_checkpoint(
    client: MlflowClient, run_id: str, tags: dict[str, str], work: Path, *, chosen: str | None
) -> Path | None:
    """Download and verify the checkpoint to resume from (None: start over in the same run).

    Without ``chosen``: the one the run's pointer names, verified against the
    pointer's digest; if it does not verify, the newest older stored checkpoint
    whose own digest does (with a warning naming what was skipped). Checkpoints
    stored after the pointer's are never picked on their own: the pointer moves
    only once the metrics before a checkpoint are stored.
    """
    from trackcfg.tracking.agent.uploads import CHECKPOINT_ARTIFACT_DIR, checkpoint_number
    from trackcfg.tracking.mlflow_run import TAG_LATEST_CHECKPOINT, TAG_LATEST_CHECKPOINT_DIGEST

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


def download_stored_checkpoint(
    client: MlflowClient, run_id: str, chosen: str, destination: Path, *, digest: str | None
) -> Path:
    """Download the run's stored checkpoint ``chosen`` into ``destination``, verified.

    ``chosen`` is a file name of the run's ``checkpoints/`` artifacts (with or
    without that prefix; nothing outside it). Its bytes are checked against its own
    trailer and, when given, against ``digest`` (what the run recorded for it).

    Raises:
        CheckpointError: not a name of a stored checkpoint, or not stored.
        CheckpointCorruptError: its bytes do not verify.
    """
    return _fetch_checkpoint(client, run_id, _chosen_artifact(run_id, chosen), digest, destination)


def _chosen_artifact(run_id: str, chosen: str) -> str:
    """The artifact path of a checkpoint named on the command line (confined to checkpoints/)."""
    from trackcfg.tracking.agent.uploads import CHECKPOINT_ARTIFACT_DIR

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
    from trackcfg.tracking.agent.uploads import CHECKPOINT_ARTIFACT_DIR

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
