"""Preemption: signals set a flag, the ranks agree at a boundary, one checkpoint, then stop."""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.unit.runner.toys import RecordingHook, RunnerFactory, StepHook
from trackcfg.errors import ArgumentValueError, PreemptedError, RunTerminatedError
from trackcfg.runner.base_runner import BaseRunner
from trackcfg.runner.checkpoint import SavedCheckpoint, load_checkpoint_file
from trackcfg.runner.epoch_based_runner import EpochBasedRunner
from trackcfg.runner.hooks.checkpoint import CheckpointHook
from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.iter_based_runner import IterBasedRunner
from trackcfg.runner.preemption import (
    PreemptionFlag,
    join_ranks,
    parse_signal,
    preemption_hooks,
    preemption_signals,
)
from trackcfg.runner.sampler import build_dataloader
from trackcfg.runner.stage import Stage

Loader = Callable[..., torch.utils.data.DataLoader[object]]

# -- signals ------------------------------------------------------------------------------


def test_first_signal_sets_the_flag_and_training_goes_on() -> None:
    with preemption_signals() as flag:
        signal.raise_signal(signal.SIGTERM)
        assert flag.signum == signal.SIGTERM
        assert flag.requested_at is not None


def test_a_second_signal_of_the_same_kind_raises_at_once() -> None:
    with pytest.raises(RunTerminatedError) as caught, preemption_signals() as flag:
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)
    assert caught.value.signum == signal.SIGTERM
    assert not isinstance(caught.value, PreemptedError)
    assert flag.signum == signal.SIGTERM


def test_different_preemption_signals_only_set_the_flag_and_the_first_wins() -> None:
    with preemption_signals([signal.SIGTERM, signal.SIGUSR1]) as flag:
        signal.raise_signal(signal.SIGUSR1)
        signal.raise_signal(signal.SIGTERM)
        assert flag.signum == signal.SIGUSR1


def test_handlers_are_restored_after_the_block() -> None:
    before = signal.getsignal(signal.SIGUSR2)
    with preemption_signals([signal.SIGUSR2]):
        assert signal.getsignal(signal.SIGUSR2) is not before
    assert signal.getsignal(signal.SIGUSR2) is before


def test_off_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def body() -> None:
        with preemption_signals() as flag:
            seen.append(signal.getsignal(signal.SIGTERM))
            seen.append(flag.signum)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before, None]


def test_a_forked_child_ignores_the_inherited_handler() -> None:
    with preemption_signals([signal.SIGUSR1]) as flag:
        pid = os.fork()
        if pid == 0:  # the child: twice would raise in the parent; here nothing happens
            signal.raise_signal(signal.SIGUSR1)
            signal.raise_signal(signal.SIGUSR1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert flag.signum is None


@pytest.mark.parametrize(
    ("text", "name"),
    [("USR1", "SIGUSR1"), ("sigusr2", "SIGUSR2"), ("TERM", "SIGTERM"), ("10", "SIGUSR1")],
)
def test_parse_signal_takes_names_and_numbers(text: str, name: str) -> None:
    assert parse_signal(text).name == name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("USR9", "unknown signal 'USR9'"),
        ("KILL", "SIGKILL cannot be a preemption signal"),
        ("sigchld", "SIGCHLD cannot be a preemption signal"),
        ("", "unknown signal ''"),
    ],
)
def test_parse_signal_rejects_what_cannot_be_a_preemption_signal(text: str, message: str) -> None:
    with pytest.raises(ArgumentValueError) as caught:
        parse_signal(text)
    assert str(caught.value).splitlines()[0] == message


# -- the hooks in a real run ------------------------------------------------------------------


class SignalAt(Hook):
    """Requests preemption during iteration ``at`` (1-based), like a signal mid-step."""

    priority = "HIGHEST"

    def __init__(self, flag: PreemptionFlag, at: int) -> None:
        self.flag = flag
        self.at = at

    def before_train_iter(self, runner: BaseRunner) -> None:
        if runner.iter + 1 == self.at:
            self.flag.request(signal.SIGTERM)


def final_state(runner: BaseRunner) -> list[torch.Tensor]:
    optimizer = runner.optimizer
    assert isinstance(optimizer, torch.optim.Optimizer)
    momenta = [optimizer.state[p]["momentum_buffer"] for p in runner.model.parameters()]
    return [*runner.model.state_dict().values(), *momenta]


def run(runner: BaseRunner, loader: torch.utils.data.DataLoader[object], *hooks: Hook) -> None:
    runner.register_hook(StepHook())
    for hook in hooks:
        runner.register_hook(hook)
    runner.run([loader], [("train", 1)])


@pytest.mark.parametrize(
    ("runner_cls", "kwargs", "at"),
    [
        (EpochBasedRunner, {"max_epochs": 3}, 4),  # mid-epoch
        (EpochBasedRunner, {"max_epochs": 3}, 6),  # the epoch's last iteration
        (IterBasedRunner, {"max_iters": 8}, 5),
    ],
)
def test_preempted_run_checkpoints_the_boundary_and_resumes_bit_identically(
    make_runner: RunnerFactory,
    toy_loader: Loader,
    runner_cls: type[BaseRunner],
    kwargs: dict[str, int],
    at: int,
) -> None:
    reference = make_runner(runner_cls, **kwargs)
    run(reference, toy_loader())

    preempted = make_runner(runner_cls, **kwargs)
    flag = PreemptionFlag()
    saved: list[SavedCheckpoint] = []
    preempted.add_checkpoint_listener(saved.append)
    for hook, priority in preemption_hooks(flag):
        preempted.register_hook(hook, priority)
    with pytest.raises(PreemptedError) as caught:
        run(preempted, toy_loader(), SignalAt(flag, at))
    assert (caught.value.signum, caught.value.iter) == (signal.SIGTERM, at)
    assert [s.path.name for s in saved] == [f"iter_{at}.pth"]  # one, durable before the raise
    meta = load_checkpoint_file(saved[0].path)["meta"]
    assert isinstance(meta, dict) and meta["iter"] == at
    assert caught.value.epoch == meta["epoch"]

    resumed = make_runner(runner_cls, seed=99, **kwargs)
    resumed.register_hook(StepHook())
    resumed.resume(saved[0].path)
    random.random(), np.random.rand(), torch.rand(3)
    resumed.run([toy_loader()], [("train", 1)])
    for a, b in zip(final_state(reference), final_state(resumed), strict=True):
        assert torch.equal(a, b)


def test_no_other_hook_runs_after_the_preemption_checkpoint(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=2)
    flag = PreemptionFlag()
    recorder = RecordingHook()
    for hook, priority in preemption_hooks(flag):
        runner.register_hook(hook, priority)
    with pytest.raises(PreemptedError):
        run(runner, toy_loader(), SignalAt(flag, 3), recorder)  # 3: the epoch's last
    stages = [event[0] for event in recorder.events]
    # The epoch-end hooks (evaluation, an epoch checkpoint) are not run: straight to after_run.
    assert stages[-2:] == ["after_train_iter", "after_run"]


def test_a_boundary_the_checkpoint_hook_saves_is_not_written_twice(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    runner = make_runner(EpochBasedRunner, max_epochs=2)
    flag = PreemptionFlag()
    saved: list[SavedCheckpoint] = []
    runner.add_checkpoint_listener(saved.append)
    for hook, priority in preemption_hooks(flag):
        runner.register_hook(hook, priority)
    runner.register_hook(CheckpointHook(interval=2, by_epoch=False))
    with pytest.raises(PreemptedError):
        run(runner, toy_loader(), SignalAt(flag, 4))
    assert [s.path.name for s in saved] == ["iter_2.pth", "iter_4.pth"]


def test_without_a_signal_the_hooks_change_nothing(
    make_runner: RunnerFactory, toy_loader: Loader
) -> None:
    reference = make_runner(EpochBasedRunner, max_epochs=2)
    run(reference, toy_loader())
    watched = make_runner(EpochBasedRunner, max_epochs=2)
    saved: list[SavedCheckpoint] = []
    watched.add_checkpoint_listener(saved.append)
    for hook, priority in preemption_hooks(PreemptionFlag()):
        watched.register_hook(hook, priority)
    run(watched, toy_loader())
    assert saved == []
    for a, b in zip(final_state(reference), final_state(watched), strict=True):
        assert torch.equal(a, b)


# -- two ranks agree --------------------------------------------------------------------------


class SignalOnRank(Hook):
    """Requests preemption on one rank only, during iteration ``at``."""

    priority = "HIGHEST"

    def __init__(self, flag: PreemptionFlag, rank: int, at: int) -> None:
        self.flag, self.rank, self.at = flag, rank, at

    def before_train_iter(self, runner: BaseRunner) -> None:
        if runner.rank == self.rank and runner.iter + 1 == self.at:
            self.flag.request(signal.SIGUSR1)


def _rank(rank: int, init_file: str, work: str) -> None:
    import logging

    from tests.unit.runner.toys import ToyData, ToyNet

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = ToyNet()
        runner = EpochBasedRunner(
            model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            work_dir=work,
            logger=logging.getLogger("trackcfg.test"),
            max_epochs=2,
        )
        flag = PreemptionFlag()
        for hook, priority in preemption_hooks(flag):
            runner.register_hook(hook, priority)
        try:
            run(runner, build_dataloader(ToyData(16), 4, 0, seed=3), SignalOnRank(flag, 1, 3))
        except PreemptedError as error:
            joined = join_ranks(30.0)  # what the session does before exiting
            Path(work, f"rank{rank}").write_text(
                f"{error.signum} {error.iter} {flag.signum} {joined}"
            )
    finally:
        dist.destroy_process_group()


def test_a_signal_on_one_rank_stops_every_rank_at_the_same_boundary(tmp_path: Path) -> None:
    work = tmp_path / "work"
    # Spawned, not forked: a fork would inherit earlier tests' checkpoint-writer threads
    # (and their locks).
    mp.spawn(_rank, args=(str(tmp_path / "init"), str(work)), nprocs=2, join=True)
    usr1 = int(signal.SIGUSR1)
    # Rank 0 agreed without a signal of its own.
    assert (work / "rank0").read_text() == f"{usr1} 3 None True"
    assert (work / "rank1").read_text() == f"{usr1} 3 {usr1} True"
    meta = load_checkpoint_file(work / "iter_3.pth")["meta"]
    assert isinstance(meta, dict) and meta["iter"] == 3


def test_join_ranks_without_a_process_group_returns_at_once() -> None:
    assert join_ranks(0.001) is True


def test_the_stop_hook_acts_at_every_stage_that_can_follow_the_commit() -> None:
    stop = preemption_hooks(PreemptionFlag())[1][0]
    assert set(stop.get_triggered_stages()) == {
        Stage.BEFORE_TRAIN_ITER.value,
        Stage.BEFORE_VAL_ITER.value,
        Stage.BEFORE_VAL_EPOCH.value,
        Stage.AFTER_TRAIN_EPOCH.value,
    }
