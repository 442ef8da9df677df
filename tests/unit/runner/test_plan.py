"""TrainingPlan: the config's training sections, read once for train() and the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackcfg.errors import ConfigError
from trackcfg.runner.plan import TrainingPlan

EPOCHS = {"runner": {"type": "EpochBasedRunner", "max_epochs": 3}}
ITERS = {"runner": {"type": "IterBasedRunner", "max_iters": 50}}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (EPOCHS, (True, 10, True, None, (("train", 1),))),
        (ITERS, (False, 10, False, None, (("train", 1),))),
        (
            {
                **ITERS,
                "log_config": {"interval": 5, "hooks": [{"type": "T", "by_epoch": True}]},
                "checkpoint_config": {"interval": 1, "max_keep_ckpts": 2},
                "workflow": [["train", 2], ["val", 1]],
            },
            (False, 5, True, 2, (("train", 2), ("val", 1))),
        ),
        ({"total_epochs": 12}, (True, 10, True, None, (("train", 1),))),
        (
            {**EPOCHS, "checkpoint_config": {"max_keep_ckpts": -1}},
            (True, 10, True, None, (("train", 1),)),
        ),
    ],
    ids=["epochs", "iters", "log-hook-by-epoch", "mmdet1-total-epochs", "keep-all"],
)
def test_the_plan_reads_mmcv_defaults_and_overrides(
    config: dict[str, object], expected: tuple[object, ...]
) -> None:
    plan = TrainingPlan.from_config(config)
    assert (plan.by_epoch, plan.log_interval, plan.log_by_epoch, plan.keep_last, plan.workflow) == (
        expected
    )


def test_the_plan_keeps_the_configured_work_dir() -> None:
    assert TrainingPlan.from_config({**EPOCHS, "work_dir": "w/x"}).work_dir == Path("w/x")
    assert TrainingPlan.from_config(EPOCHS).work_dir is None


@pytest.mark.parametrize(
    ("config", "key_path"),
    [
        ({}, "runner"),
        ({"runner": 3}, "runner"),
        ({**EPOCHS, "log_config": {"interval": 0}}, "log_config.interval"),
        ({**EPOCHS, "workflow": [("train", "x")]}, "workflow.0"),
        ({**EPOCHS, "work_dir": 7}, "work_dir"),
    ],
)
def test_a_malformed_section_is_a_config_error_naming_its_key_path(
    config: dict[str, object], key_path: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        TrainingPlan.from_config(config)
    assert caught.value.key_path == key_path
