"""Snapshot: everything needed to re-resolve a run's config, stored with the run.

A snapshot is a directory, uploaded as the run's artifacts under ``trackcfg/``::

    snapshot.json            format, config hash, lineage hash, leaf config file
    config.canonical.json    the exact bytes that were hashed (digest == the hash tag)
    config.py                a readable dump of the resolved config
    lineage/<path>           every lineage file, byte for byte, under its path
                             relative to the project root
    lineage.json             [{path, digest, included_by, order}, ...]
    provenance.json          every key path's assignment history
    options.json             the command-line options: as given, and as parsed
    git.json  git.patch      git state (`GitState.to_json`) and the binary-safe patch
    environment.json         `Environment.to_json`

Reading a snapshot executes nothing: the config values come from the canonical
bytes (classes stay qualified names), and `Snapshot.resolve` loads the restored
lineage with ``import_custom_modules=False`` — only the config files themselves
are evaluated, as when the run started.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from trackcfg.errors import SnapshotError
from trackcfg.tracking.gitstate import GitState

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from trackcfg.config.config import Config, LineageEntry
    from trackcfg.config.provenance import Provenance
    from trackcfg.tracking.environment import Environment

__all__ = [
    "SNAPSHOT_ARTIFACT_DIR",
    "SNAPSHOT_FORMAT",
    "Snapshot",
    "download_snapshot",
    "leaf_config_file",
    "load_snapshot",
    "read_snapshot",
    "upload_snapshot",
    "write_git_state",
    "write_snapshot",
]

#: Artifact directory of the snapshot inside a run.
SNAPSHOT_ARTIFACT_DIR = "trackcfg"
#: Version of the snapshot layout (``snapshot.json`` ``format``).
SNAPSHOT_FORMAT = 1

_REQUIRED = (
    "snapshot.json",
    "config.canonical.json",
    "lineage.json",
    "provenance.json",
    "options.json",
    "git.json",
    "environment.json",
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A run's snapshot, read back.

    Attributes:
        run_id: The run it belongs to (None for a local snapshot directory).
        config_hash: The config hash (the run's tag; equals the canonical bytes' digest).
        canonical_bytes: The exact bytes that were hashed.
        config: The resolved config decoded from them (classes as qualified names).
        provenance: Every key path's assignment history.
        lineage: The lineage entries, in order.
        lineage_hash: The lineage hash recorded when the run started.
        lineage_files: Relative posix path -> file bytes, for every lineage entry.
        config_file: The leaf config (relative to the project root).
        options: The parsed command-line options (``merge_from_dict`` input).
        cfg_options: The command-line options as given (``k=v`` strings).
        git: The git state; ``git.patch`` (also `patch`) is the binary-safe diff.
        environment: ``environment.json`` as a dict.
    """

    run_id: str | None
    config_hash: str
    canonical_bytes: bytes
    config: dict[str, object]
    provenance: Provenance
    lineage: tuple[LineageEntry, ...]
    lineage_hash: str
    lineage_files: Mapping[str, bytes]
    config_file: str
    options: dict[str, object]
    cfg_options: tuple[str, ...]
    git: GitState
    environment: dict[str, object] = field(default_factory=dict)

    @property
    def patch(self) -> bytes:
        """The git patch of uncommitted changes to tracked files (bytes, maybe empty)."""
        return self.git.patch

    def restore_lineage(self, directory: Path) -> Path:
        """Write the lineage files under a project root inside ``directory``.

        A lineage path that climbs out of the project root (``../shared/x.py``) is
        kept inside ``directory`` by nesting the root as deep as the paths climb.

        Returns:
            The project root the lineage paths are relative to.
        """
        depth = max((_climb(p) for p in self.lineage_files), default=0)
        root = directory.joinpath(*(["root"] * (depth + 1)))
        for rel, data in self.lineage_files.items():
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        return root

    def resolve(self, directory: Path, *, import_custom_modules: bool = False) -> Config:
        """Re-resolve the config from the snapshot alone.

        Restores the lineage under ``directory`` (see `restore_lineage`), loads the
        leaf config with ``import_custom_modules`` (False: nothing but the config
        files runs) and applies the recorded options.

        Returns:
            The config; its ``hash`` equals `config_hash` unless the config engine
            resolves differently than when the run started.
        """
        root = self.restore_lineage(directory)
        return self.load_at(root, import_custom_modules=import_custom_modules)

    def load_at(self, root: Path, *, import_custom_modules: bool = False) -> Config:
        """Load the run's leaf config from the project at ``root``, with the recorded options.

        ``root`` holds the lineage files at their recorded paths: restored by
        `restore_lineage`, or a checkout of the recorded commit.
        """
        from trackcfg.config.config import Config

        cfg = Config.fromfile(
            root / self.config_file, import_custom_modules=import_custom_modules, root=root
        )
        if self.options:
            cfg.merge_from_dict(dict(self.options))
        return cfg


def _climb(rel: str) -> int:
    parts = PurePosixPath(rel).parts
    count = 0
    for part in parts:
        if part != "..":
            break
        count += 1
    return count


def leaf_config_file(lineage: Sequence[LineageEntry]) -> str:
    """The path of the config file itself (the lineage entry no other file includes).

    Raises:
        SnapshotError: no entry is the leaf (a config not loaded from a file).
    """
    for entry in lineage:
        if entry.included_by is None:
            return entry.path
    raise SnapshotError("the lineage has no leaf config (an entry included by nothing)")


def write_snapshot(
    directory: Path,
    cfg: Config,
    *,
    cfg_options: Sequence[str],
    git: GitState | None,
    environment: Environment,
) -> Path:
    """Write the snapshot of ``cfg`` into ``directory`` (created if missing).

    Args:
        directory: Where to write; upload it with `upload_snapshot`.
        cfg: The resolved config (options already merged).
        cfg_options: The command-line options as given.
        git: The git state of the project; None leaves ``git.json``/``git.patch`` to
            `write_git_state` (the tracking agent captures it beside the trainer).
        environment: The environment record.

    Returns:
        ``directory``.

    Raises:
        SnapshotError: a lineage file cannot be read or changed since it was loaded.
    """
    from trackcfg.config.canonical import CANONICAL_VERSION, digest, encode_value

    directory.mkdir(parents=True, exist_ok=True)
    canonical = cfg.canonical_bytes()
    lineage = tuple(cfg.lineage)
    config_file = leaf_config_file(lineage)
    root = Path(cfg.root)
    for entry in lineage:
        source = root / entry.path
        try:
            data = source.read_bytes()
        except OSError as error:
            raise SnapshotError(f"{source}: cannot read lineage file: {error}") from error
        if digest(data) != entry.digest:
            raise SnapshotError(
                f"{entry.path}: file changed after the config was loaded",
                hint="run again without editing config files while it starts",
            )
        dest = directory / "lineage" / entry.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    manifest = {
        "format": SNAPSHOT_FORMAT,
        "config_hash": cfg.hash,
        "lineage_hash": cfg.lineage_hash,
        "config_file": config_file,
        "canonical_version": CANONICAL_VERSION,
    }
    _write_json(directory / "snapshot.json", manifest)
    (directory / "config.canonical.json").write_bytes(canonical)
    (directory / "config.py").write_text(cfg.pretty_text, encoding="utf-8")
    _write_json(
        directory / "lineage.json",
        [
            {
                "path": e.path,
                "digest": e.digest,
                "included_by": e.included_by,
                "order": e.order,
            }
            for e in lineage
        ],
    )
    _write_json(directory / "provenance.json", cfg.provenance_map().to_json())
    _write_json(
        directory / "options.json",
        {
            "cfg_options": list(cfg_options),
            "options": {k: encode_value(v) for k, v in cfg.options.items()},
        },
    )
    if git is not None:
        write_git_state(directory, git)
    _write_json(directory / "environment.json", environment.to_json())
    return directory


def write_git_state(directory: Path, git: GitState) -> None:
    """Write ``git.json`` and ``git.patch`` into a snapshot directory."""
    _write_json(directory / "git.json", git.to_json())
    (directory / "git.patch").write_bytes(git.patch)


def read_snapshot(directory: Path, *, run_id: str | None = None) -> Snapshot:
    """Read and verify a snapshot directory.

    Checks that every file is present, that the canonical bytes hash to the
    recorded config hash and that every lineage file matches its digest.

    Raises:
        SnapshotError: a file is missing, unreadable or does not match.
    """
    from trackcfg.config.canonical import decode_value, digest, from_canonical_bytes
    from trackcfg.config.config import LineageEntry
    from trackcfg.config.provenance import Provenance

    where = f"run {run_id}" if run_id else str(directory)
    missing = [name for name in _REQUIRED if not (directory / name).is_file()]
    if missing:
        raise SnapshotError(
            f"{where}: incomplete trackcfg snapshot, missing {', '.join(missing)}",
            hint="the run was not started by `trackcfg run`, or its snapshot upload failed",
        )
    try:
        manifest = _read_json(directory / "snapshot.json")
        canonical = (directory / "config.canonical.json").read_bytes()
        lineage_obj = _read_json(directory / "lineage.json")
        lineage = tuple(
            LineageEntry(
                path=str(e["path"]),
                digest=str(e["digest"]),
                included_by=None if e["included_by"] is None else str(e["included_by"]),
                order=int(e["order"]),
            )
            for e in lineage_obj
        )
        options_obj = _read_json(directory / "options.json")
        options = {str(k): decode_value(v) for k, v in options_obj["options"].items()}
        cfg_options = tuple(str(s) for s in options_obj["cfg_options"])
        patch_path = directory / "git.patch"
        patch = patch_path.read_bytes() if patch_path.is_file() else b""
        git = GitState.from_json(_read_json(directory / "git.json"), patch)
        environment = _read_json(directory / "environment.json")
        provenance = Provenance.from_json(_read_json(directory / "provenance.json"))
        config_hash = str(manifest["config_hash"])
        lineage_hash = str(manifest["lineage_hash"])
        config_file = str(manifest["config_file"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SnapshotError(f"{where}: unreadable trackcfg snapshot: {error}") from error
    if digest(canonical) != config_hash:
        raise SnapshotError(
            f"{where}: config.canonical.json hashes to {digest(canonical)}, "
            f"the snapshot records {config_hash}"
        )
    files: dict[str, bytes] = {}
    for entry in lineage:
        path = directory / "lineage" / entry.path
        try:
            data = path.read_bytes()
        except OSError as error:
            raise SnapshotError(f"{where}: lineage file {entry.path} is missing") from error
        if digest(data) != entry.digest:
            raise SnapshotError(f"{where}: lineage file {entry.path} does not match its digest")
        files[entry.path] = data
    return Snapshot(
        run_id=run_id,
        config_hash=config_hash,
        canonical_bytes=canonical,
        config=from_canonical_bytes(canonical),
        provenance=provenance,
        lineage=lineage,
        lineage_hash=lineage_hash,
        lineage_files=files,
        config_file=config_file,
        options=options,
        cfg_options=cfg_options,
        git=git,
        environment=environment if isinstance(environment, dict) else {},
    )


def upload_snapshot(client: MlflowClient, run_id: str, directory: Path) -> None:
    """Upload a written snapshot directory to the run's artifacts under ``trackcfg/``."""
    client.log_artifacts(run_id, str(directory), SNAPSHOT_ARTIFACT_DIR)


def download_snapshot(client: MlflowClient, run_id: str, destination: Path) -> Path:
    """Download the run's snapshot into ``destination``; returns the snapshot directory.

    Raises:
        SnapshotError: the run has no snapshot artifacts.
    """
    from mlflow.exceptions import MlflowException

    destination.mkdir(parents=True, exist_ok=True)
    try:
        if not client.list_artifacts(run_id, SNAPSHOT_ARTIFACT_DIR):
            raise SnapshotError(
                f"run {run_id} has no trackcfg snapshot (no `{SNAPSHOT_ARTIFACT_DIR}/` artifacts)",
                hint="only runs started with `trackcfg run` have one",
            )
        path = client.download_artifacts(run_id, SNAPSHOT_ARTIFACT_DIR, str(destination))
    except MlflowException as error:
        raise SnapshotError(f"run {run_id}: cannot download its snapshot: {error}") from error
    return Path(path)


def load_snapshot(run_id: str, *, tracking_uri: str | None = None) -> Snapshot:
    """Download, read and verify the snapshot of run ``run_id``.

    Args:
        run_id: The MLflow run id.
        tracking_uri: The store; default `resolve_tracking_uri()`.

    Raises:
        RunNotFoundError: no such run.
        SnapshotError: no snapshot, an incomplete one, or its hash differs from the
            run's ``trackcfg.config_hash`` tag.
    """
    from trackcfg.tracking.mlflow_run import (
        TAG_CONFIG_HASH,
        get_run,
        open_client,
        resolve_tracking_uri,
    )

    client = open_client(tracking_uri or resolve_tracking_uri())
    run = get_run(client, run_id)
    with tempfile.TemporaryDirectory(prefix="trackcfg-snapshot-") as tmp:
        snap = read_snapshot(download_snapshot(client, run_id, Path(tmp)), run_id=run_id)
    tag = run.data.tags.get(TAG_CONFIG_HASH)
    if tag is not None and tag != snap.config_hash:
        raise SnapshotError(
            f"run {run_id}: snapshot hashes to {snap.config_hash}, "
            f"the run's {TAG_CONFIG_HASH} tag is {tag}"
        )
    return snap


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
