"""A fake runner for testing hooks on their own: plain attributes, no training loop.

(A plain module imported by path, so it cannot shadow another directory's conftest.)

It carries exactly the attributes the built-in hooks read (the BaseRunner contract),
and a synchronous `save_checkpoint` that writes a small file and then calls the
checkpoint listeners — or, with ``defer_listeners=True``, queues them until
`complete_checkpoints` runs, like the real background writer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from trackcfg.runner.hooks.hook import Hook
from trackcfg.runner.log_buffer import LogBuffer


@dataclass
class SavedCkpt:
    """Stand-in for trackcfg.runner.checkpoint.SavedCheckpoint (same fields)."""

    path: Path
    digest: str
    epoch: int
    iter: int


@dataclass
class FakeRunner:
    """The runner attributes hooks use, set by the test."""

    work_dir: str
    model: nn.Module = field(default_factory=lambda: nn.Linear(2, 1))
    optimizer: object = None
    epoch: int = 0
    iter: int = 0
    inner_iter: int = 0
    max_epochs: int | None = None
    max_iters: int | None = None
    mode: str = "train"
    data_loader: object = field(default_factory=lambda: list(range(10)))
    meta: dict[str, object] | None = None
    rank: int = 0
    world_size: int = 1
    timestamp: str = "20260101_000000"
    default_filename_tmpl: str = "epoch_{}.pth"
    defer_listeners: bool = False
    outputs: dict[str, object] = field(default_factory=dict)
    log_buffer: LogBuffer = field(default_factory=LogBuffer)
    hooks: list[Hook] = field(default_factory=list)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("trackcfg.test"))
    saved: list[Path] = field(default_factory=list)
    _listeners: list[Callable[[SavedCkpt], None]] = field(default_factory=list)
    _queued: list[SavedCkpt] = field(default_factory=list)

    def current_lr(self) -> list[float] | dict[str, list[float]]:
        if isinstance(self.optimizer, dict):
            return {k: [g["lr"] for g in o.param_groups] for k, o in self.optimizer.items()}
        assert isinstance(self.optimizer, torch.optim.Optimizer)
        return [g["lr"] for g in self.optimizer.param_groups]

    def add_checkpoint_listener(self, fn: Callable[[SavedCkpt], None]) -> None:
        self._listeners.append(fn)

    def save_checkpoint(
        self,
        out_dir: str | Path,
        filename_tmpl: str | None = None,
        save_optimizer: bool = True,
        meta: dict[str, object] | None = None,
        create_symlink: bool = True,
    ) -> None:
        tmpl = filename_tmpl or self.default_filename_tmpl
        number = self.epoch + 1 if "epoch" in self.default_filename_tmpl else self.iter + 1
        path = Path(out_dir) / tmpl.format(number)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"ckpt")
        self.saved.append(path)
        self._queued.append(SavedCkpt(path, "0" * 32, self.epoch, self.iter))
        if not self.defer_listeners:
            self.complete_checkpoints()

    def complete_checkpoints(self) -> None:
        queued, self._queued = self._queued, []
        for saved in queued:
            for fn in self._listeners:
                fn(saved)

    def call(self, stage: str) -> None:
        """Call ``stage`` on every hook in order (what BaseRunner.call_hook does)."""
        for hook in self.hooks:
            getattr(hook, stage)(self)


FakeRunnerFactory = Callable[..., FakeRunner]


def fake_runner_factory(tmp_path: Path) -> FakeRunnerFactory:
    """``make(**attributes) -> FakeRunner`` with ``work_dir`` under ``tmp_path``."""

    def make(**kwargs: object) -> FakeRunner:
        kwargs.setdefault("work_dir", str(tmp_path / "work"))
        Path(str(kwargs["work_dir"])).mkdir(parents=True, exist_ok=True)
        return FakeRunner(**kwargs)  # type: ignore[arg-type]

    return make
