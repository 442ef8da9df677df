"""Checkpoints: atomic single-file writes, digest checks, weights_only loads, exact resume."""

from __future__ import annotations

import fcntl
import logging
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.unit.runner.toys import CheckpointEveryIter, RecordingHook, RunnerFactory, StepHook
from trackcfg.errors import CheckpointCorruptError, CheckpointError, WorldSizeMismatchError
from trackcfg.runner.base_runner import BaseRunner
from trackcfg.runner.checkpoint import (
    CheckpointWriter,
    SavedCheckpoint,
    content_digest,
    copy_state,
    find_latest_checkpoint,
    list_checkpoints,
    load_checkpoint_file,
    read_checkpoint_record,
    remove_stale_temp_files,
    training_state_digest,
    write_checkpoint_file,
)
from trackcfg.runner.epoch_based_runner import EpochBasedRunner
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.iter_based_runner import IterBasedRunner

Loader = Callable[..., torch.utils.data.DataLoader[object]]


def write(path: Path, state: dict[str, object], iter: int = 1) -> SavedCheckpoint:
    return write_checkpoint_file(copy_state(state), path, epoch=0, iter=iter)  # type: ignore[arg-type]


def test_written_checkpoint_loads_with_its_digest(tmp_path: Path) -> None:
    saved = write(tmp_path / "a.pth", {"w": torch.arange(5.0), "meta": {"epoch": 1}})
    loaded = load_checkpoint_file(tmp_path / "a.pth")
    assert torch.equal(loaded["w"], torch.arange(5.0))  # type: ignore[arg-type]
    record = read_checkpoint_record(tmp_path / "a.pth")
    assert record is not None and record.digest == saved.digest and record.iter == 1


def test_checkpoint_is_a_plain_torch_zip_archive(tmp_path: Path) -> None:
    write(tmp_path / "a.pth", {"w": torch.ones(2)})
    plain = torch.load(tmp_path / "a.pth", weights_only=True)  # no trackcfg needed to read it
    assert torch.equal(plain["w"], torch.ones(2))


@pytest.mark.parametrize("keep", [0.0, 0.25, 0.5, 0.9, 0.999])
def test_torn_file_never_looks_complete(tmp_path: Path, keep: float) -> None:
    write(tmp_path / "full.pth", {"w": torch.randn(1000)})
    data = (tmp_path / "full.pth").read_bytes()
    torn = tmp_path / "torn.pth"
    torn.write_bytes(data[: int(len(data) * keep)])
    assert read_checkpoint_record(torn) is None
    assert [p.name for p, _ in list_checkpoints(tmp_path)] == ["full.pth"]
    with pytest.raises(CheckpointCorruptError, match="no trackcfg digest trailer"):
        load_checkpoint_file(torn)


def test_digest_mismatch_is_detected(tmp_path: Path) -> None:
    write(tmp_path / "a.pth", {"w": torch.zeros(1000)})
    data = bytearray((tmp_path / "a.pth").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "a.pth").write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptError, match="content digest mismatch"):
        load_checkpoint_file(tmp_path / "a.pth")


class Payload:
    """Not plain data: unpickling it would run code."""

    def __reduce__(self) -> tuple[object, ...]:
        return (os.getcwd, ())


def test_load_refuses_pickled_objects(tmp_path: Path) -> None:
    # Bypass copy_state (which would refuse it) to get a file with a valid digest.
    write_checkpoint_file({"x": Payload()}, tmp_path / "evil.pth", epoch=0, iter=0)
    with pytest.raises(CheckpointCorruptError, match="cannot load as plain data"):
        load_checkpoint_file(tmp_path / "evil.pth")


@pytest.mark.parametrize(
    ("state", "key_path"),
    [
        ({"a": {"b": object()}}, "a.b"),
        ({"a": [1, np.zeros(2)]}, "a.1"),
        ({"f": print}, "f"),
    ],
)
def test_copy_state_rejects_non_plain_values(state: dict[str, object], key_path: str) -> None:
    with pytest.raises(CheckpointError) as info:
        copy_state(state)
    assert info.value.key_path == key_path


def test_copy_state_shares_no_memory() -> None:
    live = {"w": torch.ones(3)}
    copied = copy_state(live)
    live["w"].add_(1)
    assert torch.equal(copied["w"], torch.ones(3))  # type: ignore[index]


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint_file(tmp_path / "nope.pth")


def test_malformed_failpoint_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKCFG_FAILPOINT", "checkpoint-write:zero")
    with pytest.raises(CheckpointError, match="malformed TRACKCFG_FAILPOINT"):
        CheckpointWriter()


def test_writer_reports_failures_on_the_training_thread(tmp_path: Path) -> None:
    writer = CheckpointWriter()
    writer.submit(
        {"w": torch.ones(1)}, tmp_path / "missing_dir" / "a.pth", link=None, epoch=0, iter=0
    )
    with pytest.raises(CheckpointError, match="writing a checkpoint failed"):
        writer.wait()


def run_with_checkpoints(
    runner: BaseRunner, loader: torch.utils.data.DataLoader[object], listener: list[SavedCheckpoint]
) -> None:
    runner.register_hook(StepHook())
    runner.register_hook(CheckpointEveryIter())
    runner.add_checkpoint_listener(listener.append)
    runner.run([loader], [("train", 1)])


def test_save_checkpoint_writes_mmcv_keys_and_ours(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=1, meta={"config_hash": "abc"})
    saved: list[SavedCheckpoint] = []
    run_with_checkpoints(runner, toy_loader(), saved)
    assert [(s.path.name, s.epoch, s.iter) for s in saved] == [
        ("iter_1.pth", 0, 1),
        ("iter_2.pth", 0, 2),
        ("iter_3.pth", 0, 3),  # taken between the last iteration and after_train_epoch
    ]
    checkpoint = load_checkpoint_file(saved[-1].path)
    assert {"meta", "state_dict", "optimizer", "runner", "rng", "hook_states", "log_buffer"} <= set(
        checkpoint
    )
    meta = checkpoint["meta"]
    assert isinstance(meta, dict)
    assert (meta["config_hash"], meta["epoch"], meta["iter"]) == ("abc", 0, 3)


def test_latest_points_at_the_newest_complete_checkpoint(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=1)
    run_with_checkpoints(runner, toy_loader(), [])
    work = Path(str(runner.work_dir))
    assert os.readlink(work / "latest.pth") == "iter_3.pth"
    assert find_latest_checkpoint(work) == work / "iter_3.pth"


def test_epoch_checkpoint_is_named_by_epoch(make_runner: RunnerFactory, toy_loader: Loader) -> None:
    class EpochSaver(Hook):
        def after_train_epoch(self, runner: BaseRunner) -> None:
            runner.save_checkpoint(str(runner.work_dir))

    runner = make_runner(EpochBasedRunner, max_epochs=2)
    runner.register_hook(EpochSaver())
    runner.run([toy_loader()], [("train", 1)])
    work = Path(str(runner.work_dir))
    assert sorted(p.name for p in work.glob("*.pth")) == [
        "epoch_1.pth",
        "epoch_2.pth",
        "latest.pth",
    ]


def test_side_checkpoints_of_a_boundary_are_written_before_the_others(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    # A best checkpoint (no latest.pth link) requested after the epoch's checkpoint at
    # the same boundary is durable first: the epoch checkpoint's hook state names it.
    class EpochSaver(Hook):
        def after_train_epoch(self, runner: BaseRunner) -> None:
            runner.save_checkpoint(str(runner.work_dir))

    class BestSaver(Hook):
        def after_train_epoch(self, runner: BaseRunner) -> None:
            runner.save_checkpoint(
                str(runner.work_dir), filename_tmpl="best_epoch_{}.pth", create_symlink=False
            )

    runner = make_runner(EpochBasedRunner, max_epochs=1)
    runner.register_hook(EpochSaver(), "NORMAL")
    runner.register_hook(BestSaver(), "LOW")
    written: list[str] = []
    runner.add_checkpoint_listener(lambda saved: written.append(saved.path.name))
    runner.run([toy_loader()], [("train", 1)])
    assert written == ["best_epoch_1.pth", "epoch_1.pth"]


def final_state(runner: BaseRunner) -> list[torch.Tensor]:
    optimizer = runner.optimizer
    assert isinstance(optimizer, torch.optim.Optimizer)
    momenta = [optimizer.state[p]["momentum_buffer"] for p in runner.model.parameters()]
    return [*runner.model.state_dict().values(), *momenta]


@pytest.mark.parametrize(
    ("runner_cls", "kwargs", "checkpoint"),
    [
        (EpochBasedRunner, {"max_epochs": 3}, "iter_4.pth"),  # mid-epoch (epoch 1, batch 1)
        (EpochBasedRunner, {"max_epochs": 3}, "iter_6.pth"),  # end of epoch 1
        (IterBasedRunner, {"max_iters": 8}, "iter_5.pth"),
    ],
)
def test_resume_continues_bit_identically(
    make_runner: RunnerFactory,
    toy_loader: Loader,
    tmp_path: Path,
    runner_cls: type[BaseRunner],
    kwargs: dict[str, int],
    checkpoint: str,
) -> None:
    reference = make_runner(runner_cls, **kwargs)
    run_with_checkpoints(reference, toy_loader(), [])
    kept = tmp_path / "kept.pth"
    shutil.copy(Path(str(reference.work_dir)) / checkpoint, kept)

    resumed = make_runner(runner_cls, seed=99, **kwargs)  # different initial weights
    resumed.register_hook(StepHook())
    resumed.resume(kept)
    # Random draws between resume() and the run must not shift any stream.
    random.random(), np.random.rand(), torch.rand(3)
    resumed.run([toy_loader()], [("train", 1)])
    for a, b in zip(final_state(reference), final_state(resumed), strict=True):
        assert torch.equal(a, b)
    assert (resumed.epoch, resumed.iter) == (reference.epoch, reference.iter)


def test_mid_epoch_resume_does_not_load_consumed_samples(
    make_runner: RunnerFactory, toy_loader: Loader, tmp_path: Path
) -> None:
    reference = make_runner(EpochBasedRunner, max_epochs=1)
    run_with_checkpoints(reference, toy_loader(), [])
    resumed = make_runner(EpochBasedRunner, max_epochs=1)
    resumed.resume(Path(str(reference.work_dir)) / "iter_2.pth")
    loader = toy_loader()
    resumed.run([loader], [("train", 1)])
    assert len(loader.dataset.dataset.fetched) == 4  # type: ignore[attr-defined]  # one batch of 4


def test_resume_restores_hook_state_and_meta(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    class Counter(Hook):
        def __init__(self) -> None:
            self.count = 0

        def after_train_iter(self, runner: BaseRunner) -> None:
            self.count += 1

        def state_dict(self) -> dict[str, object]:
            return {"count": self.count}

        def load_state_dict(self, state: dict[str, object]) -> None:
            self.count = int(state["count"])  # type: ignore[call-overload]

    runner = make_runner(EpochBasedRunner, max_epochs=1, meta={"hook_msgs": {"last_ckpt": "x"}})
    runner.register_hook(Counter())
    run_with_checkpoints(runner, toy_loader(), [])
    resumed = make_runner(EpochBasedRunner, max_epochs=2)
    counter = Counter()
    resumed.register_hook(counter)
    resumed.register_hook(CheckpointEveryIter())
    resumed.resume(Path(str(runner.work_dir)) / "latest.pth")
    assert counter.count == 3
    assert resumed.meta == {"hook_msgs": {"last_ckpt": "x"}}
    resumed.run([toy_loader()], [("train", 1)])
    resumed.wait_for_checkpoints()
    meta = load_checkpoint_file(Path(str(runner.work_dir)) / "latest.pth")["meta"]
    assert isinstance(meta, dict) and (meta["epoch"], meta["iter"]) == (1, 6)


def test_resume_refuses_a_torn_checkpoint(make_runner: RunnerFactory, tmp_path: Path) -> None:
    write(tmp_path / "full.pth", {"w": torch.randn(100)})
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "torn.pth").write_bytes(data[: len(data) // 2])
    runner = make_runner(EpochBasedRunner)
    with pytest.raises(CheckpointCorruptError):
        runner.resume(tmp_path / "torn.pth")


def test_load_checkpoint_loads_weights_only(make_runner: RunnerFactory, tmp_path: Path) -> None:
    source = make_runner(EpochBasedRunner, seed=5)
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in source.model.state_dict().items()}},
        tmp_path / "w.pth",
    )
    target = make_runner(EpochBasedRunner, seed=6)
    target.load_checkpoint(tmp_path / "w.pth")
    for a, b in zip(
        source.model.state_dict().values(), target.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_checkpoint_requested_in_a_hook_is_taken_after_the_stage(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    class LateMutation(RecordingHook):
        """Runs after the checkpoint request, in the same stage."""

        def __init__(self) -> None:
            super().__init__()
            self.ticks = 0

        def after_train_iter(self, runner: BaseRunner) -> None:
            self.ticks += 1

        def state_dict(self) -> dict[str, object]:
            return {"ticks": self.ticks}

    runner = make_runner(EpochBasedRunner, max_epochs=1)
    runner.register_hook(CheckpointEveryIter(), "HIGHEST")
    runner.register_hook(LateMutation(), "LOWEST")
    runner.run([toy_loader()], [("train", 1)])
    states = load_checkpoint_file(Path(str(runner.work_dir)) / "iter_1.pth")["hook_states"]
    assert states == {"CheckpointEveryIter#0": {}, "LateMutation#0": {"ticks": 1}}


def test_resume_after_the_last_training_epoch_still_runs_the_trailing_val(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    class EpochSaver(Hook):
        def after_train_epoch(self, runner: BaseRunner) -> None:
            runner.save_checkpoint(str(runner.work_dir))

    runner = make_runner(EpochBasedRunner, max_epochs=1)
    runner.register_hook(EpochSaver())
    runner.run([toy_loader(), toy_loader(4)], [("train", 1), ("val", 1)])
    resumed = make_runner(EpochBasedRunner, max_epochs=1)
    hook = RecordingHook()
    resumed.register_hook(hook)
    resumed.resume(Path(str(runner.work_dir)) / "epoch_1.pth")
    resumed.run([toy_loader(), toy_loader(4)], [("train", 1), ("val", 1)])
    assert [e[0] for e in hook.events if e[0].endswith("_epoch")] == [
        "before_val_epoch",
        "after_val_epoch",
    ]


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".iter_3.pth.tmp-{dead.pid}"
    live = tmp_path / f".iter_4.pth.tmp-{os.getpid()}"
    stale.write_bytes(b"torn")
    live.write_bytes(b"in progress")
    assert remove_stale_temp_files(tmp_path) == [stale]
    assert live.exists() and not stale.exists()


def dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def test_saving_removes_temp_files_of_dead_writers_but_never_a_live_ones(tmp_path: Path) -> None:
    stale = tmp_path / f".epoch_3.pth.tmp-{dead_pid()}"  # a resumed run's killed writer
    live = tmp_path / f".epoch_4.pth.tmp-{os.getpid()}"
    elsewhere = tmp_path / f".epoch_5.pth.tmp-{dead_pid()}"  # pid of another machine, locked
    for path in (stale, live, elsewhere):
        path.write_bytes(b"torn")
    with open(elsewhere, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        writer = CheckpointWriter()
        writer.submit({"w": torch.ones(1)}, tmp_path / "epoch_6.pth", link=None, epoch=6, iter=6)
        writer.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, elsewhere.name, "epoch_6.pth"]
    )


def test_a_pin_keeps_the_written_bytes_when_the_file_is_replaced(tmp_path: Path) -> None:
    saved: list[SavedCheckpoint] = []
    writer = CheckpointWriter()
    writer.add_listener(saved.append, pin_dir=tmp_path / "pins")
    path = tmp_path / "epoch_1.pth"
    writer.submit({"w": torch.zeros(100)}, path, link=None, epoch=1, iter=45)
    writer.wait()
    # Another run sharing the work dir writes the same name.
    write(tmp_path / "other.pth", {"w": torch.ones(100)})
    os.replace(tmp_path / "other.pth", path)
    (ours,) = saved
    assert ours.pinned is not None and ours.pinned.parent == tmp_path / "pins"
    assert content_digest(ours.pinned) == ours.digest != content_digest(path)
    assert torch.equal(load_checkpoint_file(ours.pinned)["w"], torch.zeros(100))  # type: ignore[arg-type]


def test_pending_checkpoint_is_finished_at_interpreter_exit(tmp_path: Path) -> None:
    script = f"""
import torch
from torch import nn
from trackcfg.runner.epoch_based_runner import EpochBasedRunner
model = nn.Linear(200, 200)
model.train_step = lambda *a: {{}}
runner = EpochBasedRunner(model, work_dir={str(tmp_path)!r})
runner.save_checkpoint({str(tmp_path)!r})  # no wait_for_checkpoints()
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[3])
    assert load_checkpoint_file(tmp_path / "latest.pth")["meta"]["epoch"] == 0  # type: ignore[index]


def test_amp_scaler_and_schedulers_round_trip(make_runner: RunnerFactory, tmp_path: Path) -> None:
    runner = make_runner(EpochBasedRunner)
    optimizer = runner.optimizer
    assert isinstance(optimizer, torch.optim.Optimizer)
    runner.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    runner.schedulers = [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]
    optimizer.step()  # (no grads: a no-op) keeps torch's step-order check quiet
    runner.schedulers[0].step()  # type: ignore[attr-defined]
    runner.save_checkpoint(tmp_path, filename_tmpl="a_{}.pth")
    runner.wait_for_checkpoints()
    other = make_runner(EpochBasedRunner)
    assert isinstance(other.optimizer, torch.optim.Optimizer)
    other.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    other.schedulers = [torch.optim.lr_scheduler.StepLR(other.optimizer, step_size=1, gamma=0.5)]
    other.resume(tmp_path / "a_1.pth")
    assert other.scaler.get_scale() == 1024.0  # type: ignore[attr-defined]
    assert other.schedulers[0].last_epoch == 1  # type: ignore[attr-defined]
    assert other.current_lr() == [0.05]


def test_resume_refuses_a_checkpoint_of_the_other_runner_type(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=1)
    run_with_checkpoints(runner, toy_loader(), [])
    other = make_runner(IterBasedRunner, max_iters=3)
    with pytest.raises(CheckpointError, match="written by a EpochBasedRunner"):
        other.resume(Path(str(runner.work_dir)) / "latest.pth")


def test_failpoint_kills_the_process_halfway_through_the_nth_write(tmp_path: Path) -> None:
    script = f"""
import torch
from torch import nn
from trackcfg.runner.epoch_based_runner import EpochBasedRunner
model = nn.Linear(100, 100)
model.train_step = lambda *a: {{}}
runner = EpochBasedRunner(model, work_dir={str(tmp_path)!r})
for i in range(3):
    runner.save_checkpoint({str(tmp_path)!r}, filename_tmpl=f"c{{i}}_{{{{}}}}.pth")
    runner.wait_for_checkpoints()
"""
    env = {**os.environ, "TRACKCFG_FAILPOINT": "checkpoint-write:2"}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=Path(__file__).parents[3], check=False
    )
    assert proc.returncode == -9
    assert [p.name for p, _ in list_checkpoints(tmp_path)] == ["c0_1.pth"]
    assert os.readlink(tmp_path / "latest.pth") == "c0_1.pth"
    (torn,) = tmp_path.glob(".c1_1.pth.tmp-*")
    assert read_checkpoint_record(torn) is None


def test_resume_refuses_cuda_rng_states_this_process_cannot_restore(
    make_runner: RunnerFactory, toy_loader: Loader, tmp_path: Path
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=1)
    run_with_checkpoints(runner, toy_loader(), [])
    checkpoint = load_checkpoint_file(Path(str(runner.work_dir)) / "latest.pth")
    rng = checkpoint["rng"]
    assert isinstance(rng, list)
    fake_devices = torch.cuda.device_count() + 1
    rng[0]["cuda"] = [torch.get_rng_state()] * fake_devices
    write_checkpoint_file(checkpoint, tmp_path / "gpu.pth", epoch=0, iter=3)
    with pytest.raises(CheckpointError, match=f"RNG states of {fake_devices} CUDA device"):
        make_runner(EpochBasedRunner, max_epochs=1).resume(tmp_path / "gpu.pth")


# -- the training-state digest (what `trackcfg verify` compares) --------------------------


def test_the_trailer_records_the_training_state_digest(tmp_path: Path) -> None:
    state = {"state_dict": {"w": torch.arange(3.0)}, "meta": {"time": "now"}}
    saved = write(tmp_path / "a.pth", state)
    record = read_checkpoint_record(tmp_path / "a.pth")
    assert record is not None
    assert record.state_digest == saved.state_digest == training_state_digest(state)


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({"meta": {"time": "later", "hook_msgs": {"last_ckpt": "/elsewhere/a.pth"}}}, True),
        ({"log_buffer": {"val_history": {"time": [0.2]}}}, True),
        ({"hook_states": {"IterTimerHook#0": {"t": 1.5}}}, True),
        ({"state_dict": {"w": torch.tensor([0.0, 1.0, 2.0000002])}}, False),
        ({"state_dict": {"w": torch.arange(3.0, dtype=torch.float64)}}, False),
        ({"runner": {"iter": 5}}, False),
        ({"rng": [{"python": (3, (1, 2), None)}]}, False),
    ],
)
def test_training_state_digest_ignores_time_paths_and_timings_only(
    change: dict[str, object], same: bool
) -> None:
    base: dict[str, object] = {
        "state_dict": {"w": torch.arange(3.0)},
        "runner": {"iter": 4},
        "rng": [{"python": (3, (1, 1), None)}],
        "meta": {"time": "now", "hook_msgs": {"last_ckpt": "/work/a.pth"}},
        "log_buffer": {"val_history": {"time": [0.1]}},
        "hook_states": {"IterTimerHook#0": {"t": 1.0}},
    }
    changed = {**base, **change}
    assert (training_state_digest(changed) == training_state_digest(base)) is same


def test_a_resumed_run_checkpoints_the_training_state_of_the_uninterrupted_one(
    make_runner: RunnerFactory, toy_loader: Loader, tmp_path: Path
) -> None:
    reference_saved: list[SavedCheckpoint] = []
    reference = make_runner(EpochBasedRunner, max_epochs=2)
    run_with_checkpoints(reference, toy_loader(), reference_saved)
    kept = tmp_path / "kept.pth"
    shutil.copy(Path(str(reference.work_dir)) / "iter_4.pth", kept)

    resumed_saved: list[SavedCheckpoint] = []
    resumed = make_runner(EpochBasedRunner, seed=99, max_epochs=2)
    resumed.resume(kept)
    run_with_checkpoints(resumed, toy_loader(), resumed_saved)
    expected = {s.iter: s.state_digest for s in reference_saved}
    assert [s.iter for s in resumed_saved] == [5, 6]
    assert all(s.state_digest == expected[s.iter] for s in resumed_saved)


# -- world-size changes ------------------------------------------------------------------


def two_rank_checkpoint(runner: BaseRunner, tmp_path: Path) -> Path:
    """iter_1.pth of ``runner``'s run as if a 2-rank job had written it (rank 1: other RNG)."""
    checkpoint = load_checkpoint_file(Path(str(runner.work_dir)) / "iter_1.pth")
    rng = checkpoint["rng"]
    assert isinstance(rng, list) and len(rng) == 1
    other = copy_state(rng[0])
    assert isinstance(other, dict)
    other["torch"] = torch.Generator().manual_seed(1).get_state()
    checkpoint["rng"] = [rng[0], other]
    path = tmp_path / "two_ranks.pth"
    write_checkpoint_file(checkpoint, path, epoch=0, iter=1)
    return path


def test_resume_refuses_a_checkpoint_of_another_world_size_and_restores_nothing(
    make_runner: RunnerFactory, toy_loader: Loader, tmp_path: Path
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=1)
    run_with_checkpoints(runner, toy_loader(), [])
    path = two_rank_checkpoint(runner, tmp_path)
    fresh = make_runner(EpochBasedRunner, seed=5, max_epochs=1)
    weights = copy_state(fresh.model.state_dict())
    with pytest.raises(WorldSizeMismatchError) as caught:
        fresh.resume(path)
    assert caught.value.message == (
        f"{path}: saved by a job of 2 rank(s), this job has 1: the per-rank RNG streams and "
        "each rank's data shard position cannot be carried over"
    )
    assert caught.value.hint is not None and "allow_world_size_change=True" in caught.value.hint
    assert "--force-world-size" in caught.value.hint
    assert fresh.iter == 0 and fresh.state.data_batch == {}
    assert all(torch.equal(v, fresh.model.state_dict()[k]) for k, v in weights.items())  # type: ignore[union-attr]


def test_forced_world_size_change_resumes_reproducibly_and_is_recorded(
    make_runner: RunnerFactory,
    toy_loader: Loader,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=2)
    run_with_checkpoints(runner, toy_loader(), [])
    path = two_rank_checkpoint(runner, tmp_path)
    finals = []
    for seed in (5, 6):  # two forced resumes of one checkpoint: bitwise equal
        resumed = make_runner(EpochBasedRunner, seed=seed, max_epochs=2)
        with caplog.at_level(logging.WARNING, logger="trackcfg.test"):
            resumed.resume(path, allow_world_size_change=True)
        assert "world size changed from 2 to 1" in caplog.text
        assert "no longer bit-identical" in caplog.text
        # 1 batch per rank of 2 ranks = the epoch's first 2 batches at 1 rank.
        assert resumed.state.data_batch == {0: 2}
        # Rank 0 existed: it keeps its own stream.
        assert resumed.state.pending_rng is not None
        assert torch.equal(
            resumed.state.pending_rng["torch"], load_checkpoint_file(path)["rng"][0]["torch"]
        )  # type: ignore[index]
        change = {"checkpoint": str(path), "epoch": 0, "iter": 1, "from": 2, "to": 1}
        assert resumed.meta is not None and resumed.meta["world_size_changes"] == [change]
        work = Path(str(resumed.work_dir))
        for stale in work.glob("*.pth"):
            stale.unlink()
        run_with_checkpoints(resumed, toy_loader(), [])
        finals.append(copy_state(resumed.model.state_dict()))
        # Later checkpoints carry the record; a plain resume of one keeps it.
        latest = load_checkpoint_file(work / "latest.pth")
        assert latest["meta"]["world_size_changes"] == [change]  # type: ignore[index]
        again = make_runner(EpochBasedRunner, max_epochs=2)
        again.resume(work / "latest.pth")
        assert again.meta is not None and again.meta["world_size_changes"] == [change]
    assert_tensors_equal(finals[0], finals[1])


def assert_tensors_equal(a: object, b: object) -> None:
    assert isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
