"""``trackcfg register``: a run's best checkpoint as a real MLflow model in the Model Registry.

Steps, each checked before the next does anything costly:

1. The registered model's name is checked as MLflow checks it (no ``/``, ``:``,
   ``%``; not blank), before anything is written.
2. The checkpoint: the run's best (tag ``trackcfg.best_checkpoint``, kept by
   ``evaluation=dict(save_best=...)``) or the one named with ``--checkpoint``,
   confined to the run's ``checkpoints/`` artifacts. It is downloaded and verified
   against its own digest trailer and against the digest the run recorded for it
   (tag ``trackcfg.checkpoint.<name>``).
3. The model: rebuilt from the run's snapshot (`Snapshot.to_config`: the verified
   canonical bytes, with ``custom_imports`` imported; nothing of the store runs),
   the checkpoint's ``state_dict`` loaded into it with ``strict=True`` (the
   registered weights are the checkpoint's, every one of them).
4. An MLflow model of it, saved locally first (a model that cannot be exported
   fails before the store is touched), then logged as the run's output (MLflow 3's
   logged model, `trackcfg.tracking.mlflow_run.log_model_directory`): the ``pytorch`` flavor in
   ``pt2`` form (``torch.export`` of ``forward(img)``, traced with the first
   samples of the config's ``data.val`` (else ``test``, else ``train``) dataset),
   which ``mlflow.pytorch.load_model("models:/NAME/1")`` loads without unpickling
   and without trackcfg installed. The run's status and end time are left alone:
   no active run is used.
5. A new version of the registered model, tagged with the run, its config hash,
   the checkpoint and its digest (and the best metric and where it was reached).

A model whose ``forward`` does not take one ``img`` batch (an mmcv detector's
``forward(img, img_metas, return_loss)``) cannot be exported this way: that is a
`RegistrationError` naming ``torch.export``'s complaint.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trackcfg.errors import RegistrationError, first_line

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from trackcfg.tracking.snapshot import Snapshot

__all__ = [
    "ChosenCheckpoint",
    "Registration",
    "check_model_name",
    "choose_checkpoint",
    "input_example",
    "recorded_checkpoint",
    "register",
    "register_run",
    "version_tags",
]

#: Model version (and logged model) tags linking the weights back to where they came from.
TAG_RUN_ID = "trackcfg.run_id"
TAG_CONFIG_HASH = "trackcfg.config_hash"
TAG_CHECKPOINT = "trackcfg.checkpoint"
TAG_CHECKPOINT_DIGEST = "trackcfg.checkpoint_digest"
TAG_BEST_METRIC = "trackcfg.best_metric"
TAG_EPOCH = "trackcfg.epoch"
TAG_ITER = "trackcfg.iter"

#: Dataset splits an input example is taken from, in order of preference.
_EXAMPLE_SPLITS = ("val", "test", "train")
#: Samples in the input example: two, so that the batch dimension is exported dynamic
#: (``torch.export`` specialises a dimension of size 1 to a constant).
_EXAMPLE_SAMPLES = 2


@dataclass(frozen=True, slots=True)
class ChosenCheckpoint:
    """The stored checkpoint to register.

    Attributes:
        name: Its file name (``best_accuracy_epoch_3.pth``).
        digest: The xxh3-128 digest the run recorded for its bytes, or None.
        epoch: The epoch it was taken at, when recorded.
        iter: The completed iterations it was taken at, when recorded.
        best_metric: The metric that chose it, when it is the run's best.
    """

    name: str
    digest: str | None
    epoch: int | None
    iter: int | None
    best_metric: str | None

    @property
    def artifact(self) -> str:
        """Its path in the run's artifacts."""
        return f"checkpoints/{self.name}"


@dataclass(frozen=True, slots=True)
class Registration:
    """The outcome of `register_run`.

    Attributes:
        run_id: The run the weights come from.
        name: The registered model.
        version: The new version of it.
        model_id: MLflow's logged model (the run's output) the version points to.
        checkpoint: The checkpoint registered.
        config_hash: The run's config hash.
    """

    run_id: str
    name: str
    version: str
    model_id: str
    checkpoint: ChosenCheckpoint
    config_hash: str

    @property
    def model_uri(self) -> str:
        """What ``mlflow.pytorch.load_model`` takes: ``models:/<name>/<version>``."""
        return f"models:/{self.name}/{self.version}"


def check_model_name(name: str) -> None:
    """Refuse a registered-model name MLflow would refuse, before anything is written.

    MLflow 3.17's rules (``mlflow.utils.validation._validate_model_name``, and the
    file store's): not blank, no ``/`` or ``:`` or ``%``, not ``.``/``..``.

    Example:
        >>> check_model_name("digits-mlp")
        >>> check_model_name("team/digits")
        Traceback (most recent call last):
        ...
        trackcfg.errors.RegistrationError: 'team/digits' cannot name a registered model: ...

    Raises:
        RegistrationError: MLflow would refuse it.
    """
    bad = sorted({c for c in name if c in "/:%"})
    if not name.strip() or bad or name.startswith(".."):
        why = f"it contains {' '.join(repr(c) for c in bad)}" if bad else "it is not a name"
        raise RegistrationError(
            f"{name!r} cannot name a registered model: {why}",
            hint="use letters, digits, '-', '_' and '.', e.g. --name digits-mlp",
        )


def recorded_checkpoint(tags: Mapping[str, str], name: str) -> dict[str, str]:
    """The fields the run recorded for its checkpoint ``name`` (tag ``trackcfg.checkpoint.<name>``).

    Example:
        >>> recorded_checkpoint(
        ...     {"trackcfg.checkpoint.epoch_2.pth": "iter=90 epoch=2 xxh3-128=ab state=cd"},
        ...     "epoch_2.pth",
        ... )
        {'iter': '90', 'epoch': '2', 'xxh3-128': 'ab', 'state': 'cd'}
        >>> recorded_checkpoint({}, "epoch_2.pth")
        {}
    """
    from trackcfg.tracking.mlflow_run import TAG_CHECKPOINT_PREFIX

    value = tags.get(TAG_CHECKPOINT_PREFIX + name, "")
    return dict(item.split("=", 1) for item in value.split() if "=" in item)


def choose_checkpoint(
    run_id: str, tags: Mapping[str, str], chosen: str | None, stored: tuple[str, ...] = ()
) -> ChosenCheckpoint:
    """The checkpoint to register: ``chosen`` (a file name), else the run's best.

    Args:
        run_id: The run (for messages).
        tags: The run's tags.
        chosen: A checkpoint file name (``epoch_3.pth``, or ``checkpoints/epoch_3.pth``).
        stored: The run's stored checkpoint names, offered in the error when it has
            no best checkpoint.

    Raises:
        RegistrationError: nothing chosen and the run has no best checkpoint, or
            ``chosen`` is not a plain file name.
    """
    from trackcfg.tracking.mlflow_run import (
        TAG_BEST_CHECKPOINT,
        TAG_BEST_EPOCH,
        TAG_BEST_ITER,
        TAG_BEST_METRIC,
    )

    best = tags.get(TAG_BEST_CHECKPOINT, "").rsplit("/", 1)[-1]
    if chosen is None:
        if not best:
            example = stored[0] if stored else "epoch_3.pth"
            offer = f" (stored: {', '.join(stored)})" if stored else ""
            raise RegistrationError(
                f"run {run_id} has no best checkpoint: its config keeps none "
                "(evaluation=dict(save_best=...)) or no evaluation has run yet",
                hint=f"name a stored checkpoint with --checkpoint, e.g. --checkpoint {example}"
                + offer,
            )
        chosen = best
    name = chosen.removeprefix("checkpoints/")
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise RegistrationError(
            f"run {run_id}: {chosen!r} is not the name of a stored checkpoint",
            hint="give a file name from the run's checkpoints/ artifacts, e.g. epoch_3.pth",
        )
    record = recorded_checkpoint(tags, name)
    is_best = name == best
    epoch = tags.get(TAG_BEST_EPOCH, "") if is_best else record.get("epoch", "")
    done = tags.get(TAG_BEST_ITER, "") if is_best else record.get("iter", "")
    return ChosenCheckpoint(
        name=name,
        digest=record.get("xxh3-128") or None,
        epoch=int(epoch) if epoch.isdigit() else None,
        iter=int(done) if done.isdigit() else None,
        best_metric=(tags.get(TAG_BEST_METRIC) or None) if is_best else None,
    )


def version_tags(
    run_id: str, config_hash: str, checkpoint: ChosenCheckpoint, digest: str
) -> dict[str, str]:
    """The tags of the model version (and of the logged model): where its weights come from.

    Example:
        >>> c = ChosenCheckpoint("best_accuracy_epoch_3.pth", "ab12", 3, 135, "accuracy")
        >>> version_tags("0a1b", "57a1", c, "ab12")  # doctest: +NORMALIZE_WHITESPACE
        {'trackcfg.run_id': '0a1b', 'trackcfg.config_hash': '57a1',
         'trackcfg.checkpoint': 'checkpoints/best_accuracy_epoch_3.pth',
         'trackcfg.checkpoint_digest': 'xxh3-128:ab12', 'trackcfg.epoch': '3',
         'trackcfg.iter': '135', 'trackcfg.best_metric': 'accuracy'}
    """
    tags = {
        TAG_RUN_ID: run_id,
        TAG_CONFIG_HASH: config_hash,
        TAG_CHECKPOINT: checkpoint.artifact,
        TAG_CHECKPOINT_DIGEST: f"xxh3-128:{digest}",
    }
    if checkpoint.epoch is not None:
        tags[TAG_EPOCH] = str(checkpoint.epoch)
    if checkpoint.iter is not None:
        tags[TAG_ITER] = str(checkpoint.iter)
    if checkpoint.best_metric is not None:
        tags[TAG_BEST_METRIC] = checkpoint.best_metric
    return tags


def input_example(config: Mapping[str, object]) -> np.ndarray[Any, Any]:
    """The first samples' ``img`` of the config's evaluation data, batched (what export traces).

    Raises:
        RegistrationError: no ``data`` split to take it from, or samples without an
            ``img`` tensor.
    """
    import torch

    from trackcfg.registry import DATASETS

    data = config.get("data")
    splits = data if isinstance(data, Mapping) else {}
    split = next((s for s in _EXAMPLE_SPLITS if isinstance(splits.get(s), Mapping)), None)
    if split is None:
        raise RegistrationError(
            "the run's config has no data.val, data.test or data.train to take an input "
            "example from (torch.export traces the model with one)"
        )
    try:
        dataset = DATASETS.build(splits[split], key_path=f"data.{split}")
        samples = [dataset[i] for i in range(min(_EXAMPLE_SAMPLES, len(dataset)))]
    except Exception as error:
        raise RegistrationError(
            f"data.{split}: cannot build the dataset for an input example: {first_line(error)}"
        ) from error
    images = [s.get("img") if isinstance(s, Mapping) else None for s in samples]
    if not images or not all(isinstance(i, torch.Tensor) for i in images):
        raise RegistrationError(
            f"data.{split}: its samples have no 'img' tensor to trace the model with",
            hint="the registered model is the export of forward(img), as the zoo's models have",
        )
    return torch.stack(images).numpy()  # type: ignore[arg-type]  # checked above


def _load_weights(model: nn.Module, path: Path, run_id: str, checkpoint: str) -> None:
    """Load the checkpoint's ``state_dict`` into ``model``, every key (``module.`` stripped)."""
    from trackcfg.runner.checkpoint import load_checkpoint_file

    state = load_checkpoint_file(path).get("state_dict")
    if not isinstance(state, dict):
        raise RegistrationError(f"run {run_id}: {checkpoint} holds no 'state_dict'")
    weights = {str(k).removeprefix("module."): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise RegistrationError(
            f"run {run_id}: {checkpoint} does not fit the model its config builds",
            details=[
                f"missing: {', '.join(missing) or '-'}",
                f"unexpected: {', '.join(unexpected) or '-'}",
            ],
            hint="register a checkpoint of this run (its weights are loaded exactly)",
        )


def _build_model(snap: Snapshot, path: Path, checkpoint: str) -> tuple[nn.Module, Any]:
    """The run's model with the checkpoint's weights, in eval mode, and an input example."""
    from trackcfg.registry import MODELS

    cfg = snap.to_config(import_custom_modules=True)  # the verified bytes; hash checked
    config = cfg.to_dict()
    if not isinstance(config.get("model"), Mapping):
        raise RegistrationError(f"run {snap.run_id}: its config has no model section")
    try:
        model = MODELS.build(config["model"], key_path="model")
    except Exception as error:
        raise RegistrationError(
            f"run {snap.run_id}: cannot build its model: {first_line(error)}"
        ) from error
    _load_weights(model, path, str(snap.run_id), checkpoint)
    return model.eval(), input_example(config)


def register_run(run_id: str, name: str, *, checkpoint: str | None = None) -> Registration:
    """Register a run's best checkpoint (or ``checkpoint``) as a version of model ``name``.

    What ``trackcfg register`` does::

        import trackcfg
        reg = trackcfg.register(run_id, "digits-mlp")
        model = mlflow.pytorch.load_model(reg.model_uri)  # models:/digits-mlp/1

    Args:
        run_id: The run (in the store ``trackcfg run`` uses: ``MLFLOW_TRACKING_URI``,
            else ``./mlflow.db``).
        name: The registered model (created when missing).
        checkpoint: A stored checkpoint's file name; default: the run's best.

    Returns:
        The new version, and what it was made of.

    Raises:
        RegistrationError: a name MLflow refuses, no best checkpoint (and none named),
            weights that do not fit the config's model, a model that cannot be exported.
        RunNotFoundError: No such run, or no store.
        SnapshotError: The run has no usable snapshot.
        CheckpointError: The checkpoint is not stored; `CheckpointCorruptError` when
            its bytes do not verify.
    """
    from trackcfg.checkpoint_file import read_checkpoint_record
    from trackcfg.errors import RunNotFoundError
    from trackcfg.session.catalog import store_exists, tracking_uri
    from trackcfg.session.checkpoints import download_stored_checkpoint
    from trackcfg.session.target import load_run_snapshot
    from trackcfg.tracking import mlflow_run as mr

    check_model_name(name)
    uri = tracking_uri()
    if not store_exists():
        raise RunNotFoundError(
            f"no run {run_id!r}: there is no tracking store at {uri}",
            hint="run from the directory of your mlflow.db, or set MLFLOW_TRACKING_URI",
        )
    with mr.store_errors(uri):
        client = mr.open_client(uri)
        tags = dict(mr.get_run(client, run_id).data.tags)
        stored = () if checkpoint or tags.get(mr.TAG_BEST_CHECKPOINT) else _stored(client, run_id)
    chosen = choose_checkpoint(run_id, tags, checkpoint, stored)
    snap = load_run_snapshot(run_id)
    with tempfile.TemporaryDirectory(prefix="trackcfg-register-") as tmp:
        path = download_stored_checkpoint(
            client, run_id, chosen.name, Path(tmp), digest=chosen.digest
        )
        record = read_checkpoint_record(path)  # verified: present and matching
        digest = record.digest if record is not None else str(chosen.digest)
        model, example = _build_model(snap, path, chosen.artifact)
        local = Path(tmp) / "model"
        try:
            mr.save_pytorch_model(model, example, local)
        except Exception as error:
            raise RegistrationError(
                f"run {run_id}: cannot export {type(model).__name__} as an MLflow model "
                f"(torch.export of forward(img)): {first_line(error)}",
                hint="the registered model is the pt2 export of the model's forward(img)",
            ) from error
        tags_out = version_tags(run_id, snap.config_hash, chosen, digest)
        with mr.store_errors(uri):
            model_id = mr.log_model_directory(
                client,
                run_id,
                local,
                name=Path(chosen.name).stem,
                tags=tags_out,
                step=chosen.iter or 0,
            )
    with mr.store_errors(uri):
        version = mr.register_model_version(
            client,
            name,
            model_id,
            run_id=run_id,
            tags=tags_out,
            description=f"{chosen.artifact} of run {run_id} (config hash {snap.config_hash}, "
            f"xxh3-128 {digest})",
        )
    return Registration(run_id, name, version, model_id, chosen, snap.config_hash)


def _stored(client: Any, run_id: str) -> tuple[str, ...]:
    """The run's stored checkpoint names, newest first (offered when none is chosen)."""
    from trackcfg.tracking.agent.uploads import CHECKPOINT_ARTIFACT_DIR, checkpoint_number

    infos = client.list_artifacts(run_id, CHECKPOINT_ARTIFACT_DIR)
    names = [i.path.rsplit("/", 1)[-1] for i in infos if not i.is_dir]
    return tuple(sorted(names, key=lambda n: checkpoint_number(n) or 0, reverse=True))


#: The public Python name (``trackcfg.register``) of what ``trackcfg register`` does.
register = register_run
