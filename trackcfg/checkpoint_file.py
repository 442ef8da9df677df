"""A checkpoint file as bytes on disk, read without torch: its trailer, its digest, temp files.

The writer and the loader (`trackcfg.runner.checkpoint`) need torch; the tracking
agent and ``trackcfg sync``, which verify and upload checkpoint files, must not
pay for importing it. This module is what they share.

The trailer is the zip comment at the very end of the file::

    trackcfg-checkpoint 1 xxh3-128=<32 hex> size=<n> epoch=<e> iter=<i> state=<32 hex>

``xxh3-128`` is the digest of the first ``size`` bytes (everything before the
comment-length field). ``state`` is the digest of the training state alone
(`trackcfg.runner.checkpoint.training_state_digest`: no wall-clock time, paths or
timings), equal for two runs that trained identically; checkpoints written before
it existed have none.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import xxhash

__all__ = [
    "EOCD_SIGNATURE",
    "EOCD_SIZE",
    "TAIL_BYTES",
    "TRAILER_MARKER",
    "CheckpointRecord",
    "content_digest",
    "parse_trailer",
    "read_checkpoint_record",
    "remove_stale_temp_files",
]

TRAILER_MARKER = b"trackcfg-checkpoint 1 "
EOCD_SIGNATURE = b"PK\x05\x06"
EOCD_SIZE = 22  # end-of-central-directory record without its comment


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """What a checkpoint's trailer says about it (read without loading the file)."""

    digest: str
    size: int
    epoch: int
    iter: int
    state_digest: str | None = None


def parse_trailer(tail: bytes, file_size: int) -> CheckpointRecord | None:
    """The record in a file's last bytes ``tail`` (of a ``file_size``-byte file), if any."""
    at = tail.rfind(EOCD_SIGNATURE)
    if at < 0 or len(tail) - at < EOCD_SIZE:
        return None
    (length,) = struct.unpack("<H", tail[at + 20 : at + 22])
    comment = tail[at + 22 :]
    if len(comment) != length or not comment.startswith(TRAILER_MARKER):
        return None
    fields = dict(
        item.split("=", 1)
        for item in comment[len(TRAILER_MARKER) :].decode().split(" ")
        if "=" in item
    )
    try:
        record = CheckpointRecord(
            digest=fields["xxh3-128"],
            size=int(fields["size"]),
            epoch=int(fields["epoch"]),
            iter=int(fields["iter"]),
            state_digest=fields.get("state"),
        )
    except (KeyError, ValueError):
        return None
    # The hashed part ends right where the comment-length field starts.
    if record.size != file_size - len(tail) + at + 20:
        return None
    return record


TAIL_BYTES = EOCD_SIZE + 256  # EOCD + our comment, with room to spare


def read_checkpoint_record(path: str | Path) -> CheckpointRecord | None:
    """Read a checkpoint's trailer (not its content): None for a file without one.

    A torn file (its end missing) and a foreign ``.pth`` (no trailer) both give None.
    """
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - TAIL_BYTES))
        tail = f.read()
    return parse_trailer(tail, size)


def content_digest(path: str | Path) -> str:
    """The xxh3-128 digest a checkpoint's trailer should record, computed from its bytes.

    That is the digest of the bytes before the trailer; for a file without a
    trailer, of the whole file. Read in chunks: a checkpoint may be larger than
    the memory one wants to spend on checking it.

    Raises:
        OSError: the file cannot be read.
    """
    path = Path(path)
    record = read_checkpoint_record(path)
    hasher = xxhash.xxh3_128()
    with open(path, "rb") as f:
        left = record.size if record is not None else None
        while left is None or left > 0:
            chunk = f.read(1 << 22 if left is None else min(1 << 22, left))
            if not chunk:
                break
            hasher.update(chunk)
            if left is not None:
                left -= len(chunk)
    return hasher.hexdigest()


def remove_stale_temp_files(directory: str | Path) -> list[Path]:
    """Delete temp files left by writers that were killed mid-write (their process is gone).

    Temp files are named ``.<name>.tmp-<pid>``. One is kept while its pid is alive
    here (a concurrent writer, or an unrelated process that reused the pid), and
    while someone holds its ``flock`` (a writer on another machine sharing the
    directory, whose pid means nothing here).

    Returns:
        The removed paths.
    """
    removed = []
    for tmp in Path(directory).glob(".*.tmp-*"):
        pid_text = tmp.name.rpartition(".tmp-")[2]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
            continue  # alive
        except ProcessLookupError:
            pass
        except PermissionError:  # alive, owned by someone else
            continue
        if _is_locked(tmp):
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _is_locked(path: Path) -> bool:
    """Whether another open file holds an flock on ``path`` (False for a link or a gone file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops our own lock
