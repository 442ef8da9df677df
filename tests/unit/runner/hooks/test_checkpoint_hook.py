"""CheckpointHook: when it saves, what keep-last-K deletes, and that it deletes only late."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.runner.hooks.fake_hook_runner import FakeRunnerFactory, fake_runner_factory
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.checkpoint import CheckpointHook


@pytest.fixture
def make_runner(tmp_path: Path) -> FakeRunnerFactory:
    return fake_runner_factory(tmp_path)


def run_epochs(runner: object, hook: CheckpointHook, epochs: int) -> None:
    hook.before_run(runner)  # type: ignore[arg-type]
    for epoch in range(epochs):
        runner.epoch = epoch  # type: ignore[attr-defined]
        hook.after_train_epoch(runner)  # type: ignore[arg-type]


def run_iters(runner: object, hook: CheckpointHook, iters: int) -> None:
    hook.before_run(runner)  # type: ignore[arg-type]
    for i in range(iters):
        runner.iter = i  # type: ignore[attr-defined]
        hook.after_train_iter(runner)  # type: ignore[arg-type]
        hook.after_train_epoch(runner)  # type: ignore[arg-type]  # by_epoch=False: ignored


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({"interval": 2}, ["epoch_2.pth", "epoch_4.pth", "epoch_5.pth"]),
        ({"interval": 2, "save_last": False}, ["epoch_2.pth", "epoch_4.pth"]),
        ({"interval": 1}, [f"epoch_{e}.pth" for e in range(1, 6)]),
        ({}, ["epoch_5.pth"]),  # interval -1: only the last
        ({"save_last": False}, []),
    ],
)
def test_by_epoch_saves_every_interval_and_the_last(
    make_runner: Callable[..., object], cfg: dict[str, object], expected: list[str]
) -> None:
    runner = make_runner(max_epochs=5)
    run_epochs(runner, HOOKS.build({"type": "CheckpointHook", **cfg}), 5)
    assert names(runner.saved) == expected  # type: ignore[attr-defined]


def test_by_iter_saves_every_interval_iterations_and_the_last(
    make_runner: Callable[..., object],
) -> None:
    runner = make_runner(max_iters=7, default_filename_tmpl="iter_{}.pth")
    run_iters(runner, CheckpointHook(interval=3, by_epoch=False), 7)
    assert names(runner.saved) == ["iter_3.pth", "iter_6.pth", "iter_7.pth"]  # type: ignore[attr-defined]


def test_keep_last_k_keeps_the_newest_k_files(make_runner: Callable[..., object]) -> None:
    runner = make_runner(max_epochs=7)
    run_epochs(runner, CheckpointHook(interval=2, max_keep_ckpts=2), 7)
    work = Path(runner.work_dir)  # type: ignore[attr-defined]
    assert sorted(p.name for p in work.iterdir()) == ["epoch_6.pth", "epoch_7.pth"]


def test_keep_last_k_deletes_only_after_the_newer_checkpoint_is_complete(
    make_runner: Callable[..., object],
) -> None:
    runner = make_runner(max_epochs=3, defer_listeners=True)
    hook = CheckpointHook(interval=1, max_keep_ckpts=1)
    run_epochs(runner, hook, 3)
    work = Path(runner.work_dir)  # type: ignore[attr-defined]
    # nothing is durable yet, so nothing old may go
    assert sorted(p.name for p in work.iterdir()) == ["epoch_1.pth", "epoch_2.pth", "epoch_3.pth"]
    runner.complete_checkpoints()  # type: ignore[attr-defined]
    assert sorted(p.name for p in work.iterdir()) == ["epoch_3.pth"]


def test_keep_last_k_also_counts_files_from_before_a_resume(
    make_runner: Callable[..., object],
) -> None:
    runner = make_runner(max_epochs=6)
    work = Path(runner.work_dir)  # type: ignore[attr-defined]
    for old in ("epoch_1.pth", "epoch_2.pth", "epoch_3.pth", "notes.txt", "latest.pth"):
        (work / old).write_bytes(b"x")
    hook = CheckpointHook(interval=1, max_keep_ckpts=2)
    hook.before_run(runner)  # type: ignore[arg-type]
    runner.epoch = 3  # type: ignore[attr-defined]
    hook.after_train_epoch(runner)  # type: ignore[arg-type]
    assert sorted(p.name for p in work.iterdir()) == [
        "epoch_3.pth",
        "epoch_4.pth",
        "latest.pth",
        "notes.txt",
    ]


def test_keep_last_k_ignores_checkpoints_saved_elsewhere(
    make_runner: Callable[..., object], tmp_path: Path
) -> None:
    runner = make_runner(max_epochs=3)
    hook = CheckpointHook(interval=1, max_keep_ckpts=1)
    run_epochs(runner, hook, 2)
    runner.save_checkpoint(tmp_path / "other")  # type: ignore[attr-defined]
    assert (Path(runner.work_dir) / "epoch_2.pth").exists()  # type: ignore[attr-defined]


def test_custom_template_and_out_dir_as_mmcv(
    make_runner: Callable[..., object], tmp_path: Path
) -> None:
    runner = make_runner(max_epochs=3, meta={})
    hook = CheckpointHook(
        interval=1, out_dir=str(tmp_path / "ckpts"), filename_tmpl="ep{:03d}.pth", max_keep_ckpts=1
    )
    run_epochs(runner, hook, 3)
    out = tmp_path / "ckpts" / "work"  # mmcv appends the work dir's name
    assert sorted(p.name for p in out.iterdir()) == ["ep003.pth"]
    assert runner.meta["hook_msgs"]["last_ckpt"] == str(out / "ep003.pth")  # type: ignore[attr-defined]


def test_out_dir_equal_to_work_dir_gets_no_sub_directory(
    make_runner: Callable[..., object],
) -> None:
    runner = make_runner(max_epochs=1)
    run_epochs(runner, CheckpointHook(out_dir=runner.work_dir), 1)  # type: ignore[attr-defined]
    assert names(runner.saved) == ["epoch_1.pth"]  # type: ignore[attr-defined]
    assert runner.saved[0].parent == Path(runner.work_dir)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"filename_tmpl": "ckpt.pth", "max_keep_ckpts": 2}, "exactly one"),
        ({"filename_tmpl": "{}_{}.pth", "max_keep_ckpts": 2}, "exactly one"),
        ({"file_client_args": {"backend": "petrel"}}, "file_client_args"),
        ({"sync_bufer": True}, r"unknown argument\(s\) sync_bufer"),
        ({"meta": "x"}, "meta: must be a dict"),
    ],
)
def test_bad_checkpoint_config_is_rejected_at_build(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HOOKS.build({"type": "CheckpointHook", **kwargs})
