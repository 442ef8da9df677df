"""What a run shows in MLflow's UI beyond tags and params: its description and datasets.

Everything here is derived from the run's snapshot, so what the UI shows is what
`blame`, `diff` and `resume` read:

* the description (MLflow's run note, ``mlflow.note.content``, rendered as Markdown
  on the run page and in the runs table's "Description" column): the config file
  and hash, the command-line options, the lineage, the git state, and the commands
  that find the run's siblings, resume it, blame a value and re-create its sources;
* the datasets (MLflow run inputs, the "Dataset" column): one per split under
  ``data`` (``train``, ``val``, ``test``) that has a ``type``, named by that type,
  in the split's context. Its digest is the first 12 hex digits of the split's
  config hash (the canonical bytes of ``data.<split>``, as for the whole config):
  trackcfg names the data by what builds it and never reads the samples, so two
  runs show the same digest exactly when their dataset configs are the same;
* the git patch of uncommitted changes as ``git.patch.txt``, which the artifact
  viewer previews (the snapshot's ``trackcfg/git.patch`` stays the verified copy).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from trackcfg.config.canonical import digest, to_canonical_bytes
from trackcfg.tracking import mlflow_run as mr

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from trackcfg.tracking.snapshot import Snapshot

__all__ = ["DATASET_SPLITS", "dataset_records", "describe_run", "run_note"]

_logger = logging.getLogger("trackcfg.tracking")

#: The splits of an mmcv-style ``data`` section that are logged as run inputs.
DATASET_SPLITS = ("train", "val", "test")
_DIGEST_LENGTH = 12


def dataset_records(config: Mapping[str, object], config_file: str) -> list[mr.DatasetRecord]:
    """The datasets of a resolved config, one per split under ``data`` with a ``type``.

    Example:
        >>> data = {"data": {"train": {"type": "Digits", "split": "train"}, "x": 1}}
        >>> [(d.name, d.context, len(d.digest)) for d in dataset_records(data, "c.py")]
        [('Digits', 'train', 12)]
    """
    data = config.get("data")
    if not isinstance(data, Mapping):
        return []
    records = []
    for split in DATASET_SPLITS:
        section = data.get(split)
        if not isinstance(section, Mapping) or "type" not in section:
            continue
        records.append(
            mr.DatasetRecord(
                name=str(section["type"]),
                digest=digest(to_canonical_bytes(section))[:_DIGEST_LENGTH],
                context=split,
                source=json.dumps({"config_file": config_file, "key_path": f"data.{split}"}),
                profile=json.dumps({"config": section}, default=repr, sort_keys=True),
            )
        )
    return records


def run_note(snap: Snapshot, run_id: str) -> str:
    """The run's description (Markdown), from its snapshot."""
    short = snap.config_hash[:8]
    lines = [
        f"**Config** `{snap.config_file}`, hash `{snap.config_hash}`",
    ]
    if snap.cfg_options:
        lines.append("")
        lines.append("**Options** `--cfg-options " + " ".join(snap.cfg_options) + "`")
    # Git state and commands before the lineage list: the UI shows the first lines
    # until "Show more" is clicked.
    lines += ["", "**Git** " + _git_line(snap)]
    lines += [
        "",
        "**Commands**",
        f"- runs of this config: `trackcfg runs --hash {short}`, `trackcfg ui --hash {short}`",
        f"- resume it: `trackcfg resume {run_id}`",
        f"- which file set a value: `trackcfg blame {run_id} optimizer.lr`",
        f"- why two runs differ: `trackcfg diff {run_id} OTHER_RUN_ID`",
        f"- re-create its sources: `trackcfg reproduce {run_id}`",
    ]
    lines += ["", f"**Lineage** ({len(snap.lineage)} files; bytes and digests in `trackcfg/`)"]
    for entry in snap.lineage:
        by = f", from `{entry.included_by}`" if entry.included_by else ""
        lines.append(f"- `{entry.path}` `{entry.digest[:12]}`{by}")
    return "\n".join(lines)


def _git_line(snap: Snapshot) -> str:
    git = snap.git
    if git.repo is None:
        return "not a git repository"
    where = f"commit `{git.commit}`" if git.commit else "no commit yet"
    if git.branch:
        where += f" on `{git.branch}`"
    if git.dirty:
        where += (
            f"; **uncommitted changes** to tracked files (artifact `{mr.PATCH_PREVIEW_ARTIFACT}`)"
        )
    else:
        where += "; no uncommitted changes to tracked files"
    if git.untracked:
        where += f"; {len(git.untracked)} untracked files (listed in `trackcfg/git.json`)"
    return where


def describe_run(client: MlflowClient, run_id: str, snap: Snapshot) -> None:
    """Give a new run its description, datasets and previewable patch (see module doc).

    Best effort: what the store refuses is logged as a warning, never fails the run
    (the snapshot holds all of it).
    """
    note = run_note(snap, run_id)
    datasets = dataset_records(snap.config, snap.config_file)
    steps: tuple[tuple[str, Callable[[], None]], ...] = (
        ("description", lambda: mr.set_tags(client, run_id, {mr.TAG_NOTE: note})),
        ("datasets", lambda: mr.log_datasets(client, run_id, datasets)),
        ("patch preview", lambda: _log_patch(client, run_id, snap)),
    )
    for what, step in steps:
        try:
            step()
        except Exception as error:
            if not mr.is_store_error(error):
                raise
            _logger.warning("trackcfg: run %s: cannot record its %s: %s", run_id, what, error)


def _log_patch(client: MlflowClient, run_id: str, snap: Snapshot) -> None:
    if snap.patch:
        text = snap.patch.decode("utf-8", errors="replace")
        mr.log_text_artifact(client, run_id, text, mr.PATCH_PREVIEW_ARTIFACT)
