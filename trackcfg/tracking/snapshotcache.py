"""A local cache of verified run snapshots, keyed by run id.

A run's snapshot never changes once the run started (its root digest is a tag set
then), so ``blame``/``diff``/``reproduce`` on a run need to download it once:
after that they answer without importing MLflow or opening the store.

Only a snapshot that was verified against its run's tags (manifest under the
``trackcfg.snapshot_digest`` root digest, config and lineage hashes) is stored,
with that root digest beside it; `trackcfg.tracking.snapshot.load_snapshot` verifies
a cached entry's files against its manifest and the manifest against that digest
again on every read, so a torn or corrupted entry is a miss (and is replaced),
never a wrong answer. Runs made
before manifests are not cached.

Location: ``snapshots/<run id>/`` under the config cache's directory
(`trackcfg.config.filecache.cache_dir`: ``$TRACKCFG_CACHE_DIR``, else
``$XDG_CACHE_HOME/trackcfg``, else ``~/.cache/trackcfg``). ``TRACKCFG_CACHE=off``
or ``memory`` keeps nothing on disk here either. An entry is written to a
temporary directory and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from trackcfg.config.filecache import cache_dir, cache_mode

__all__ = ["cached_snapshot", "discard", "snapshot_cache_dir", "store_snapshot"]

_logger = logging.getLogger(__name__)

#: The file beside an entry's ``trackcfg/`` directory that holds its root digest.
_ROOT_FILE = "root_digest"
_RUN_ID = re.compile(r"[0-9a-f]{32}")


def snapshot_cache_dir() -> Path:
    """Where cached snapshots live (not created here)."""
    return cache_dir() / "snapshots"


def _entry(run_id: str) -> Path | None:
    if cache_mode() != "disk" or not _RUN_ID.fullmatch(run_id):
        return None  # an id that is not a plain 32-hex name never becomes a path
    return snapshot_cache_dir() / run_id


def cached_snapshot(run_id: str) -> tuple[Path, str] | None:
    """``(snapshot directory, root digest)`` of the cached ``run_id``; None when not cached.

    The caller reads it with `trackcfg.tracking.snapshot.read_snapshot` under that
    root digest, and calls `discard` when it does not verify.
    """
    entry = _entry(run_id)
    if entry is None or not entry.is_dir():
        return None
    try:
        root = (entry / _ROOT_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeError) as error:
        discard(run_id, error)
        return None
    return entry / "trackcfg", root


def discard(run_id: str, reason: object) -> None:
    """Remove a damaged entry (a later read downloads the snapshot again)."""
    entry = _entry(run_id)
    if entry is None:
        return
    _logger.warning("trackcfg: ignoring the cached snapshot of run %s: %s", run_id, reason)
    shutil.rmtree(entry, ignore_errors=True)


def store_snapshot(run_id: str, directory: Path, root_digest: str | None) -> None:
    """Keep ``directory``, the snapshot of ``run_id`` verified under ``root_digest``.

    Never raises: a cache that cannot be written costs a later download, nothing else.
    """
    entry = _entry(run_id)
    if entry is None or root_digest is None:
        return
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{run_id}-", dir=entry.parent))
        try:
            shutil.copytree(directory, staging / "trackcfg")
            (staging / _ROOT_FILE).write_text(root_digest + "\n", encoding="ascii")
            os.rename(staging, entry)  # atomic; fails if another process stored it first
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as error:
        if not entry.is_dir():
            _logger.debug("trackcfg: cannot cache the snapshot of run %s: %s", run_id, error)
