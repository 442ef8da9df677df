"""What a forger does to a run's snapshot, for the tests that must catch it.

A forger edits the artifacts in place (`artifact_snapshot`): a file alone, a
lineage file together with its digest (`replace_lineage_file`), new lineage
entries (`add_lineage_entry`); then, knowing the formats, re-seals the manifest
(`seal_snapshot`) and, with write access to the run's tags too, re-tags the run
(`retag`). `store_snapshot_run` makes a run from a snapshot directory the way
the tracking agent does, without training.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlflow import MlflowClient

from trackcfg.config.canonical import digest, to_canonical_bytes
from trackcfg.tracking import mlflow_run as mr
from trackcfg.tracking.snapshot import SNAPSHOT_ARTIFACT_DIR, seal_snapshot, upload_snapshot

__all__ = [
    "add_lineage_entry",
    "artifact_snapshot",
    "replace_lineage_file",
    "retag",
    "store_snapshot_run",
]


def store_snapshot_run(uri: str, directory: Path, name: str = "forgery") -> str:
    """Seal ``directory``, create a run tagged like `trackcfg run` does, upload it; the run id."""
    client = MlflowClient(uri)
    experiment = mr.get_or_create_experiment(client, mr.DEFAULT_EXPERIMENT, uri)
    info = json.loads((directory / "snapshot.json").read_text())
    tags = {
        mr.TAG_CONFIG_HASH: info["config_hash"],
        mr.TAG_LINEAGE_HASH: info["lineage_hash"],
        mr.TAG_CONFIG_FILE: info["config_file"],
        mr.TAG_SNAPSHOT_DIGEST: seal_snapshot(directory),
    }
    run_id = mr.create_run(client, experiment, name=name, tags=tags)
    upload_snapshot(client, run_id, directory)
    client.set_terminated(run_id, "KILLED")
    return run_id


def artifact_snapshot(uri: str, run_id: str) -> Path:
    """The run's snapshot directory in a local artifact store (edit it to forge)."""
    from mlflow.utils.file_utils import local_file_uri_to_path

    artifact_uri = MlflowClient(uri).get_run(run_id).info.artifact_uri
    return Path(local_file_uri_to_path(artifact_uri)) / SNAPSHOT_ARTIFACT_DIR


def _write_lineage(directory: Path, entries: list[dict[str, object]]) -> None:
    rows = [[e["path"], e["digest"], e["included_by"], e["order"]] for e in entries]
    info = json.loads((directory / "snapshot.json").read_text())
    info["lineage_hash"] = digest(to_canonical_bytes({"lineage": rows}))
    (directory / "lineage.json").write_text(json.dumps(entries, indent=1))
    (directory / "snapshot.json").write_text(json.dumps(info, indent=1))


def replace_lineage_file(
    directory: Path, path: str, data: bytes, *, update_lineage_hash: bool = True
) -> None:
    """Replace lineage file ``path`` and its digest in ``lineage.json`` (and the lineage hash)."""
    (directory / "lineage" / path).write_bytes(data)
    entries = json.loads((directory / "lineage.json").read_text())
    for entry in entries:
        if entry["path"] == path:
            entry["digest"] = digest(data)
    if update_lineage_hash:
        _write_lineage(directory, entries)
    else:
        (directory / "lineage.json").write_text(json.dumps(entries, indent=1))


def add_lineage_entry(directory: Path, path: str, data: bytes, stored_at: str | None) -> None:
    """Add lineage entry ``path`` with ``data``'s digest; its file at ``stored_at`` (if any)."""
    if stored_at is not None:
        (directory / stored_at).parent.mkdir(parents=True, exist_ok=True)
        (directory / stored_at).write_bytes(data)
    entries = json.loads((directory / "lineage.json").read_text())
    leaf = next(e["path"] for e in entries if e["included_by"] is None)
    entries.insert(
        0, {"path": path, "digest": digest(data), "included_by": leaf, "order": len(entries)}
    )
    _write_lineage(directory, entries)


def retag(uri: str, run_id: str, directory: Path, *, lineage: bool = True) -> None:
    """Re-seal ``directory`` and point the run's digest tag (and lineage hash tag) at it."""
    tags = {mr.TAG_SNAPSHOT_DIGEST: seal_snapshot(directory)}
    if lineage:
        tags[mr.TAG_LINEAGE_HASH] = json.loads((directory / "snapshot.json").read_text())[
            "lineage_hash"
        ]
    mr.set_tags(MlflowClient(uri), run_id, tags)
