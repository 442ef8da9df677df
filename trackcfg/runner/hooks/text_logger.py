"""TextLoggerHook: mmcv-style log lines, a JSON-lines log file, and a terminal progress line.

Output follows mmcv 1.x so existing log parsers (``analyze_logs.py``) keep working:

- ``runner.logger.info`` lines such as
  ``Epoch [2][50/200]\\tlr: 1.000e-02, eta: 0:01:40, time: 0.105, data_time: 0.003, loss: 0.4521``
  (``Iter [50/1000]`` when not ``by_epoch``; ``Epoch(val) [2][20]`` for validation);
- ``{work_dir}/{timestamp}.log.json``: the run's ``meta`` as the first line, then one
  JSON object per logged interval (floats rounded to 5 decimals; rank 0 only). Lines
  reach the file within ``flush_interval`` seconds, and before any checkpoint of the
  run exists (see `trackcfg.runner.hooks.json_log`).

New here: when stderr is a terminal (or ``progress=True``), rank 0 keeps a single updating line
shows the position, iterations per second and the ETA between log lines; log
lines clear it first so the two never interleave. Otherwise nothing but the plain
lines is written.

The ETA accumulates time over the whole run; the accumulated time and the
iteration the count started at are the hook's `state_dict`, so a resumed run
keeps a sensible ETA instead of restarting the estimate.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import shutil
import sys
import time
from collections import OrderedDict
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import torch

from trackcfg.errors import ArgumentValueError, RunnerError
from trackcfg.registry import HOOKS
from trackcfg.runner.hooks.json_log import JsonLinesFile
from trackcfg.runner.hooks.logger import LoggerHook

if TYPE_CHECKING:
    from trackcfg.runner.base_runner import BaseRunner

__all__ = ["TextLoggerHook"]

# Keys already rendered in the head of a log line (mmcv's list).
_HEAD_KEYS = frozenset({"mode", "Epoch", "iter", "lr", "time", "data_time", "memory", "epoch"})

#: Minimum seconds between two redraws of the progress line (terminals are slow).
_PROGRESS_PERIOD = 0.1


def _epoch_length(runner: BaseRunner) -> int:
    data_loader = runner.data_loader
    return len(data_loader) if isinstance(data_loader, Sized) else 0


@functools.cache
def _cuda_available() -> bool:
    # Asked at every log line (mmcv); the answer does not change within a process.
    return torch.cuda.is_available()


# json's C encoder factory (None where the _json accelerator is missing).
_C_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_JSON_DEFAULT = json.JSONEncoder().default  # raises TypeError, as json.dumps does


def _to_json(value: dict[str, object]) -> str:
    """``json.dumps(value)``: the same C encoder with the same settings, built per call
    as json does (a fresh ``markers`` dict keeps the circular-reference check), minus the
    three Python functions json wraps it in (dumps, encode, iterencode). Every log line
    goes through here, cold after 50 training iterations.
    """
    if _C_MAKE_ENCODER is None:
        return json.dumps(value)
    # (markers, default, string encoder, indent, key and item separators, sort_keys,
    # skipkeys, allow_nan): json.dumps' defaults, as JSONEncoder.iterencode passes them
    encode = _C_MAKE_ENCODER(
        {}, _JSON_DEFAULT, json.encoder.encode_basestring_ascii, None, ": ", ", ", False,
        False, True,
    )  # fmt: skip
    return "".join(encode(value, 0))


def _round_float(value: object) -> object:
    if isinstance(value, list):
        return [_round_float(v) for v in value]
    if isinstance(value, float):
        return round(value, 5)
    return value


class _ProgressLine:
    """One self-overwriting status line on a terminal stream."""

    def __init__(self) -> None:
        self.shown = False
        self._last_draw = 0.0
        self._last_iter: int | None = None
        self._last_time = 0.0
        self._rate: float | None = None  # iterations per second, smoothed

    def reset_clock(self) -> None:
        self._last_iter = None
        self._rate = None

    def tick(self, done_iters: int) -> None:
        """Update the rate estimate with the global count of finished iterations."""
        now = time.perf_counter()
        if self._last_iter is not None and done_iters > self._last_iter and now > self._last_time:
            rate = (done_iters - self._last_iter) / (now - self._last_time)
            # exponential smoothing: steady to read, still follows real slowdowns
            self._rate = rate if self._rate is None else 0.8 * self._rate + 0.2 * rate
        self._last_iter = done_iters
        self._last_time = now

    @property
    def rate(self) -> float | None:
        return self._rate

    def draw(self, stream: TextIO, text: str, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_draw < _PROGRESS_PERIOD:
            return
        self._last_draw = now
        stream.write("\r\x1b[2K" + text)
        stream.flush()
        self.shown = True

    def clear(self, stream: TextIO) -> None:
        if self.shown:
            stream.write("\r\x1b[2K")
            stream.flush()
            self.shown = False


@HOOKS.register_module()
class TextLoggerHook(LoggerHook):
    """Log to ``runner.logger`` and a JSON-lines file; show progress on a terminal.

    Args:
        by_epoch: As `LoggerHook`; also selects ``Epoch [e][i/n]`` vs ``Iter [i/n]`` lines.
        interval: Log every ``interval`` iterations.
        ignore_last: As `LoggerHook`.
        reset_flag: As `LoggerHook`.
        interval_exp_name: Log ``Exp name: ...`` (from ``runner.meta['exp_name']``) every
            this many iterations.
        out_dir: Copy the log files (``out_suffix``) to ``out_dir/<work dir name>`` after
            the run, as mmcv does.
        out_suffix: File suffixes copied to ``out_dir``.
        keep_local: Keep the local files after copying them to ``out_dir``.
        file_client_args: Must be None (mmcv's storage backends are not supported).
        progress: Show the progress line: None (default) when stderr is a terminal,
            True always (on stderr), False never.
        flush_interval: Seconds a JSON line may wait in memory before it is written
            (with the others waiting); 0 writes each line as it is logged. Lines are
            always written before a checkpoint is taken and when the run ends.

    Raises:
        ValueError: ``file_client_args`` is given, or ``flush_interval`` is negative.
    """

    def __init__(
        self,
        by_epoch: bool = True,
        interval: int = 10,
        ignore_last: bool = True,
        reset_flag: bool = False,
        interval_exp_name: int = 1000,
        out_dir: str | None = None,
        out_suffix: str | Sequence[str] = (".log.json", ".log", ".py"),
        keep_local: bool = True,
        file_client_args: dict[str, object] | None = None,
        progress: bool | None = None,
        flush_interval: float = 0.25,
    ) -> None:
        super().__init__(interval, ignore_last, reset_flag, by_epoch)
        if file_client_args is not None:
            raise ArgumentValueError(
                "storage backends are not supported",
                key_path="file_client_args",
                hint="use out_dir",
            )
        if not flush_interval >= 0:
            raise ArgumentValueError(
                f"must be >= 0 seconds, got {flush_interval!r}", key_path="flush_interval"
            )
        self.flush_interval = flush_interval
        self.interval_exp_name = interval_exp_name
        self.out_dir = out_dir
        self.out_suffix = (out_suffix,) if isinstance(out_suffix, str) else tuple(out_suffix)
        self.keep_local = keep_local
        self.progress = progress
        self.time_sec_tot = 0.0
        self.start_iter: int | None = None  # set in before_run unless restored by a resume
        self.json_log_path: Path | None = None
        self._json_log_file: JsonLinesFile | None = None  # open during a run (`_dump_log`)
        self._progress = _ProgressLine()
        self._show_progress = None  # decided in before_run (see LoggerHook)

    # -- state ---------------------------------------------------------------

    def state_dict(self) -> dict[str, object]:
        """The ETA accumulators: total logged seconds and the iteration they count from.

        Also writes out the JSON lines still waiting: the runner takes every hook's
        state for a checkpoint, so no line logged before a checkpoint can be lost with
        the process once that checkpoint exists.
        """
        self._flush_json_log()
        return {"time_sec_tot": self.time_sec_tot, "start_iter": self.start_iter}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore the ETA accumulators saved by `state_dict`."""
        time_sec_tot = state.get("time_sec_tot", 0.0)
        start_iter = state.get("start_iter")
        self.time_sec_tot = float(time_sec_tot) if isinstance(time_sec_tot, int | float) else 0.0
        self.start_iter = int(start_iter) if isinstance(start_iter, int) else None

    # -- stages --------------------------------------------------------------

    def before_run(self, runner: BaseRunner) -> None:
        if runner.work_dir is None:
            raise RunnerError(
                "TextLoggerHook needs runner.work_dir for its JSON log",
                hint="give the runner a work_dir",
            )
        super().before_run(runner)
        self._close_json_log()
        if self.start_iter is None:
            self.start_iter = int(runner.iter)
        # mmcv's name: the runner's start time, shared with the text log train() writes
        self.json_log_path = Path(runner.work_dir) / f"{runner.timestamp}.log.json"
        self._progress.reset_clock()
        # One progress line per job: rank 0's.
        wanted = sys.stderr.isatty() if self.progress is None else self.progress
        self._show_progress = wanted and runner.rank == 0
        if runner.meta is not None:
            self._dump_log(runner.meta, runner)
            self._flush_json_log()  # the run's identity is in the file before it trains

    def draw_progress(self, runner: BaseRunner) -> None:
        """Redraw the progress line (called by `LoggerHook.after_train_iter` when shown)."""
        self._progress.tick(int(runner.iter) + 1)
        self._progress.draw(sys.stderr, self._progress_text(runner))

    def after_train_epoch(self, runner: BaseRunner) -> None:
        super().after_train_epoch(runner)
        self._clear_progress()
        self._flush_json_log()  # an epoch's lines are in the file when it ends

    def after_val_epoch(self, runner: BaseRunner) -> None:
        super().after_val_epoch(runner)
        self._progress.reset_clock()  # validation time is not training speed
        self._flush_json_log()

    def after_run(self, runner: BaseRunner) -> None:
        self._close_json_log()
        self._clear_progress()
        if self.out_dir is None or runner.work_dir is None:
            return
        target = Path(self.out_dir) / Path(runner.work_dir).resolve().name
        target.mkdir(parents=True, exist_ok=True)
        for local in sorted(Path(runner.work_dir).iterdir()):
            if local.is_file() and local.name.endswith(self.out_suffix):
                shutil.copy2(local, target / local.name)
                runner.logger.info(f"The file {local} has been copied to {target / local.name}.")
                if not self.keep_local:
                    local.unlink()

    # -- logging -------------------------------------------------------------

    def log(self, runner: BaseRunner) -> OrderedDict[str, object]:
        """Write one log line and one JSON line for the buffer's current output.

        Returns:
            What was logged: mode, epoch, iter, lr (first param group), memory (CUDA),
            then the buffer's output.
        """
        output = runner.log_buffer.output
        if "eval_iter_num" in output:
            # an eval hook's own iteration count; independent of runner.iter and by_epoch
            cur_iter: object = output.pop("eval_iter_num")
        else:
            cur_iter = self.get_iter(runner, inner_iter=True)
        log_dict: OrderedDict[str, object] = OrderedDict(
            mode=self.get_mode(runner), epoch=self.get_epoch(runner), iter=cur_iter
        )
        if runner.optimizer is not None:
            cur_lr: list[float] | dict[str, list[float]] = runner.current_lr()
            if isinstance(cur_lr, dict):
                log_dict["lr"] = {name: lrs[0] for name, lrs in cur_lr.items()}
            else:
                log_dict["lr"] = cur_lr[0]
        if "time" in output and _cuda_available():
            log_dict["memory"] = self._get_max_memory(runner)
        log_dict.update(output)
        self._log_info(log_dict, runner)
        self._dump_log(log_dict, runner)
        return log_dict

    def _log_info(self, log_dict: OrderedDict[str, object], runner: BaseRunner) -> None:
        eta_sec = self._update_eta(log_dict, runner) if log_dict["mode"] == "train" else None
        if not runner.logger.isEnabledFor(logging.INFO):
            return  # nobody would see the line: skip building it (the ETA is kept above)
        meta = runner.meta
        if (
            isinstance(meta, dict)
            and "exp_name" in meta
            and (
                self.every_n_iters(runner, self.interval_exp_name)
                or (self.by_epoch and self.end_of_epoch(runner))
            )
        ):
            self._info(runner, f"Exp name: {meta['exp_name']}")

        if log_dict["mode"] == "train":
            log_str = self._train_head(log_dict, runner, eta_sec)
        elif self.by_epoch:
            log_str = f"Epoch({log_dict['mode']}) [{log_dict['epoch']}][{log_dict['iter']}]\t"
        else:
            log_str = f"Iter({log_dict['mode']}) [{log_dict['iter']}]\t"

        items = []
        for name, val in log_dict.items():
            if name in _HEAD_KEYS:
                continue
            items.append(f"{name}: {val:.4f}" if isinstance(val, float) else f"{name}: {val}")
        self._info(runner, log_str + ", ".join(items))

    def _update_eta(self, log_dict: OrderedDict[str, object], runner: BaseRunner) -> float | None:
        """Add this interval to the ETA accumulators; the seconds left, if it can tell."""
        iter_time = log_dict.get("time")
        max_iters = runner.max_iters
        # isinstance with a tuple: ``float | int`` would build a union object per log line
        if not (isinstance(iter_time, (float, int)) and isinstance(max_iters, int)):
            return None
        # mmcv's estimate: the mean logged iteration time over the iterations so far
        self.time_sec_tot += iter_time * self.interval
        start_iter = self.start_iter if self.start_iter is not None else 0
        time_sec_avg = self.time_sec_tot / (int(runner.iter) - start_iter + 1)
        return time_sec_avg * (max_iters - int(runner.iter) - 1)

    def _train_head(
        self, log_dict: OrderedDict[str, object], runner: BaseRunner, eta_sec: float | None
    ) -> str:
        lr = log_dict.get("lr")
        if isinstance(lr, dict):
            lr_str = " ".join(f"lr_{name}: {value:.3e}" for name, value in lr.items())
        elif isinstance(lr, float | int):
            lr_str = f"lr: {lr:.3e}"
        else:
            lr_str = ""
        if self.by_epoch:
            head = f"Epoch [{log_dict['epoch']}][{log_dict['iter']}/{_epoch_length(runner)}]\t"
        else:
            head = f"Iter [{log_dict['iter']}/{runner.max_iters}]\t"
        if lr_str:
            head += f"{lr_str}, "
        iter_time = log_dict.get("time")
        if eta_sec is not None and isinstance(iter_time, float | int):
            head += f"eta: {datetime.timedelta(seconds=int(eta_sec))}, "
            data_time = log_dict.get("data_time", 0.0)
            head += f"time: {iter_time:.3f}, "
            if isinstance(data_time, float | int):
                head += f"data_time: {data_time:.3f}, "
            if "memory" in log_dict:
                head += f"memory: {log_dict['memory']}, "
        return head

    def _dump_log(self, log_dict: object, runner: BaseRunner) -> None:
        if runner.rank != 0 or self.json_log_path is None:
            return
        entries = log_dict.items() if isinstance(log_dict, dict) else ()
        # mmcv's rounding (floats, also inside lists, to 5 decimals). A plain loop, not a
        # comprehension (a function of its own in Python 3.11): every log line runs this,
        # and after 50 training iterations every function it enters is cold.
        json_log: dict[str, object] = {}
        for k, v in entries:
            if type(v) is float:
                v = round(v, 5)
            elif isinstance(v, list):
                v = _round_float(v)
            json_log[k if type(k) is str else str(k)] = v
        try:
            line = _to_json(json_log)
        except TypeError:
            # meta may hold values JSON has no type for (paths, tuples of classes)
            line = json.dumps(json_log, default=str)
        # The file stays open for the run: one append (often no system call at all, see
        # JsonLinesFile) instead of mmcv's open/fstat/lseek/write/close per line.
        opened = self._json_log_file
        if opened is None or opened.path is not self.json_log_path:
            self._close_json_log()
            opened = self._json_log_file = JsonLinesFile(self.json_log_path, self.flush_interval)
        opened.append(line)

    def _flush_json_log(self) -> None:
        if self._json_log_file is not None:
            self._json_log_file.flush()

    def _close_json_log(self) -> None:
        if self._json_log_file is not None:
            self._json_log_file.close()  # writes the lines still waiting
            self._json_log_file = None

    def _get_max_memory(self, runner: BaseRunner) -> int:
        """Peak CUDA memory of this process in MiB (mmcv reduced it over ranks; we do not
        issue a collective from a logger that only some ranks may reach)."""
        device = getattr(runner.model, "output_device", None)
        return int(torch.cuda.max_memory_allocated(device=device) // (1024 * 1024))

    # -- progress line -------------------------------------------------------

    def _info(self, runner: BaseRunner, text: str) -> None:
        self._clear_progress()  # a log line must not be glued to the progress line
        runner.logger.info(text)

    def _progress_stream(self) -> TextIO | None:
        # Decided once per run (before_run): isatty() is a system call, this runs every iteration.
        return sys.stderr if self._show_progress else None

    def _clear_progress(self) -> None:
        stream = self._progress_stream()
        if stream is not None:
            self._progress.clear(stream)

    def _progress_text(self, runner: BaseRunner) -> str:
        rate = self._progress.rate
        if self.by_epoch:
            total = _epoch_length(runner)
            done = int(runner.inner_iter) + 1
            head = f"Epoch {int(runner.epoch) + 1}/{runner.max_epochs}"
        else:
            total = int(runner.max_iters or 0)
            done = int(runner.iter) + 1
            head = "Iter"
        width = 20
        filled = min(width, width * done // total) if total > 0 else 0
        text = f"{head} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        max_iters = runner.max_iters
        if rate and isinstance(max_iters, int):
            remaining = max_iters - int(runner.iter) - 1
            eta = datetime.timedelta(seconds=int(remaining / rate))
            text += f"  {rate:.2f} it/s  eta {eta}"
        return text
