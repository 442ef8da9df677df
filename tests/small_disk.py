"""A real full disk for tests: a small tmpfs that a test fills and frees.

`small_disk` mounts a tmpfs of a given size on a directory and always unmounts
it; where mounting is not permitted (not root, no CAP_SYS_ADMIN) the test is
skipped. `SmallDisk.fill` takes every free byte, so writes that need a new
block fail with ``ENOSPC`` as on a full disk, until `SmallDisk.free`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["SmallDisk", "small_disk"]


class SmallDisk:
    """A mounted tmpfs (see `small_disk`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        """Take every free block (a filler file, written until ``ENOSPC``)."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for size in (1 << 16, 1 << 12, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError as error:
                        if error.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)

    def free(self) -> None:
        """Give the blocks `fill` took back."""
        self._filler.unlink(missing_ok=True)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "4m") -> Iterator[SmallDisk]:
    """Mount a tmpfs of ``size`` on ``path`` (created if missing) for the ``with`` block.

    Skips the calling test where mounting is not permitted.
    """
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield SmallDisk(path)
    finally:
        # Lazily: a process that still holds a file there must not keep it mounted.
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
