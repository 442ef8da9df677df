"""`trackcfg.session.registration`: the name, the checkpoint chosen, the example, the weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import trackcfg.zoo  # noqa: F401  (registers the digits dataset and models)
from trackcfg.errors import RegistrationError
from trackcfg.runner.checkpoint import copy_state, write_checkpoint_file
from trackcfg.session.registration import (
    ChosenCheckpoint,
    _load_weights,
    check_model_name,
    choose_checkpoint,
    input_example,
)
from trackcfg.zoo.digits import DigitsDataset

RUN = "0123456789abcdef0123456789abcdef"

#: The tags the tracking agent leaves on a run whose evaluation kept a best checkpoint.
BEST_TAGS = {
    "trackcfg.best_checkpoint": "checkpoints/best_accuracy_epoch_2.pth",
    "trackcfg.best_metric": "accuracy",
    "trackcfg.best_epoch": "2",
    "trackcfg.best_iter": "90",
    "trackcfg.checkpoint.best_accuracy_epoch_2.pth": "iter=90 epoch=2 xxh3-128=bb state=ss",
    "trackcfg.checkpoint.epoch_1.pth": "iter=45 epoch=1 xxh3-128=11 state=s1",
}


@pytest.mark.parametrize("name", ["digits", "digits-mlp_v2.1", "Team Model"])
def test_names_mlflow_accepts_pass(name: str) -> None:
    check_model_name(name)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("team/digits", "it contains '/'"),
        ("models:digits", "it contains ':'"),
        ("50%", "it contains '%'"),
        ("  ", "it is not a name"),
        ("", "it is not a name"),
        ("..", "it is not a name"),
    ],
)
def test_names_mlflow_refuses_are_refused_before_anything_is_written(name: str, why: str) -> None:
    with pytest.raises(RegistrationError) as caught:
        check_model_name(name)
    assert caught.value.message == f"{name!r} cannot name a registered model: {why}"
    assert caught.value.hint is not None and "--name" in caught.value.hint


def test_by_default_the_runs_best_checkpoint_is_chosen_with_its_recorded_digest() -> None:
    assert choose_checkpoint(RUN, BEST_TAGS, None) == ChosenCheckpoint(
        "best_accuracy_epoch_2.pth", "bb", 2, 90, "accuracy"
    )


@pytest.mark.parametrize("chosen", ["epoch_1.pth", "checkpoints/epoch_1.pth"])
def test_a_named_checkpoint_is_chosen_with_its_own_record(chosen: str) -> None:
    picked = choose_checkpoint(RUN, BEST_TAGS, chosen)
    assert picked == ChosenCheckpoint("epoch_1.pth", "11", 1, 45, None)
    assert picked.artifact == "checkpoints/epoch_1.pth"


def test_naming_the_best_checkpoint_keeps_its_metric() -> None:
    picked = choose_checkpoint(RUN, BEST_TAGS, "best_accuracy_epoch_2.pth")
    assert picked.best_metric == "accuracy"


def test_a_checkpoint_the_run_recorded_nothing_for_has_no_digest() -> None:
    # Verified against its own trailer only (a run from before per-checkpoint tags).
    assert choose_checkpoint(RUN, {}, "iter_7.pth") == ChosenCheckpoint(
        "iter_7.pth", None, None, None, None
    )


def test_a_run_without_a_best_checkpoint_says_so_and_how_to_pick_one() -> None:
    with pytest.raises(RegistrationError) as caught:
        choose_checkpoint(RUN, {}, None, ("epoch_4.pth", "epoch_3.pth"))
    assert str(caught.value) == (
        f"run {RUN} has no best checkpoint: its config keeps none "
        "(evaluation=dict(save_best=...)) or no evaluation has run yet\n"
        "  hint: name a stored checkpoint with --checkpoint, e.g. --checkpoint epoch_4.pth "
        "(stored: epoch_4.pth, epoch_3.pth)"
    )


@pytest.mark.parametrize("chosen", ["../snapshot/config.canonical.json", "a/b.pth", "..", ""])
def test_a_name_outside_the_checkpoints_is_refused(chosen: str) -> None:
    with pytest.raises(RegistrationError, match="is not the name of a stored checkpoint"):
        choose_checkpoint(RUN, BEST_TAGS, chosen)


DIGITS = {"type": "DigitsDataset", "split": "val", "val_every": 5, "augment": False}


def test_the_input_example_is_the_first_two_evaluation_images() -> None:
    config = {"data": {"train": dict(DIGITS, split="train"), "val": DIGITS}}
    example = input_example(config)
    dataset = DigitsDataset(split="val", val_every=5, augment=False)
    assert example.shape == (2, 1, 8, 8)
    assert example.dtype == "float32"
    assert torch.equal(torch.from_numpy(example[1]), dataset[1]["img"])


def test_without_evaluation_data_the_example_comes_from_train() -> None:
    example = input_example({"data": {"train": DIGITS}})
    assert example.shape == (2, 1, 8, 8)


def test_a_config_without_data_has_no_example() -> None:
    with pytest.raises(RegistrationError, match=r"no data\.val, data\.test or data\.train"):
        input_example({"model": {}})


def test_a_dataset_that_cannot_be_built_is_named() -> None:
    with pytest.raises(RegistrationError, match=r"^data\.val: cannot build the dataset"):
        input_example({"data": {"val": {"type": "NoSuchDataset"}}})


def _checkpoint(tmp_path: Path, state_dict: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / "epoch_1.pth"
    write_checkpoint_file(copy_state({"state_dict": state_dict}), path, epoch=1, iter=45)
    return path


def test_the_checkpoints_weights_are_loaded_exactly(tmp_path: Path) -> None:
    source = nn.Linear(3, 2)
    path = _checkpoint(tmp_path, {f"module.{k}": v for k, v in source.state_dict().items()})
    target = nn.Linear(3, 2)
    _load_weights(target, path, RUN, "checkpoints/epoch_1.pth")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_weights_that_do_not_fit_the_model_are_refused_naming_the_keys(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path, {"weight": torch.zeros(2, 3), "extra": torch.zeros(1)})
    with pytest.raises(RegistrationError) as caught:
        _load_weights(nn.Linear(3, 2), path, RUN, "checkpoints/epoch_1.pth")
    assert caught.value.message == (
        f"run {RUN}: checkpoints/epoch_1.pth does not fit the model its config builds"
    )
    assert caught.value.details == ("missing: bias", "unexpected: extra")
