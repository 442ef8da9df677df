"""Turn a command-line TARGET (a config file or a run id) into one comparable `ConfigView`.

A TARGET is a run id when it is 32 hexadecimal characters and no file of that
name exists; anything else is a config path. Both kinds end up in the same
shape — resolved values decoded from the canonical bytes (so a class in a
config and its qualified name in a snapshot compare equal) and the provenance
map in its JSON round-tripped form — so ``blame`` and ``diff`` give the same
answer for a run as for the files it was made from.

Loading a config file never imports its ``custom_imports`` (no torch). Loading
a run reads the snapshot artifacts only, verified against the run's tags (a
forged or edited file is refused, naming it; see `trackcfg.tracking.snapshot`),
and executes nothing from the run.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trackcfg.config.config import Config, LineageEntry
    from trackcfg.config.provenance import Provenance
    from trackcfg.tracking.snapshot import Snapshot

__all__ = [
    "ConfigView",
    "TargetKind",
    "is_run_id",
    "load_run_snapshot",
    "load_view",
    "view_of_config",
]

_RUN_ID = re.compile(r"[0-9a-f]{32}")


class TargetKind(enum.Enum):
    """What a TARGET names."""

    FILE = "file"
    RUN = "run"


def is_run_id(target: str) -> bool:
    """True when ``target`` looks like an MLflow run id and is not an existing path.

    Example:
        >>> is_run_id("0123456789abcdef0123456789abcdef")
        True
        >>> is_run_id("configs/digits/cnn_sgd_10e.py")
        False
    """
    return bool(_RUN_ID.fullmatch(target)) and not Path(target).exists()


@dataclass(frozen=True, slots=True)
class ConfigView:
    """A resolved config with its provenance, from a file or from a run's snapshot.

    Attributes:
        label: The TARGET as the user gave it (``run <id>`` for runs).
        kind: File or run.
        config_hash: The content hash (for a run: the hash of its snapshot bytes).
        values: The resolved config, decoded from canonical bytes.
        provenance: Every key path's assignment history.
        lineage: The files that took part.
    """

    label: str
    kind: TargetKind
    config_hash: str
    values: Mapping[str, object]
    provenance: Provenance
    lineage: tuple[LineageEntry, ...]


def view_of_config(cfg: Config, label: str) -> ConfigView:
    """The `ConfigView` of an already loaded config."""
    from trackcfg.config.canonical import digest, from_canonical_bytes
    from trackcfg.config.provenance import Provenance

    data = cfg.canonical_bytes()  # once: `cfg.hash` would encode the whole config again
    return ConfigView(
        label=label,
        kind=TargetKind.FILE,
        config_hash=digest(data),
        values=from_canonical_bytes(data),
        # Round-trip through JSON: the exact form a run's snapshot holds.
        provenance=Provenance.from_json(cfg.provenance_map().to_json()),
        lineage=tuple(cfg.lineage),
    )


def load_run_snapshot(run_id: str) -> Snapshot:
    """The snapshot of run ``run_id`` from the store ``trackcfg run`` uses (reads only).

    Raises:
        RunNotFoundError: No such run, or no store at all (none is created).
        SnapshotError: The run has no (complete) trackcfg snapshot, or one that was
            changed since the run started.
    """
    from trackcfg.errors import RunNotFoundError
    from trackcfg.session.catalog import store_exists, tracking_uri
    from trackcfg.tracking.snapshot import load_snapshot, read_cached_snapshot

    cached = read_cached_snapshot(run_id)  # a run's snapshot never changes: no download
    if cached is not None:
        return cached
    if not store_exists():
        raise RunNotFoundError(
            f"no run {run_id!r}: there is no tracking store at {tracking_uri()}",
            hint="run from the directory of your mlflow.db, or set MLFLOW_TRACKING_URI",
        )
    return load_snapshot(run_id)


def load_view(target: str, options: Sequence[str] = ()) -> ConfigView:
    """Load a TARGET (config file or run id) as a `ConfigView`.

    Args:
        target: A config path or a 32-hex run id.
        options: ``k=v`` overrides, for config files only.

    Raises:
        ConfigError: The config file is wrong.
        RunNotFoundError: No run has that id.
        SnapshotError: The run has no (complete) trackcfg snapshot, or one that was
            changed since the run started.
    """
    if not is_run_id(target):
        from trackcfg.session.config_keys import load_config

        return view_of_config(load_config(target, options, import_custom_modules=False), target)
    from trackcfg.errors import TrackingError

    if options:
        raise TrackingError(f"run {target}: --cfg-options applies to config files, not to runs")
    snap = load_run_snapshot(target)
    return ConfigView(
        label=f"run {target}",
        kind=TargetKind.RUN,
        config_hash=snap.config_hash,
        values=snap.config,  # decoded from the snapshot's canonical bytes when it was read
        provenance=snap.provenance,
        lineage=tuple(snap.lineage),
    )
