"""The snapshot manifest: a digest for every snapshot file, rolled into one root digest.

``manifest.json`` lists every other file of the snapshot directory with its
SHA-256; the root digest is the SHA-256 of the manifest's bytes, written
``sha256:<hex>`` and kept in the run's ``trackcfg.snapshot_digest`` tag (the
tracking agent sets it when it creates the run, before uploading the files)::

    {"algorithm": "sha256", "files": {"config.canonical.json": "<hex>", ...},
     "format": "trackcfg.snapshot-manifest", "version": 1}

SHA-256, not the xxh3 of config hashes: xxh3 is fast and stable but not made to
resist a forger, and the manifest exists to make forging detectable. With the
tag in the tracking database, nothing in the artifact store alone can change a
file, add one or drop one unnoticed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from trackcfg.errors import SnapshotError
from trackcfg.tracking.confinement import parse_relative_path, read_tree

__all__ = ["MANIFEST_FILE", "root_digest", "verify_manifest", "write_manifest"]

#: The manifest's name inside the snapshot directory.
MANIFEST_FILE = "manifest.json"

_FORMAT = "trackcfg.snapshot-manifest"
_VERSION = 1
_PREFIX = "sha256:"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def root_digest(manifest: bytes) -> str:
    """The root digest of a manifest's bytes (``sha256:<hex>``)."""
    return _PREFIX + _sha256(manifest)


def write_manifest(directory: Path) -> str:
    """Write ``manifest.json`` over every file below ``directory``; returns the root digest.

    Call it once the snapshot is complete: a file written afterwards fails verification.

    Raises:
        SnapshotError: A symbolic link or special file is in ``directory``.
    """
    files = read_tree(directory)
    files.pop(MANIFEST_FILE, None)
    document = {
        "algorithm": "sha256",
        "files": {rel: _sha256(files[rel]) for rel in sorted(files)},
        "format": _FORMAT,
        "version": _VERSION,
    }
    data = (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8")
    (directory / MANIFEST_FILE).write_bytes(data)
    return root_digest(data)


def verify_manifest(files: Mapping[str, bytes], expected_root: str | None, where: str) -> str:
    """Check snapshot files against their manifest, and the manifest against ``expected_root``.

    Args:
        files: Every file of the snapshot directory (``read_tree``), manifest included.
        expected_root: The run's root digest tag; None checks the files against the
            manifest only (a local snapshot directory).
        where: ``run <id>`` or the directory, for messages.

    Returns:
        The manifest's root digest.

    Raises:
        SnapshotError: No manifest, a manifest that does not match ``expected_root`` or
            is malformed, or a file that is missing, unlisted or does not match its digest.
    """
    manifest = files.get(MANIFEST_FILE)
    if manifest is None:
        raise SnapshotError(
            f"{where}: snapshot file {MANIFEST_FILE} is missing",
            hint=None
            if expected_root is None
            else "the run's tag records one: its artifacts were changed after it started",
        )
    root = root_digest(manifest)
    if expected_root is not None and root != expected_root:
        raise SnapshotError(
            f"{where}: {MANIFEST_FILE} hashes to {root}, the run's tag records {expected_root}",
            hint="the snapshot's artifacts were changed after the run started; do not trust it",
        )
    listed = _parse(manifest, where)
    for rel, expected in listed.items():
        data = files.get(rel)
        if data is None:
            raise SnapshotError(f"{where}: snapshot file {rel} is missing")
        if _sha256(data) != expected:
            raise SnapshotError(
                f"{where}: snapshot file {rel} does not match its digest in {MANIFEST_FILE}",
                hint="the snapshot's artifacts were changed after the run started; do not trust it",
            )
    extra = sorted(set(files) - set(listed) - {MANIFEST_FILE})
    if extra:
        raise SnapshotError(f"{where}: snapshot file {extra[0]} is not listed in {MANIFEST_FILE}")
    return root


def _parse(manifest: bytes, where: str) -> dict[str, str]:
    try:
        document = json.loads(manifest)
    except ValueError as error:
        raise SnapshotError(f"{where}: {MANIFEST_FILE} is not JSON: {error}") from error
    if (
        not isinstance(document, dict)
        or document.get("format") != _FORMAT
        or document.get("version") != _VERSION
        or document.get("algorithm") != "sha256"
        or not isinstance(document.get("files"), dict)
    ):
        raise SnapshotError(
            f"{where}: {MANIFEST_FILE} is not a version-{_VERSION} sha256 snapshot manifest"
        )
    listed: dict[str, str] = {}
    for rel, digest in document["files"].items():
        try:
            parse_relative_path(rel)
        except SnapshotError as error:
            raise SnapshotError(f"{where}: {MANIFEST_FILE}: {error.message}") from error
        if not isinstance(digest, str) or rel == MANIFEST_FILE:
            raise SnapshotError(f"{where}: {MANIFEST_FILE}: bad entry for {rel!r}")
        listed[rel] = digest
    return listed
