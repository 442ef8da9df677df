"""Snapshot: everything needed to re-resolve a run's config, stored with the run.

A snapshot is a directory, uploaded as the run's artifacts under ``trackcfg/``::

    snapshot.json            format, config hash, lineage hash, leaf config file
    config.canonical.json    the exact bytes that were hashed (digest == the hash tag)
    config.py                a readable dump of the resolved config
    lineage/<path>           every lineage file, byte for byte, under its path
                             relative to the project root
    lineage-above/<n>/<rest> a lineage file ``n`` directories above the project
                             root (``../shared/base.py``: ``lineage-above/1/shared/base.py``)
    lineage.json             [{path, digest, included_by, order}, ...]
    provenance.json          every key path's assignment history
    options.json             the command-line options: as given, and as parsed
    git.json  git.patch      git state (`GitState.to_json`) and the binary-safe patch
    environment.json         `Environment.to_json`
    manifest.json            SHA-256 of every other file (`trackcfg.tracking.manifest`)

Nothing read back is trusted. Reading verifies, before anything is used: every
file against ``manifest.json`` and the manifest against the run's
``trackcfg.snapshot_digest`` tag (`seal_snapshot` writes it, the tracking agent
tags the run with its root digest); the canonical bytes against the config hash
and the lineage entries against the lineage hash (the file and the run's tags);
every lineage file against its digest. Every path is a normalised relative path
(`trackcfg.tracking.confinement`), and files are written without following links.

Reading a snapshot executes nothing: the config values come from the canonical
bytes (classes stay qualified names), and `Snapshot.to_config` rebuilds the
run's `Config` from them — what ``trackcfg resume`` trains. Only
`Snapshot.resolve`/`load_at`, which re-evaluate the config files to check that
they still hash the same (``reproduce``), run the lineage's ``.py`` files.

A run made before manifests (format 1, no ``trackcfg.snapshot_digest`` tag) is
still read, with a warning: its provenance, options, git and environment files
are covered by no digest, but its canonical bytes and lineage are checked
against the run's tags, and reading it executes and writes nothing, so
``blame``/``diff`` answers stay useful and ``resume`` stays safe. A run that has
the tag but no manifest, or a manifest but no tag, is refused.
"""

from __future__ import annotations

import json
import logging
import posixpath
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trackcfg.errors import SnapshotError
from trackcfg.tracking.confinement import climb, parse_relative_path, read_tree, write_confined
from trackcfg.tracking.gitstate import GitState
from trackcfg.tracking.manifest import MANIFEST_FILE, verify_manifest, write_manifest
from trackcfg.tracking.snapshotcache import cached_snapshot, discard, store_snapshot

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from trackcfg.config.config import Config, LineageEntry
    from trackcfg.config.provenance import Provenance
    from trackcfg.tracking.environment import Environment

__all__ = [
    "SNAPSHOT_ARTIFACT_DIR",
    "SNAPSHOT_FORMAT",
    "Snapshot",
    "download_snapshot",
    "fetch_snapshot",
    "leaf_config_file",
    "load_snapshot",
    "read_cached_snapshot",
    "read_snapshot",
    "seal_snapshot",
    "upload_snapshot",
    "write_git_state",
    "write_snapshot",
]

_logger = logging.getLogger("trackcfg.snapshot")

#: Artifact directory of the snapshot inside a run.
SNAPSHOT_ARTIFACT_DIR = "trackcfg"
#: Version of the snapshot layout (``snapshot.json`` ``format``): 2 adds ``manifest.json``
#: and ``lineage-above/``; format 1 is still read.
SNAPSHOT_FORMAT = 2

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
    """A run's snapshot, read back and verified.

    Attributes:
        run_id: The run it belongs to (None for a local snapshot directory).
        config_hash: The config hash (the run's tag; equals the canonical bytes' digest).
        canonical_bytes: The exact bytes that were hashed.
        config: The resolved config decoded from them (classes as qualified names).
        provenance: Every key path's assignment history.
        lineage: The lineage entries, in order.
        lineage_hash: The lineage hash recorded when the run started (checked).
        lineage_files: Relative posix path -> file bytes, for every lineage entry.
        config_file: The leaf config (relative to the project root).
        options: The parsed command-line options (``merge_from_dict`` input).
        cfg_options: The command-line options as given (``k=v`` strings).
        git: The git state; ``git.patch`` (also `patch`) is the binary-safe diff.
        environment: ``environment.json`` as a dict.
        root_digest: The manifest's root digest; None for a snapshot made before
            manifests (format 1), whose files other than the config and the
            lineage are covered by no digest.
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
    root_digest: str | None = None

    @property
    def patch(self) -> bytes:
        """The git patch of uncommitted changes to tracked files (bytes, maybe empty)."""
        return self.git.patch

    def to_config(self, *, import_custom_modules: bool = False) -> Config:
        """The run's config, rebuilt from the verified canonical bytes alone.

        No file of the snapshot is executed. With ``import_custom_modules`` (training
        needs it), the modules named by ``custom_imports`` are imported from the
        installed packages first, then classes and functions are imported by their
        qualified names; without it they stay `QualifiedName` strings.

        Returns:
            A `Config` whose ``hash`` is `config_hash`; its ``filename`` is
            `config_file`. It has no provenance or lineage (those are in the snapshot).

        Raises:
            ConfigImportError: A module of ``custom_imports`` or a named class fails.
            SnapshotError: The rebuilt config hashes differently (a canonical form
                this trackcfg reads back differently).
        """
        from trackcfg.config import imports
        from trackcfg.config.canonical import from_canonical_bytes
        from trackcfg.config.config import Config

        if import_custom_modules and imports.CUSTOM_IMPORTS_KEY in self.config:
            imports.import_custom_modules(self.config[imports.CUSTOM_IMPORTS_KEY])
        data = from_canonical_bytes(self.canonical_bytes, resolve=import_custom_modules)
        cfg = Config(data, filename=self.config_file, text=self.canonical_bytes.decode("ascii"))
        rebuilt = cfg.hash
        if rebuilt != self.config_hash:
            raise SnapshotError(
                f"{self._where()}: the config rebuilt from config.canonical.json hashes to "
                f"{rebuilt}, not {self.config_hash}"
            )
        return cfg

    def restore_lineage(self, directory: Path) -> Path:
        """Write the lineage files under a project root inside ``directory``.

        A lineage path that climbs out of the project root (``../shared/x.py``) is
        kept inside ``directory`` by nesting the root as deep as the paths climb.
        Nothing is written outside ``directory`` or through a symbolic link.

        Returns:
            The project root the lineage paths are relative to.
        """
        depth = max((climb(tuple(p.split("/"))) for p in self.lineage_files), default=0)
        nest = ["root"] * (depth + 1)
        directory.mkdir(parents=True, exist_ok=True)
        for rel, data in self.lineage_files.items():
            # Lineage paths were checked when read: only leading `..`, at most `depth`.
            write_confined(directory, posixpath.normpath(posixpath.join(*nest, rel)), data)
        return directory.joinpath(*nest)

    def resolve(self, directory: Path, *, import_custom_modules: bool = False) -> Config:
        """Re-resolve the config by evaluating the restored lineage files.

        Restores the lineage under ``directory`` (see `restore_lineage`), loads the
        leaf config with ``import_custom_modules`` (False: nothing but the config
        files runs) and applies the recorded options. This runs the lineage's ``.py``
        files: it checks that the config files still resolve to the recorded hash;
        use `to_config` for the config itself.

        Returns:
            The config; its ``hash`` equals `config_hash` unless the config engine
            resolves differently than when the run started.
        """
        root = self.restore_lineage(directory)
        return self.load_at(root, import_custom_modules=import_custom_modules)

    def load_at(self, root: Path, *, import_custom_modules: bool = False) -> Config:
        """Load the run's leaf config from the project at ``root``, with the recorded options.

        ``root`` holds the lineage files at their recorded paths: restored by
        `restore_lineage`, or a checkout of the recorded commit. Its ``.py`` files run.
        """
        from trackcfg.config.config import Config

        cfg = Config.fromfile(
            root / self.config_file, import_custom_modules=import_custom_modules, root=root
        )
        if self.options:
            cfg.merge_from_dict(dict(self.options))
        return cfg

    def _where(self) -> str:
        return f"run {self.run_id}" if self.run_id else "snapshot"


def leaf_config_file(lineage: Sequence[LineageEntry]) -> str:
    """The path of the config file itself (the lineage entry no other file includes).

    Raises:
        SnapshotError: no entry is the leaf (a config not loaded from a file).
    """
    for entry in lineage:
        if entry.included_by is None:
            return entry.path
    raise SnapshotError("the lineage has no leaf config (an entry included by nothing)")


def _stored_lineage_path(path: str, snapshot_format: int) -> str:
    """Where lineage file ``path`` lies inside the snapshot directory.

    Format 1 wrote ``lineage/<path>`` as is, so a climbing path landed beside the
    other snapshot files (``lineage/../x`` is ``x``) or outside the directory; format 2
    keeps it under ``lineage-above/<n>/``.
    """
    if snapshot_format == 1:
        return posixpath.normpath(posixpath.join("lineage", path))
    parts = tuple(path.split("/"))
    up = climb(parts)
    if up == 0:
        return f"lineage/{path}"
    return "/".join(("lineage-above", str(up), *parts[up:]))


def write_snapshot(
    directory: Path,
    cfg: Config,
    *,
    cfg_options: Sequence[str],
    git: GitState | None,
    environment: Environment,
) -> Path:
    """Write the snapshot of ``cfg`` into ``directory`` (created if missing).

    The manifest is not written: `seal_snapshot` does, once the git state is in
    (the tracking agent captures it beside the trainer).

    Args:
        directory: Where to write; seal it with `seal_snapshot`, upload it with
            `upload_snapshot`.
        cfg: The resolved config (options already merged).
        cfg_options: The command-line options as given.
        git: The git state of the project; None leaves ``git.json``/``git.patch`` to
            `write_git_state`.
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
        parse_relative_path(entry.path, allow_climb=True)
        write_confined(directory, _stored_lineage_path(entry.path, SNAPSHOT_FORMAT), data)
    info = {
        "format": SNAPSHOT_FORMAT,
        "config_hash": cfg.hash,
        "lineage_hash": cfg.lineage_hash,
        "config_file": config_file,
        "canonical_version": CANONICAL_VERSION,
    }
    _write_json(directory / "snapshot.json", info)
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


def seal_snapshot(directory: Path) -> str:
    """Write the manifest of a complete snapshot directory; returns its root digest.

    The root digest goes into the run's ``trackcfg.snapshot_digest`` tag.

    Raises:
        SnapshotError: A symbolic link or special file is in ``directory``.
    """
    return write_manifest(directory)


def read_snapshot(
    directory: Path, *, run_id: str | None = None, root_digest: str | None = None
) -> Snapshot:
    """Read and verify a snapshot directory.

    Reads every file once, then checks, before using any: every file against
    ``manifest.json`` and the manifest against ``root_digest`` (when either is
    there); that every required file is present; that lineage paths and the leaf
    config are normalised relative paths named in ``lineage.json``; that the
    canonical bytes hash to the recorded config hash, the lineage entries to the
    recorded lineage hash, and every lineage file to its digest.

    Args:
        directory: The snapshot directory.
        run_id: The run it belongs to (for messages, and `Snapshot.run_id`).
        root_digest: The run's ``trackcfg.snapshot_digest`` tag: the manifest must
            be there and hash to it.

    Raises:
        SnapshotError: a file is missing, unreadable, unlisted, or does not match;
            a path is not a normalised relative path.
    """
    where = f"run {run_id}" if run_id else str(directory)
    files = read_tree(directory)
    verified_root = None
    if root_digest is not None or MANIFEST_FILE in files:
        verified_root = verify_manifest(files, root_digest, where)
    missing = [name for name in _REQUIRED if name not in files]
    if missing:
        raise SnapshotError(
            f"{where}: incomplete trackcfg snapshot, missing {', '.join(missing)}",
            hint="the run was not started by `trackcfg run`, or its snapshot upload failed",
        )
    snapshot_format = _format_of(files, where)
    if verified_root is None and snapshot_format >= 2:
        raise SnapshotError(f"{where}: snapshot file {MANIFEST_FILE} is missing")
    return _parse_snapshot(files, snapshot_format, where, run_id, verified_root)


def _format_of(files: Mapping[str, bytes], where: str) -> int:
    try:
        value = json.loads(files["snapshot.json"])["format"]
    except (ValueError, KeyError, TypeError) as error:
        raise SnapshotError(f"{where}: unreadable trackcfg snapshot: {error}") from error
    if not isinstance(value, int) or not 1 <= value <= SNAPSHOT_FORMAT:
        raise SnapshotError(
            f"{where}: snapshot.json: format {value!r}; this trackcfg reads formats 1 to "
            f"{SNAPSHOT_FORMAT}",
            hint="upgrade trackcfg",
        )
    return value


def _parse_snapshot(
    files: Mapping[str, bytes],
    snapshot_format: int,
    where: str,
    run_id: str | None,
    root_digest: str | None,
) -> Snapshot:
    from trackcfg.config.canonical import decode_value, digest, from_canonical_bytes
    from trackcfg.config.config import LineageEntry
    from trackcfg.config.inherit import hash_lineage
    from trackcfg.config.provenance import Provenance

    try:
        info = _json(files, "snapshot.json")
        canonical = files["config.canonical.json"]
        lineage = tuple(
            LineageEntry(
                path=_str(e["path"]),
                digest=_str(e["digest"]),
                included_by=None if e["included_by"] is None else _str(e["included_by"]),
                order=int(e["order"]),
            )
            for e in _json(files, "lineage.json")
        )
        options_obj = _json(files, "options.json")
        options = {str(k): decode_value(v) for k, v in options_obj["options"].items()}
        cfg_options = tuple(str(s) for s in options_obj["cfg_options"])
        git = GitState.from_json(_json(files, "git.json"), files.get("git.patch", b""))
        environment = _json(files, "environment.json")
        provenance = Provenance.from_json(_json(files, "provenance.json"))
        config_hash = _str(info["config_hash"])
        lineage_hash = _str(info["lineage_hash"])
        config_file = _str(info["config_file"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SnapshotError(f"{where}: unreadable trackcfg snapshot: {error}") from error
    if digest(canonical) != config_hash:
        raise SnapshotError(
            f"{where}: config.canonical.json hashes to {digest(canonical)}, "
            f"the snapshot records {config_hash}"
        )
    try:
        config = from_canonical_bytes(canonical)
    except ValueError as error:
        raise SnapshotError(f"{where}: config.canonical.json: {error}") from error
    if hash_lineage(lineage) != lineage_hash:
        raise SnapshotError(
            f"{where}: lineage.json hashes to {hash_lineage(lineage)}, "
            f"the snapshot records {lineage_hash}"
        )
    lineage_files: dict[str, bytes] = {}
    for entry in lineage:
        try:
            parse_relative_path(entry.path, allow_climb=True)
        except SnapshotError as error:
            raise SnapshotError(f"{where}: lineage.json: lineage path {error.message}") from error
        if entry.path in lineage_files:
            raise SnapshotError(f"{where}: lineage.json: {entry.path} is listed twice")
        data = files.get(_stored_lineage_path(entry.path, snapshot_format))
        if data is None:
            raise SnapshotError(f"{where}: lineage file {entry.path} is missing")
        if digest(data) != entry.digest:
            raise SnapshotError(f"{where}: lineage file {entry.path} does not match its digest")
        lineage_files[entry.path] = data
    if config_file not in lineage_files:
        raise SnapshotError(
            f"{where}: snapshot.json: the config file {config_file!r} is not in lineage.json"
        )
    return Snapshot(
        run_id=run_id,
        config_hash=config_hash,
        canonical_bytes=canonical,
        config=config,
        provenance=provenance,
        lineage=lineage,
        lineage_hash=lineage_hash,
        lineage_files=lineage_files,
        config_file=config_file,
        options=options,
        cfg_options=cfg_options,
        git=git,
        environment=environment if isinstance(environment, dict) else {},
        root_digest=root_digest,
    )


def upload_snapshot(client: MlflowClient, run_id: str, directory: Path) -> None:
    """Upload a written snapshot directory to the run's artifacts under ``trackcfg/``."""
    client.log_artifacts(run_id, str(directory), SNAPSHOT_ARTIFACT_DIR)


def download_snapshot(client: MlflowClient, run_id: str, destination: Path) -> Path:
    """Download the run's snapshot into ``destination``; returns the snapshot directory.

    The files are not verified: read them with `fetch_snapshot` (or `read_snapshot`
    given the run's root digest tag).

    Raises:
        SnapshotError: the run has no snapshot artifacts.
    """
    from trackcfg.tracking.mlflow_run import is_store_error

    destination.mkdir(parents=True, exist_ok=True)
    try:
        if not client.list_artifacts(run_id, SNAPSHOT_ARTIFACT_DIR):
            raise SnapshotError(
                f"run {run_id} has no trackcfg snapshot (no `{SNAPSHOT_ARTIFACT_DIR}/` artifacts)",
                hint="only runs started with `trackcfg run` have one",
            )
        path = client.download_artifacts(run_id, SNAPSHOT_ARTIFACT_DIR, str(destination))
    except Exception as error:
        if not is_store_error(error):
            raise
        raise SnapshotError(f"run {run_id}: cannot download its snapshot: {error}") from error
    return Path(path)


def fetch_snapshot(client: MlflowClient, run: Run, destination: Path) -> Snapshot:
    """Download run ``run``'s snapshot into ``destination`` and verify it against its tags.

    Checks everything `read_snapshot` does, with the manifest against the run's
    ``trackcfg.snapshot_digest`` tag, and the config and lineage hashes against
    the run's ``trackcfg.config_hash`` and ``trackcfg.lineage_hash`` tags. A run
    without the digest tag and without a manifest predates manifests: it is read
    with a warning (see the module docstring).

    Raises:
        SnapshotError: no snapshot, an incomplete or altered one, or one that does
            not match the run's tags.
    """
    from trackcfg.tracking.mlflow_run import TAG_CONFIG_HASH, TAG_LINEAGE_HASH, TAG_SNAPSHOT_DIGEST

    run_id = run.info.run_id
    tags = run.data.tags
    root = tags.get(TAG_SNAPSHOT_DIGEST)
    directory = download_snapshot(client, run_id, destination)
    snap = read_snapshot(directory, run_id=run_id, root_digest=root)
    if root is None and snap.root_digest is not None:
        raise SnapshotError(
            f"run {run_id}: its snapshot has {MANIFEST_FILE} but the run has no "
            f"{TAG_SNAPSHOT_DIGEST} tag",
            hint="the run's tags were changed after it started; do not trust its snapshot",
        )
    recorded_hashes = {TAG_CONFIG_HASH: snap.config_hash, TAG_LINEAGE_HASH: snap.lineage_hash}
    for tag, recorded in recorded_hashes.items():
        value = tags.get(tag)
        if value is not None and value != recorded:
            raise SnapshotError(
                f"run {run_id}: the snapshot records {recorded}, the run's {tag} tag is {value}"
            )
    if root is None:
        _logger.warning(
            "trackcfg: run %s predates snapshot manifests (no %s tag): its provenance, "
            "options, git and environment files are covered by no digest; only its config "
            "and lineage are checked",
            run_id,
            TAG_SNAPSHOT_DIGEST,
        )
    return snap


def load_snapshot(run_id: str, *, tracking_uri: str | None = None, cached: bool = True) -> Snapshot:
    """Download, read and verify the snapshot of run ``run_id`` (see `fetch_snapshot`).

    A snapshot read before comes from the local cache (`trackcfg.tracking.snapshotcache`:
    re-verified, no MLflow import, no download); a downloaded one is put there.

    Args:
        run_id: The MLflow run id.
        tracking_uri: The store; default `resolve_tracking_uri()`.
        cached: Use (and fill) the local cache.

    Raises:
        RunNotFoundError: no such run.
        SnapshotError: no snapshot, an incomplete or altered one, or one that does
            not match the run's tags.
    """
    from trackcfg.tracking.mlflow_run import get_run, open_client, resolve_tracking_uri

    if cached:
        hit = read_cached_snapshot(run_id)
        if hit is not None:
            return hit
    client = open_client(tracking_uri or resolve_tracking_uri())
    run = get_run(client, run_id)
    with tempfile.TemporaryDirectory(prefix="trackcfg-snapshot-") as tmp:
        snap = fetch_snapshot(client, run, Path(tmp))
        if cached:
            store_snapshot(run_id, Path(tmp) / SNAPSHOT_ARTIFACT_DIR, snap.root_digest)
        return snap


def read_cached_snapshot(run_id: str) -> Snapshot | None:
    """The locally cached snapshot of ``run_id``, verified again; None when not cached.

    See `trackcfg.tracking.snapshotcache`; no MLflow import, no store access.
    """
    found = cached_snapshot(run_id)
    if found is None:
        return None
    directory, root = found
    try:
        return read_snapshot(directory, run_id=run_id, root_digest=root)
    except SnapshotError as error:
        discard(run_id, error)
        return None


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def _json(files: Mapping[str, bytes], name: str) -> Any:
    return json.loads(files[name].decode("utf-8"))


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
    return value
