"""TextLoggerHook: mmcv-style lines, the JSON-lines file, the progress line, ETA state."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.unit.runner.hooks.fake_hook_runner import FakeRunnerFactory, fake_runner_factory
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.text_logger import TextLoggerHook


@pytest.fixture
def make_runner(tmp_path: Path) -> FakeRunnerFactory:
    return fake_runner_factory(tmp_path)


def sgd(lr: float = 0.1) -> torch.optim.SGD:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def train_iters(runner: object, hook: TextLoggerHook, iters: range, length: int) -> None:
    """Train iterations with loss = iteration index; time 0.5 s, data_time 0.1 s each."""
    runner.mode = "train"  # type: ignore[attr-defined]
    runner.data_loader = list(range(length))  # type: ignore[attr-defined]
    for i in iters:
        runner.iter, runner.inner_iter = i, i % length  # type: ignore[attr-defined]
        runner.epoch = i // length  # type: ignore[attr-defined]
        if runner.inner_iter == 0:  # type: ignore[attr-defined]
            hook.before_train_epoch(runner)  # type: ignore[arg-type]
        runner.log_buffer.update({"loss": float(i), "time": 0.5, "data_time": 0.1})  # type: ignore[attr-defined]
        hook.after_train_iter(runner)  # type: ignore[arg-type]


def start(make_runner: Callable[..., object], hook: TextLoggerHook, **kwargs: object) -> object:
    runner = make_runner(optimizer=sgd(), **kwargs)
    runner.hooks = [hook]  # type: ignore[attr-defined]
    hook.before_run(runner)  # type: ignore[arg-type]
    return runner


def json_lines(runner: object) -> list[dict[str, object]]:
    path = Path(runner.work_dir) / f"{runner.timestamp}.log.json"  # type: ignore[attr-defined]
    return [json.loads(line) for line in path.read_text().splitlines()]


def json_lines_or_none(runner: object) -> list[dict[str, object]]:
    """The JSON records written so far; none if the file does not exist yet."""
    path = Path(runner.work_dir) / f"{runner.timestamp}.log.json"  # type: ignore[attr-defined]
    return json_lines(runner) if path.exists() else []


def test_epoch_based_train_line_matches_mmcv(
    make_runner: Callable[..., object], caplog: pytest.LogCaptureFixture
) -> None:
    hook = HOOKS.build({"type": "TextLoggerHook", "interval": 2, "progress": False})
    runner = start(make_runner, hook, max_epochs=5, max_iters=20)
    with caplog.at_level(logging.INFO, logger="trackcfg.test"):
        train_iters(runner, hook, range(2), length=4)
    # eta: mean logged time 0.5 s x (20 - 1 - 1) remaining iterations = 9 s
    assert caplog.messages == [
        "Epoch [1][2/4]\tlr: 1.000e-01, eta: 0:00:09, time: 0.500, data_time: 0.100, loss: 0.5000"
    ]


def test_iter_based_train_line_matches_mmcv(
    make_runner: Callable[..., object], caplog: pytest.LogCaptureFixture
) -> None:
    hook = TextLoggerHook(by_epoch=False, interval=3, progress=False)
    runner = start(make_runner, hook, max_iters=100)
    with caplog.at_level(logging.INFO, logger="trackcfg.test"):
        train_iters(runner, hook, range(3), length=1000)
    assert caplog.messages == [
        "Iter [3/100]\tlr: 1.000e-01, eta: 0:00:48, time: 0.500, data_time: 0.100, loss: 1.0000"
    ]


def test_val_line_and_exp_name(
    make_runner: Callable[..., object], caplog: pytest.LogCaptureFixture
) -> None:
    hook = TextLoggerHook(interval=2, progress=False)
    runner = start(make_runner, hook, meta={"exp_name": "r50.py"}, mode="val", epoch=1)
    runner.data_loader = [0, 1, 2]  # type: ignore[attr-defined]
    runner.inner_iter = 2  # type: ignore[attr-defined]
    runner.log_buffer.update({"accuracy": 0.9, "top5": 1})  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, logger="trackcfg.test"):
        hook.after_val_epoch(runner)  # type: ignore[arg-type]
    assert caplog.messages == [
        "Exp name: r50.py",
        "Epoch(val) [1][3]\taccuracy: 0.9000, top5: 1.0000",
    ]


def test_json_log_has_meta_then_one_rounded_record_per_log(
    make_runner: Callable[..., object],
) -> None:
    hook = TextLoggerHook(interval=2, progress=False)
    runner = start(make_runner, hook, meta={"config_hash": "ab" * 16}, max_epochs=1, max_iters=4)
    runner.data_loader = [0, 1, 2, 3]  # type: ignore[attr-defined]
    for i in range(4):
        runner.iter = runner.inner_iter = i  # type: ignore[attr-defined]
        runner.log_buffer.update({"ratio": (1 + 3 * i) / 3, "time": 0.5, "data_time": 0.1})  # type: ignore[attr-defined]
        hook.after_train_iter(runner)  # type: ignore[arg-type]
    hook.after_run(runner)  # type: ignore[arg-type]
    meta, first, second = json_lines(runner)
    assert meta == {"config_hash": "ab" * 16}
    assert first == {
        "mode": "train",
        "epoch": 1,
        "iter": 2,
        "lr": 0.1,
        "ratio": 0.83333,  # 5/6, rounded to 5 decimals as mmcv
        "time": 0.5,
        "data_time": 0.1,
    }
    assert (second["iter"], second["ratio"]) == (4, 2.83333)


def test_non_zero_rank_writes_no_json(make_runner: Callable[..., object]) -> None:
    hook = TextLoggerHook(interval=1, progress=False)
    runner = start(make_runner, hook, meta={"a": 1}, rank=1, max_iters=4)
    train_iters(runner, hook, range(2), length=4)
    assert list(Path(runner.work_dir).glob("*.log.json")) == []  # type: ignore[attr-defined]


def test_eval_iter_num_replaces_the_iteration_count(make_runner: Callable[..., object]) -> None:
    hook = TextLoggerHook(progress=False)
    runner = start(make_runner, hook, mode="val", epoch=2)
    runner.log_buffer.output.update({"eval_iter_num": 17, "mAP": 0.5})  # type: ignore[attr-defined]
    logged = hook.log(runner)  # type: ignore[arg-type]
    assert (logged["iter"], "eval_iter_num" in runner.log_buffer.output) == (17, False)  # type: ignore[attr-defined]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "progress", "shown"),
    [
        (FakeTerminal, None, True),
        (io.StringIO, None, False),
        (io.StringIO, True, True),
        (FakeTerminal, False, False),
    ],
)
def test_progress_line_only_on_a_terminal_unless_forced(
    make_runner: Callable[..., object],
    monkeypatch: pytest.MonkeyPatch,
    stream: type[io.StringIO],
    progress: bool | None,
    shown: bool,
) -> None:
    err = stream()
    monkeypatch.setattr("sys.stderr", err)
    hook = TextLoggerHook(interval=100, progress=progress)
    runner = start(make_runner, hook, max_epochs=2, max_iters=8)
    train_iters(runner, hook, range(1), length=4)
    assert ("Epoch 1/2 [#####...............] 1/4" in err.getvalue()) is shown


def test_progress_line_only_on_rank_zero(
    make_runner: Callable[..., object], monkeypatch: pytest.MonkeyPatch
) -> None:
    err = FakeTerminal()
    monkeypatch.setattr("sys.stderr", err)
    hook = TextLoggerHook(interval=100)
    runner = start(make_runner, hook, max_epochs=2, max_iters=8, rank=1)
    train_iters(runner, hook, range(2), length=4)
    assert err.getvalue() == ""


def test_progress_line_shows_rate_and_eta_and_is_cleared_before_log_lines(
    make_runner: Callable[..., object],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    err = FakeTerminal()
    monkeypatch.setattr("sys.stderr", err)
    hook = TextLoggerHook(by_epoch=False, interval=3)
    runner = start(make_runner, hook, max_iters=10)
    handler = logging.StreamHandler(err)  # log lines go to the same terminal
    runner.logger.addHandler(handler)  # type: ignore[attr-defined]
    caplog.set_level(logging.INFO, logger="trackcfg.test")
    try:
        for i in range(3):
            train_iters(runner, hook, range(i, i + 1), length=100)
            time.sleep(0.11)  # past the redraw period
    finally:
        runner.logger.removeHandler(handler)  # type: ignore[attr-defined]
    out = err.getvalue()
    assert "Iter [####................] 2/10" in out
    assert " it/s  eta 0:00:" in out
    # the log line starts on a wiped line, not glued to the progress text
    assert "\r\x1b[2KIter [3/10]\tlr: 1.000e-01" in out


def test_eta_state_survives_a_resume(make_runner: Callable[..., object]) -> None:
    hook = TextLoggerHook(interval=2, by_epoch=False, progress=False)
    runner = start(make_runner, hook, max_iters=10)
    train_iters(runner, hook, range(4), length=100)
    state = hook.state_dict()
    assert state == {"time_sec_tot": 2.0, "start_iter": 0}
    resumed = TextLoggerHook(interval=2, by_epoch=False, progress=False)
    resumed.load_state_dict(state)
    start(make_runner, resumed, max_iters=10, iter=4)
    assert resumed.state_dict() == state  # before_run keeps the restored start


def test_log_files_are_copied_to_out_dir_after_the_run(
    make_runner: Callable[..., object], tmp_path: Path
) -> None:
    hook = TextLoggerHook(out_dir=str(tmp_path / "remote"), keep_local=False, progress=False)
    runner = start(make_runner, hook, meta={"a": 1})
    (Path(runner.work_dir) / "ignored.bin").write_bytes(b"")  # type: ignore[attr-defined]
    hook.after_run(runner)  # type: ignore[arg-type]
    assert [p.name for p in (tmp_path / "remote" / "work").iterdir()] == [
        "20260101_000000.log.json"
    ]
    assert [p.name for p in Path(runner.work_dir).iterdir()] == ["ignored.bin"]  # type: ignore[attr-defined]


def test_with_flush_interval_zero_json_lines_are_in_the_file_as_soon_as_logged(
    make_runner: Callable[..., object],
) -> None:
    # a run killed between two log lines must leave every earlier line in the file
    hook = TextLoggerHook(interval=1, progress=False, flush_interval=0)
    runner = start(make_runner, hook, meta={"a": 1}, max_iters=4)
    train_iters(runner, hook, range(2), length=4)
    assert [r.get("iter") for r in json_lines(runner)] == [None, 1, 2]
    hook.after_run(runner)  # type: ignore[arg-type]
    hook.before_run(runner)  # type: ignore[arg-type]  # a second run appends
    train_iters(runner, hook, range(2, 3), length=4)
    hook.after_run(runner)  # type: ignore[arg-type]
    assert [r.get("iter") for r in json_lines(runner)] == [None, 1, 2, None, 3]


def test_json_lines_wait_at_most_the_flush_interval(make_runner: Callable[..., object]) -> None:
    hook = TextLoggerHook(interval=1, progress=False, flush_interval=0.2)
    runner = start(make_runner, hook, meta={"a": 1}, max_iters=8)
    assert [r.get("iter") for r in json_lines(runner)] == [None]  # meta: written at once
    train_iters(runner, hook, range(2), length=8)
    assert [r.get("iter") for r in json_lines(runner)] == [None]  # still within the interval
    time.sleep(0.25)
    train_iters(runner, hook, range(2, 3), length=8)  # the interval has passed: all out
    assert [r.get("iter") for r in json_lines(runner)] == [None, 1, 2, 3]


def lines_waiting(make_runner: Callable[..., object], iters: int) -> tuple[TextLoggerHook, object]:
    """A hook that logged ``iters`` lines which all still wait in memory (long interval)."""
    hook = TextLoggerHook(interval=1, progress=False, flush_interval=3600)
    runner = start(make_runner, hook, max_iters=8)
    train_iters(runner, hook, range(iters), length=8)
    assert not json_lines_or_none(runner)
    return hook, runner


def test_json_lines_are_written_before_a_checkpoint_and_at_every_end(
    make_runner: Callable[..., object],
) -> None:
    hook, runner = lines_waiting(make_runner, iters=2)
    hook.state_dict()  # what the runner calls to take a checkpoint
    assert [r["iter"] for r in json_lines(runner)] == [1, 2]
    train_iters(runner, hook, range(2, 3), length=8)
    hook.after_train_epoch(runner)  # type: ignore[arg-type]
    assert [r["iter"] for r in json_lines(runner)] == [1, 2, 3]
    train_iters(runner, hook, range(3, 4), length=8)
    hook.after_run(runner)  # type: ignore[arg-type]
    assert [r["iter"] for r in json_lines(runner)] == [1, 2, 3, 4]


def test_json_lines_waiting_when_the_hook_is_dropped_are_written(
    make_runner: Callable[..., object],
) -> None:
    # a run that dies by an exception nobody handles (no after_run) keeps its lines
    hook, runner = lines_waiting(make_runner, iters=3)
    runner.hooks = []  # type: ignore[attr-defined]
    del hook
    gc.collect()
    assert [r["iter"] for r in json_lines(runner)] == [1, 2, 3]


def test_negative_flush_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="flush_interval"):
        TextLoggerHook(flush_interval=-1)


def test_disabled_logger_still_advances_the_eta(
    make_runner: Callable[..., object], caplog: pytest.LogCaptureFixture
) -> None:
    quiet = TextLoggerHook(interval=2, by_epoch=False, progress=False)
    runner = start(make_runner, quiet, max_iters=10)
    with caplog.at_level(logging.WARNING, logger="trackcfg.test"):
        train_iters(runner, quiet, range(4), length=100)
    assert caplog.messages == []
    assert quiet.state_dict() == {"time_sec_tot": 2.0, "start_iter": 0}
    assert len(json_lines(runner)) == 2  # the JSON log does not depend on the level


def test_a_forked_child_does_not_write_the_parents_waiting_lines(tmp_path: Path) -> None:
    # a data loader worker (fork) inherits the waiting lines; its exit must not add them
    from trackcfg.runner.hooks.json_log import JsonLinesFile

    path = tmp_path / "run.log.json"
    log_file = JsonLinesFile(path, flush_interval=3600)
    log_file.append('{"iter": 1}')
    pid = os.fork()
    if pid == 0:  # the child: what its interpreter exit would run, then leave at once
        try:
            log_file.close()
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    assert path.read_text() == ""
    log_file.close()
    assert path.read_text() == '{"iter": 1}\n'


def test_a_json_log_on_a_full_disk_warns_once_keeps_its_lines_and_writes_them_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The fault soak's full disk once failed a run with a traceback from this file."""
    import os

    from trackcfg.runner.hooks.json_log import JsonLinesFile

    path = tmp_path / "run.log.json"
    log_file = JsonLinesFile(path, flush_interval=0)
    good = log_file._fd
    log_file._fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
    try:
        with caplog.at_level("WARNING"):
            log_file.append('{"iter": 1}')
            log_file.append('{"iter": 2, "note": "\u00e9"}')
        assert sum("cannot write the JSON log" in r.getMessage() for r in caplog.records) == 1
    finally:
        os.close(log_file._fd)
        log_file._fd = good  # the disk has room again
    log_file.append('{"iter": 3}')
    log_file.close()
    assert path.read_text(encoding="utf-8").splitlines() == [
        '{"iter": 1}',
        '{"iter": 2, "note": "\u00e9"}',
        '{"iter": 3}',
    ]
