"""trackcfg.train: config-driven runs, resume_from='auto', config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.unit.runner.toys import ToyData, ToyNet
from trackcfg.errors import ConfigError
from trackcfg.registry import DATASETS, MODELS
from trackcfg.runner.checkpoint import load_checkpoint_file
from trackcfg.runner.train import train

MODELS.register_module(name="TrainTestNet", module=ToyNet, force=True)
DATASETS.register_module(name="TrainTestData", module=ToyData, force=True)


def config(root: Path, **overrides: object) -> dict[str, object]:
    cfg: dict[str, object] = {
        "model": {"type": "TrainTestNet"},
        "data": {"samples_per_gpu": 4, "workers_per_gpu": 0, "train": {"type": "TrainTestData"}},
        "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
        "optimizer_config": {"grad_clip": {"max_norm": 1.0}},
        "lr_config": {"policy": "step", "step": [1]},
        "runner": {"type": "EpochBasedRunner", "max_epochs": 2},
        "checkpoint_config": {"interval": 1},
        "log_config": {"interval": 1, "hooks": []},
        "workflow": [("train", 1)],
        "seed": 11,
        "work_dir": str(root),
    }
    cfg.update(overrides)
    return cfg


def test_train_runs_the_config_and_records_its_hash(tmp_path: Path) -> None:
    runner = train(config(tmp_path))
    assert (runner.epoch, runner.iter) == (2, 6)
    meta = load_checkpoint_file(tmp_path / "latest.pth")["meta"]
    assert isinstance(meta, dict)
    assert len(str(meta["config_hash"])) == 32 and meta["seed"] == 11


def test_train_is_repeatable_from_the_seed(tmp_path: Path) -> None:
    a = train(config(tmp_path / "a"))
    b = train(config(tmp_path / "b"))
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_resume_auto_continues_from_the_newest_checkpoint(tmp_path: Path) -> None:
    reference = train(config(tmp_path / "ref"))
    train(config(tmp_path / "run", runner={"type": "EpochBasedRunner", "max_epochs": 1}))
    resumed = train(config(tmp_path / "run"), resume_from="auto")
    for x, y in zip(
        reference.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y)


def test_resume_auto_skips_a_checkpoint_that_fails_its_digest(tmp_path: Path) -> None:
    reference = train(config(tmp_path / "ref"))
    train(config(tmp_path / "run"))
    newest = tmp_path / "run" / "epoch_2.pth"
    data = bytearray(newest.read_bytes())
    data[100] ^= 0xFF  # damaged content, intact trailer
    newest.write_bytes(bytes(data))
    resumed = train(config(tmp_path / "run"), resume_from="auto")
    assert (resumed.epoch, resumed.iter) == (2, 6)
    for x, y in zip(
        reference.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y)


def test_resume_auto_without_checkpoints_starts_fresh(tmp_path: Path) -> None:
    runner = train(config(tmp_path), resume_from="auto")
    assert runner.iter == 6


@pytest.mark.parametrize(
    ("overrides", "key_path"),
    [
        ({"work_dir": None}, "work_dir"),
        ({"seed": "eleven"}, "seed"),
        ({"workflow": [("train", 1), ("val", 1)]}, "data.val"),
    ],
)
def test_train_reports_config_errors_by_key_path(
    tmp_path: Path, overrides: dict[str, object], key_path: str
) -> None:
    with pytest.raises(ConfigError) as info:
        train(config(tmp_path, **overrides))
    assert info.value.key_path == key_path


def test_train_accepts_a_config_and_records_its_hash(tmp_path: Path) -> None:
    from trackcfg.config.config import Config

    cfg = Config(config(tmp_path, runner={"type": "EpochBasedRunner", "max_epochs": 1}))
    runner = train(cfg)
    assert runner.meta is not None and runner.meta["config_hash"] == cfg.hash


def test_train_fp16_key_selects_the_fp16_optimizer_hook(tmp_path: Path) -> None:
    cfg = config(tmp_path, fp16={"loss_scale": 512.0, "device": "cpu"})
    cfg["runner"] = {"type": "EpochBasedRunner", "max_epochs": 1}
    runner = train(cfg)
    assert "Fp16OptimizerHook" in [type(h).__name__ for h in runner.hooks]


def test_train_fp16_key_with_accumulation_selects_the_accumulating_fp16_hook(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, fp16={"loss_scale": 512.0, "device": "cpu"})
    cfg["runner"] = {"type": "EpochBasedRunner", "max_epochs": 1}
    cfg["optimizer_config"] = {"type": "GradientCumulativeOptimizerHook", "cumulative_iters": 2}
    runner = train(cfg)
    hooks = [h for h in runner.hooks if type(h).__name__ == "GradientCumulativeFp16OptimizerHook"]
    assert len(hooks) == 1 and hooks[0].cumulative_iters == 2  # type: ignore[attr-defined]


def test_unknown_model_type_names_the_config_file_and_line(tmp_path: Path) -> None:
    from trackcfg.config.config import Config
    from trackcfg.errors import UnknownTypeError

    path = tmp_path / "unknown_model.py"
    path.write_text(
        "data = dict(samples_per_gpu=4, train=dict(type='TrainTestData'))\n"
        "model = dict(type='NoSuchRunnerTestModel')\n"
        "optimizer = dict(type='SGD', lr=0.1)\n"
        "runner = dict(type='EpochBasedRunner', max_epochs=1)\n"
    )
    with pytest.raises(UnknownTypeError) as info:
        train(Config.fromfile(path), work_dir=tmp_path / "work")
    assert info.value.location is not None and info.value.location.line == 2
    assert info.value.key_path == "model"


def test_train_writes_a_text_log_in_the_work_dir(tmp_path: Path) -> None:
    runner = train(config(tmp_path, runner={"type": "EpochBasedRunner", "max_epochs": 1}))
    text = (tmp_path / f"{runner.timestamp}.log").read_text()
    assert " - trackcfg.train - INFO - workflow: [('train', 1)], max: 1 epochs" in text


def test_a_text_log_line_that_cannot_be_written_costs_one_warning_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno
    import logging

    from trackcfg.runner.train import TextLogFile

    class FullDisk:
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            pass

    handler = TextLogFile(tmp_path / "run.log")
    handler.stream = FullDisk()  # type: ignore[assignment]
    logger = logging.getLogger("trackcfg.test.textlog")
    logger.addHandler(handler)
    try:
        logger.warning("one")
        logger.warning("two")
    finally:
        logger.removeHandler(handler)
    handler.close()  # flushes: a disk still full at the end is no traceback either
    err = capsys.readouterr().err
    assert err.count("cannot write the text log") == 1
    assert "No space left on device" in err and "Traceback" not in err
