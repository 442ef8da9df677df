"""JsonLinesFile: the append-only ``.log.json`` of a run, written in time-bounded batches.

A line is kept in memory until ``flush_interval`` seconds have passed since the last
write, then everything waiting goes out in one ``write`` on a descriptor kept open
for the run (``O_APPEND``, unbuffered). So logging faster than the interval costs
no system call per line — on a fast training loop the per-line write and what it
evicts from the caches was a measurable share of the runner's overhead (issue 3) —
and logging slower than it writes every line at once.

What a SIGKILL can lose is bounded like the metric journal's
(`trackcfg.tracking.agent.journal`): the lines of the last ``flush_interval`` seconds, and
never one logged before a checkpoint, because the logger writes its lines out
when the runner takes its state (`flush`), before the checkpoint exists. A
resume from that checkpoint runs, and logs, the lost iterations again. A normal
end, an exception, garbage collection and interpreter exit write everything.
``flush_interval=0`` writes every line as it is logged.

Only the process that opened the file writes what waits: a forked child (a data
loader worker, say) inherits the waiting lines and the descriptor, and must not
append the parent's lines a second time when it exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from pathlib import Path

__all__ = ["JsonLinesFile"]

_logger = logging.getLogger(__name__)


def _write_all(fd: int, lines: list[str]) -> None:
    """Append ``lines`` (one record each) to ``fd`` in one write, then forget them.

    Raises:
        OSError: The write failed (a full disk): what did not reach the file stays
            in ``lines``, to be written by the next call.
    """
    if not lines:
        return
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    written = 0
    try:
        while written < len(data):  # a short write (full disk, signal): write the rest
            written += os.write(fd, data[written:])
    finally:
        lines.clear()
        if written < len(data):  # the rest, without its final newline (join adds it)
            lines.append(data[written:-1].decode("utf-8", "surrogateescape"))


def _write_and_close(fd: int, lines: list[str], owner: int) -> None:
    try:
        if os.getpid() == owner:
            with contextlib.suppress(OSError):  # at exit there is no later try
                _write_all(fd, lines)
    finally:
        os.close(fd)


class JsonLinesFile:
    """One open ``.log.json``; `append` a line, it reaches the file within the interval.

    Args:
        path: The file (created if missing, appended to otherwise).
        flush_interval: Seconds a line may wait in memory (0: none).
    """

    def __init__(self, path: Path, flush_interval: float) -> None:
        self.path = path
        self.flush_interval = flush_interval
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        # The finalizer holds the descriptor and the very list `append` fills (never
        # replaced), not self: whatever is waiting is written when the file object is
        # collected, or at interpreter exit, even if nobody called `close`.
        self._lines: list[str] = []
        self._fd = fd
        self._close = weakref.finalize(self, _write_and_close, fd, self._lines, os.getpid())
        self._written_at = time.perf_counter()
        self._failed = False  # warned about a failed write already

    def append(self, line: str) -> None:
        """Add one record (no newline); write the batch if the interval has passed."""
        self._lines.append(line)
        if time.perf_counter() - self._written_at >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        """Write every waiting line now (to the page cache: a SIGKILL no longer loses it).

        A write that fails (a full disk) keeps the lines for the next flush and costs
        one warning: the log is a record beside the metric journal, and training goes
        on without it.
        """
        if self._lines:
            self._written_at = time.perf_counter()
            try:
                _write_all(self._fd, self._lines)
            except OSError as error:
                if not self._failed:
                    self._failed = True
                    _logger.warning(
                        "cannot write the JSON log %s (%s); its lines wait in memory and "
                        "are written when the disk has room again, the run goes on",
                        self.path,
                        error,
                    )

    def close(self) -> None:
        """Write what waits and close the descriptor (once; later calls do nothing)."""
        self._close()
