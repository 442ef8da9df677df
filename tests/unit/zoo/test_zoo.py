"""The zoo: digits split, augmentation from torch's generator, the mmcv step protocol."""

from __future__ import annotations

import pytest
import torch

from trackcfg.registry import DATASETS, MODELS
from trackcfg.zoo import DigitsCNN, DigitsDataset, DigitsMLP


@pytest.mark.parametrize(("split", "size"), [("train", 1437), ("val", 360)])
def test_digits_split_is_a_fixed_rule(split: str, size: int) -> None:
    ds = DigitsDataset(split=split)
    assert len(ds) == size
    assert ds[0]["img"].shape == (1, 8, 8)
    assert ds[0]["gt_label"].dtype == torch.int64


def test_val_every_moves_the_split() -> None:
    sizes = [len(DigitsDataset(split, val_every=10)) for split in ("train", "val")]
    assert sizes == [1617, 180]


def test_augmentation_draws_only_from_torch_generator() -> None:
    ds = DigitsDataset("train", augment=True)
    torch.manual_seed(7)
    first = ds[3]["img"]
    torch.manual_seed(7)
    again = ds[3]["img"]
    plain = DigitsDataset("train")[3]["img"]
    assert torch.equal(first, again)
    assert not torch.equal(first, plain)


@pytest.mark.parametrize("name", ["DigitsMLP", "DigitsCNN"])
def test_models_follow_the_mmcv_step_protocol(name: str) -> None:
    model = MODELS.build(dict(type=name))
    batch = {
        "img": torch.stack([DigitsDataset("val")[i]["img"] for i in range(4)]),
        "gt_label": torch.tensor([0, 1, 2, 3]),
    }
    out = model.train_step(batch, None)
    assert set(out) == {"loss", "log_vars", "num_samples"}
    assert out["loss"].requires_grad and out["num_samples"] == 4
    val = model.val_step(batch, None)
    assert set(val["log_vars"]) == {"loss", "accuracy"}
    assert 0.0 <= val["log_vars"]["accuracy"] <= 1.0


def test_zoo_classes_are_registered() -> None:
    assert MODELS.get("DigitsMLP") is DigitsMLP
    assert MODELS.get("DigitsCNN") is DigitsCNN
    assert DATASETS.get("DigitsDataset") is DigitsDataset
