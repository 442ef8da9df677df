"""LogBuffer: the runner's per-iteration scalar history and the averages loggers print.

The API is mmcv 1.x's (``update(vars, count)``, ``average(n)``, ``output``,
``ready``, ``clear()``, ``clear_output()``) and so are the numbers: ``average(n)``
is the count-weighted mean of the last ``n`` values computed with NumPy exactly as
mmcv does. mmengine replaced this class with ``MessageHub``/``HistoryBuffer``; we
keep mmcv's because every mmcv hook (and user hook) talks to ``runner.log_buffer``.

What we add is `state_dict`/`load_state_dict`: the history and the current
output survive a checkpoint, so the averages logged after a resume are bitwise the
ones an uninterrupted run logs. For that, the buffer also remembers whether a
training epoch is in progress (`in_epoch`, kept by `LoggerHook`): a resumed run
re-fires ``before_train_epoch``, and a logger must not then clear the history
the interrupted process was still accumulating.

History is kept in typed arrays (``array('d')`` values, ``array('q')`` counts:
16 bytes per entry instead of a Python float and int each) because an
IterBasedRunner never clears it and every checkpoint copies it on the training
thread: from arrays that copy is a memcpy into float64/int64 tensors (loadable
with ``torch.load(weights_only=True)``) — 100,000 iterations of 5 keys take about
4 ms instead of 90 ms as lists. The arithmetic sees the same float64/int64 values
mmcv's lists give NumPy. New entries wait in short per-key Python lists
(`LogBuffer.pending`) and are folded into the arrays in bulk: appending to an
array per iteration is slow (see `LogBuffer`). A writer may also keep its newest
values itself and hand them over when the buffer is read: a `LogFeed`
(IterTimerHook is one).
"""

from __future__ import annotations

import numbers
import struct
from array import array
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import reduce
from operator import add, mul
from typing import Protocol

import numpy as np
import torch

__all__ = ["PENDING_LIMIT", "LogBuffer", "LogFeed"]

#: What `output` may hold: averages are floats; hooks may also put ints or text there
#: (mmcv's eval hooks write ``runner.log_buffer.output[name] = value`` directly).
OutputValue = float | int | str


def _to_float(key: str, value: object) -> float:
    """One logged value as a float; tensors and NumPy scalars must hold one element."""
    # Exact-type tests first: this runs for every logged value of every iteration, and
    # ``isinstance(x, numbers.Real)`` is an ABC check that costs microseconds.
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if isinstance(value, np.ndarray | np.generic) and np.size(value) == 1:
        return float(np.asarray(value).reshape(()))
    raise TypeError(
        f"log_buffer.update: value of {key!r} must be a number or a one-element tensor, "
        f"got {type(value).__name__}"
    )


def _to_output_value(value: object) -> OutputValue:
    """An `output` entry in plain Python types (NumPy scalars do not load with weights_only)."""
    if isinstance(value, str | int | float) and not isinstance(value, np.generic):
        return value
    if isinstance(value, np.integer):
        return int(value)
    return _to_float("output", value)


def _pairwise_sum(a: Sequence[float], lo: int, n: int) -> float:
    """NumPy's float64 ``pairwise_sum``; ``np.add.reduce(a)`` is ``0.0 + pairwise_sum(a)``.

    The same additions in the same order, so the result is bitwise NumPy's: fewer than
    8 values in sequence (from -0.0); up to 128 with 8 interleaved accumulators
    combined as a tree, then the rest in sequence; longer runs split in two halves
    (rounded down to a multiple of 8).
    """
    # functools.reduce(add, ...) adds strictly left to right in C (unlike sum(), which
    # compensates rounding for floats since Python 3.12).
    if n < 8:
        return reduce(add, a[lo : lo + n], -0.0)
    if n <= 128:
        end = lo + n - n % 8
        # The 8 accumulators, each summing every 8th value (written out: a generator here
        # costs a resumed frame per lane, and this runs for every key of every log line).
        r0 = reduce(add, a[lo + 8 : end : 8], a[lo])
        r1 = reduce(add, a[lo + 9 : end : 8], a[lo + 1])
        r2 = reduce(add, a[lo + 10 : end : 8], a[lo + 2])
        r3 = reduce(add, a[lo + 11 : end : 8], a[lo + 3])
        r4 = reduce(add, a[lo + 12 : end : 8], a[lo + 4])
        r5 = reduce(add, a[lo + 13 : end : 8], a[lo + 5])
        r6 = reduce(add, a[lo + 14 : end : 8], a[lo + 6])
        r7 = reduce(add, a[lo + 15 : end : 8], a[lo + 7])
        return reduce(add, a[end : lo + n], ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)))
    half = n // 2
    half -= half % 8
    return _pairwise_sum(a, lo, half) + _pairwise_sum(a, lo + half, n - half)


def _numpy_sums_pairwise() -> bool:
    """Whether this NumPy sums float64 exactly as `_pairwise_sum` (checked once at import).

    Probes every branch (short runs, one block, split blocks) with values whose sum
    depends on the order; any difference makes `average` use NumPy for everything.
    """
    rng = np.random.default_rng(20260101)  # a local generator: global RNGs untouched
    for length in (*range(1, 20), 64, 127, 128, 129, 200, 255, 256, 257, 300, 1000):
        values = rng.random(length) * 10.0 ** rng.integers(-12, 12, length)
        values[::3] *= -1.0
        if not _same(float(np.add.reduce(values)), 0.0 + _pairwise_sum(values.tolist(), 0, length)):
            return False
    return _same(
        float(np.add.reduce(np.array([-0.0, -0.0]))), 0.0 + _pairwise_sum([-0.0, -0.0], 0, 2)
    )


def _same(x: float, y: float) -> bool:
    """Bitwise float equality (tells -0.0 from 0.0)."""
    return struct.pack("<d", x) == struct.pack("<d", y)


#: Windows up to this long are averaged in Python (see `_weighted_mean`); 0 if this
#: NumPy sums differently, so everything goes through NumPy.
_PYTHON_WINDOW = 512 if _numpy_sums_pairwise() else 0


def _window_mean(values: Sequence[float], counts: Sequence[int], n: int) -> float | None:
    """mmcv's ``np.sum(vals * nums) / np.sum(nums)`` over the last ``n`` entries, in Python.

    ``0 < n <= len(values)``. The very same float64 operations: products are float64
    times an exactly converted int, the count total is an exact integer, and
    `_pairwise_sum` adds in NumPy's order — the result is bitwise NumPy's. With all
    weights 1 (the timer's keys) the values are summed where they are (x * 1 is x
    exactly), without a copy. None when the counts add up to 0 (NumPy's nan/inf and
    warning are left to NumPy).
    """
    lo = len(values) - n
    weights = counts[lo:] if lo else counts
    total = sum(weights)
    if not total:
        return None
    if total == n and weights.count(1) == n:
        return (0.0 + _pairwise_sum(values, lo, n)) / total
    products = list(map(mul, values[lo:] if lo else values, weights))
    return (0.0 + _pairwise_sum(products, 0, n)) / total


def _weighted_mean(values: array[float], counts: array[int], n: int) -> float:
    """mmcv's ``np.sum(vals * nums) / np.sum(nums)`` over the last ``n`` entries (0: all).

    Windows up to `_PYTHON_WINDOW` entries go through `_window_mean` (bitwise the
    same). This matters because the first NumPy call after a stretch of training
    runs cold (tens of microseconds on a busy machine), every log interval. Long
    windows (``average()`` of a whole epoch), zero count totals and NumPy versions
    that sum differently go through NumPy itself.
    """
    window = len(values) if n == 0 else min(n, len(values))
    if 0 < window <= _PYTHON_WINDOW:
        mean = _window_mean(values, counts, window)
        if mean is not None:
            return mean
    # Views of the typed history (no copy), dropped before the next append.
    vals_np = np.frombuffer(values, np.float64)[-n:]
    nums_np = np.frombuffer(counts, np.int64)[-n:]
    return float(np.sum(vals_np * nums_np) / np.sum(nums_np))


#: Appended entries wait in a short Python list per key (`LogBuffer.pending`) and move
#: into the typed arrays in bulk once a key has this many, and before anything reads
#: the history.
PENDING_LIMIT = 1024


class LogFeed(Protocol):
    """A writer that keeps its newest values itself and hands them to the buffer late.

    For per-iteration writers to whom even a ``pending`` append is too much: they keep
    plain lists of values (weight 1) for keys the buffer already has, and the buffer
    calls `drain` before anything reads its history (so readers see every value, in
    order) and `discard` when it forgets its history (`LogBuffer.clear`). A feed
    creates each of its keys with `LogBuffer.update_scalar`, at the moment the value
    is measured, so keys keep the order in which they were first logged.
    """

    def drain(self, buffer: LogBuffer) -> None:
        """Hand every kept value to ``buffer`` (`LogBuffer.extend_unit`), in order."""

    def discard(self) -> None:
        """Drop the kept values: the buffer has just forgotten its history and keys."""


class LogBuffer:
    """Scalar history of the current epoch and the latest averages (mmcv 1.x).

    Appends (several per training iteration: the step's ``log_vars`` and the timer's
    two values) go to a per-key Python list first: ``list.append`` is code the
    interpreter runs all the time, while an ``array.append`` runs the array module's
    argument parser, which the training step has evicted from the caches by the
    time the next append comes — measured at about 0.3 µs per append on the
    benchmark's MLP. The lists are folded into the arrays every `PENDING_LIMIT`
    entries and whenever the history is read (`val_history`, `n_history`,
    `average`, `state_dict`), so readers always see the whole history.

    Example:
        >>> buf = LogBuffer()
        >>> buf.update({"loss": 1.0}, count=2)
        >>> buf.update({"loss": 4.0}, count=1)
        >>> buf.average(2)
        >>> buf.output["loss"], buf.ready
        (2.0, True)
    """

    def __init__(self) -> None:
        self._val_history: OrderedDict[str, array[float]] = OrderedDict()
        self._n_history: OrderedDict[str, array[int]] = OrderedDict()
        #: Per key (the same keys as `val_history`, created by `update`/`update_scalar`):
        #: the values and counts appended since the last fold. A per-iteration writer may
        #: append to an existing key's two lists directly — a float value and its int
        #: count, both — while the lists hold fewer than `PENDING_LIMIT` entries, and use
        #: `update_scalar` otherwise (IterTimerHook does; see there why).
        self.pending: dict[str, tuple[list[float], list[int]]] = {}
        self.output: OrderedDict[str, OutputValue] = OrderedDict()
        self.ready = False
        #: True between a training epoch's start and end (set by `LoggerHook`); an
        #: IterBasedRunner's whole run is one such epoch.
        self.in_epoch = False
        self._feeds: list[LogFeed] = []

    def add_feed(self, feed: LogFeed) -> None:
        """Drain ``feed`` before every read of the history, and tell it of every `clear`."""
        if not any(f is feed for f in self._feeds):
            self._feeds.append(feed)

    def remove_feed(self, feed: LogFeed) -> None:
        """Stop draining ``feed`` (after draining it one last time)."""
        if any(f is feed for f in self._feeds):
            feed.drain(self)
            self._feeds = [f for f in self._feeds if f is not feed]

    @property
    def val_history(self) -> OrderedDict[str, array[float]]:
        """Logged values per key, oldest first (mmcv's attribute; typed arrays here)."""
        self._fold()
        return self._val_history

    @property
    def n_history(self) -> OrderedDict[str, array[int]]:
        """The counts (weights) of `val_history`, entry for entry."""
        self._fold()
        return self._n_history

    def _fold(self) -> None:
        """Take in what the feeds keep, then move every key's pending entries into its arrays."""
        self._drain_feeds()
        self._fold_pending()

    def _drain_feeds(self) -> None:
        for feed in self._feeds:
            feed.drain(self)

    def _fold_pending(self) -> None:
        for key, (values, counts) in self.pending.items():
            if values:
                self._val_history[key].fromlist(values)
                self._n_history[key].fromlist(counts)
                values.clear()
                counts.clear()

    def clear(self) -> None:
        """Forget the history and the output (mmcv: at the start of every epoch)."""
        self._val_history.clear()
        self._n_history.clear()
        self.pending.clear()
        for feed in self._feeds:
            feed.discard()
        self.clear_output()

    def clear_output(self) -> None:
        """Forget the latest averages; the history stays."""
        self.output.clear()
        self.ready = False

    def update(self, vars: Mapping[str, object], count: int = 1) -> None:
        """Append one value per key, weighted by ``count`` (usually the batch size).

        Args:
            vars: Key to a number or a one-element tensor/array.
            count: Weight of these values in later averages.

        Raises:
            TypeError: ``vars`` is not a mapping, or a value is not a scalar.
        """
        # Runs several times per iteration: a plain dict skips the ABC check, and a float
        # (what log_vars and the timer hold) is appended as it is.
        if type(vars) is not dict and not isinstance(vars, Mapping):
            raise TypeError(f"log_buffer.update expects a dict, got {type(vars).__name__}")
        weight = count if type(count) is int else int(count)
        for key, var in vars.items():
            self.update_scalar(key, var, weight)

    def update_scalar(self, key: str, value: object, count: int = 1) -> None:
        """``update({key: value}, count)`` without building a dict (for per-iteration hooks).

        Raises:
            TypeError: ``value`` is not a scalar.
        """
        weight = count if type(count) is int else int(count)
        if type(value) is not float:
            value = _to_float(key, value)
        tail = self.pending.get(key)
        if tail is None:
            tail = self._add_key(key)
        values, counts = tail
        values.append(value)
        counts.append(weight)
        if len(values) >= PENDING_LIMIT:
            self._fold()

    def extend_unit(self, key: str, values: list[float]) -> None:
        """Append float ``values`` to ``key``, each weighted 1 (a `LogFeed` draining).

        Raises:
            KeyError: ``key`` has not been logged since the last `clear`.
        """
        pending_values, counts = self.pending[key]
        pending_values.extend(values)
        counts.extend([1] * len(values))
        if len(pending_values) >= PENDING_LIMIT:
            self._fold_pending()  # not `_fold`: a feed may be draining into us right now

    def _add_key(self, key: str) -> tuple[list[float], list[int]]:
        self._val_history[key] = array("d")
        self._n_history[key] = array("q")
        tail: tuple[list[float], list[int]] = ([], [])
        self.pending[key] = tail
        return tail

    def average(self, n: int = 0) -> None:
        """Set `output` to the count-weighted mean of the latest ``n`` values (0: all).

        Raises:
            ValueError: ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"log_buffer.average: n must be >= 0, got {n}")
        self._drain_feeds()
        tails = self.pending
        for key, history in self._val_history.items():
            # A logged window (the last `interval` entries) is usually still in the
            # pending lists: averaged there, without folding and slicing the arrays.
            values, counts = tails[key]
            mean = None
            if 0 < n <= len(values) and n <= _PYTHON_WINDOW:
                mean = _window_mean(values, counts, n)
            if mean is None:
                self._fold()
                mean = _weighted_mean(history, self._n_history[key], n)
            self.output[key] = mean
        self.ready = True

    # -- state ---------------------------------------------------------------

    def state_dict(self) -> dict[str, object]:
        """History (as float64/int64 tensors), output and flags; plain types only."""
        return {
            "val_history": {
                k: torch.from_numpy(np.array(v, dtype=np.float64))
                for k, v in self.val_history.items()
            },
            "n_history": {
                k: torch.from_numpy(np.array(v, dtype=np.int64)) for k, v in self.n_history.items()
            },
            "output": {k: _to_output_value(v) for k, v in self.output.items()},
            "ready": self.ready,
            "in_epoch": self.in_epoch,
        }

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore what `state_dict` returned (replaces the current contents).

        Raises:
            TypeError: ``state`` does not have the shape `state_dict` produces.
        """
        val_history = state["val_history"]
        n_history = state["n_history"]
        output = state["output"]
        ready = state["ready"]
        if not (
            isinstance(val_history, Mapping)
            and isinstance(n_history, Mapping)
            and isinstance(output, Mapping)
            and isinstance(ready, bool)
            and list(val_history) == list(n_history)
        ):
            raise TypeError("LogBuffer.load_state_dict: not a LogBuffer state")
        self.clear()
        for key, values in val_history.items():
            restored = array("d")
            restored.frombytes(torch.as_tensor(values, dtype=torch.float64).numpy().tobytes())
            self._val_history[str(key)] = restored
            self.pending[str(key)] = ([], [])
        for key, counts in n_history.items():
            restored_n = array("q")
            restored_n.frombytes(torch.as_tensor(counts, dtype=torch.int64).numpy().tobytes())
            self._n_history[str(key)] = restored_n
        for key, value in output.items():
            self.output[str(key)] = _to_output_value(value)
        self.ready = ready
        self.in_epoch = state.get("in_epoch") is True
