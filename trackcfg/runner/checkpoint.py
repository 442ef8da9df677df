"""Checkpoint files: atomic, digest-verified writes in the background; safe loads.

A checkpoint is one file: the zip archive ``torch.save`` writes, whose zip
comment (the last bytes of the file, which zip readers and ``torch.load``
ignore) carries a trailer::

    trackcfg-checkpoint 1 xxh3-128=<32 hex> size=<n> epoch=<e> iter=<i>

``xxh3-128`` is the digest of the first ``size`` bytes (everything before the
comment-length field). The writer (a background thread) writes a hidden temp
file in the target directory, fsyncs it, renames it over the final name,
fsyncs the directory, and only then moves the ``latest.pth`` symlink and calls
the listeners. A rename is atomic, so a process killed at any moment leaves
the final name either absent, or holding the previous complete checkpoint, or
the new complete one; ``latest.pth`` only ever points at a complete file.
Loading recomputes the digest and checks it against the trailer before
``torch.load(weights_only=True)``: a torn or altered file raises
`CheckpointCorruptError`, and a checkpoint from a shared server cannot run code.

The training thread only *copies* the state (`copy_state`: tensors cloned to
CPU, everything validated as plain data); serialisation, fsync and renames
happen on the writer thread. At most one checkpoint waits behind the one
being written, which bounds memory to two copies of the state.

Test aid: ``TRACKCFG_FAILPOINT=checkpoint-write:N`` makes the process SIGKILL
itself halfway through writing the N-th checkpoint it writes (1-based; the
temp file is left torn). Unset, it is inert.
"""

from __future__ import annotations

import atexit
import collections
import io
import os
import queue
import signal
import struct
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import numpy as np
import torch
import xxhash

from trackcfg.errors import CheckpointCorruptError, CheckpointError

__all__ = [
    "CheckpointRecord",
    "CheckpointWriter",
    "SavedCheckpoint",
    "copy_state",
    "find_latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint_file",
    "read_checkpoint_record",
    "remove_stale_temp_files",
    "verify_checkpoint_file",
]

_FAILPOINT_ENV = "TRACKCFG_FAILPOINT"
_FAILPOINT_NAME = "checkpoint-write"


@dataclass(frozen=True, slots=True)
class SavedCheckpoint:
    """A checkpoint that is durably complete on disk.

    Attributes:
        path: The checkpoint file (not the ``latest.pth`` link).
        digest: xxh3-128 hex digest of the file's bytes.
        epoch: Completed epochs when it was taken (``meta['epoch']``).
        iter: Completed iterations when it was taken (``meta['iter']``).
    """

    path: Path
    digest: str
    epoch: int
    iter: int


# -- copying state on the training thread -------------------------------------

_PLAIN_SCALARS = (bool, int, float, str, bytes, type(None), torch.dtype, torch.device)


def copy_state(obj: object, key_path: str = "") -> object:
    """Deep-copy checkpoint state: tensors cloned to CPU, containers rebuilt, values checked.

    The copy shares no memory with the live training state, so training can go on
    while the writer thread serialises it.

    Args:
        obj: Nested dicts/lists/tuples of tensors and plain values.
        key_path: Where ``obj`` sits in the checkpoint (for error messages).

    Returns:
        The copy (NumPy scalars become Python numbers).

    Raises:
        CheckpointError: a value that ``torch.load(weights_only=True)`` could not
            load back (an arbitrary object, a NumPy array, a function), naming its key path.
    """
    if isinstance(obj, torch.Tensor):
        # detach + copy=True always yields fresh CPU memory, also for CPU tensors.
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, _PLAIN_SCALARS):
        return obj
    if isinstance(obj, np.generic) and not isinstance(obj, np.void):
        return obj.item()
    if isinstance(obj, collections.OrderedDict):
        out: collections.OrderedDict[object, object] = collections.OrderedDict(
            (k, copy_state(v, _join(key_path, k))) for k, v in obj.items()
        )
        metadata = getattr(obj, "_metadata", None)
        if metadata is not None:  # module state_dict version info, kept by torch.save
            out._metadata = copy_state(metadata, _join(key_path, "_metadata"))  # type: ignore[attr-defined]
        return out
    if isinstance(obj, dict):
        return {k: copy_state(v, _join(key_path, k)) for k, v in obj.items()}
    if isinstance(obj, torch.Size):
        return obj
    if isinstance(obj, list):
        return [copy_state(v, f"{key_path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, tuple) and type(obj) is tuple:
        return tuple(copy_state(v, f"{key_path}.{i}") for i, v in enumerate(obj))
    raise CheckpointError(
        f"cannot store a value of type {type(obj).__name__} in a checkpoint",
        key_path=key_path.lstrip(".") or "<root>",
        hint="checkpoint state must be tensors and plain types (dict, list, tuple, "
        "str, int, float, bool, None) so that torch.load(weights_only=True) can read it",
    )


def _join(key_path: str, key: object) -> str:
    return f"{key_path}.{key}" if key_path else str(key)


# -- writing ------------------------------------------------------------------


_TRAILER_MARKER = b"trackcfg-checkpoint 1 "
_EOCD_SIGNATURE = b"PK\x05\x06"
_EOCD_SIZE = 22  # end-of-central-directory record without its comment


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """What a checkpoint's trailer says about it (read without loading the file)."""

    digest: str
    size: int
    epoch: int
    iter: int


class _HashingWriter:
    """File-like wrapper that hashes what torch.save writes, except the last 2 bytes.

    The last two bytes of a zip archive are the comment length; they are rewritten
    when the trailer is appended, so the digest covers everything before them.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.hasher = xxhash.xxh3_128()
        self.size = 0  # bytes hashed
        self.tail = b""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        if len(view) >= 2:
            self.hasher.update(self.tail)
            self.hasher.update(view[:-2])
            self.size += len(self.tail) + len(view) - 2
            self.tail = bytes(view[-2:])
        else:
            joined = self.tail + bytes(view)
            self.hasher.update(joined[:-2])
            self.size += len(joined) - 2
            self.tail = joined[-2:]
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_failpoint() -> int | None:
    spec = os.environ.get(_FAILPOINT_ENV)
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name != _FAILPOINT_NAME or not count.isdigit() or int(count) < 1:
        raise CheckpointError(
            f"malformed {_FAILPOINT_ENV}={spec!r}",
            hint=f"use '{_FAILPOINT_NAME}:N' with N >= 1, or unset it",
        )
    return int(count)


def write_checkpoint_file(
    state: Mapping[str, object],
    path: Path,
    *,
    epoch: int,
    iter: int,
    kill_halfway: bool = False,
) -> SavedCheckpoint:
    """Write one checkpoint atomically and return its record.

    Args:
        state: Already-copied state (see `copy_state`).
        path: Final checkpoint path; its directory must exist.
        epoch: Completed epochs, recorded in the trailer.
        iter: Completed iterations, recorded in the trailer.
        kill_halfway: Failpoint: truncate the temp file to half and SIGKILL this process.

    Raises:
        CheckpointError: torch.save did not produce a zip archive without a comment.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as raw:
        writer = _HashingWriter(raw)
        torch.save(dict(state), cast(IO[bytes], writer))
        if writer.tail != b"\x00\x00":
            raise CheckpointError(f"{path}: torch.save wrote an unexpected archive ending")
        digest = writer.hasher.hexdigest()
        comment = _TRAILER_MARKER + (
            f"xxh3-128={digest} size={writer.size} epoch={epoch} iter={iter}".encode()
        )
        raw.seek(writer.size)
        raw.write(struct.pack("<H", len(comment)) + comment)
        raw.truncate()
        raw.flush()
        if kill_halfway:
            raw.truncate(writer.size // 2)
            raw.flush()
            os.fsync(raw.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        os.fsync(raw.fileno())
    os.replace(tmp, path)  # the commit point: the final name now holds a complete file
    _fsync_dir(path.parent)
    return SavedCheckpoint(path=path, digest=digest, epoch=epoch, iter=iter)


def _point_symlink(link: Path, target: Path) -> None:
    """Atomically make ``link`` a relative symlink to ``target`` (same directory)."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)
    _fsync_dir(link.parent)


@dataclass(frozen=True, slots=True)
class _Job:
    state: Mapping[str, object]
    path: Path
    link: Path | None
    epoch: int
    iter: int


Listener = Callable[[SavedCheckpoint], None]

# Checkpoints written by this process so far, over all writers (the failpoint's N).
_WRITTEN_IN_PROCESS = 0
_WRITTEN_LOCK = threading.Lock()


class CheckpointWriter:
    """Background writer thread for checkpoints, with completion listeners.

    `submit` returns as soon as the job is queued (it blocks only while another
    checkpoint is already waiting, bounding memory); `wait` returns once every
    submitted checkpoint is durable and re-raises the first failure.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[_Job] = queue.Queue(maxsize=1)
        self._listeners: list[Listener] = []
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._failpoint = _parse_failpoint()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(SavedCheckpoint)`` on the writer thread after each complete write."""
        self._listeners.append(listener)

    def submit(
        self,
        state: Mapping[str, object],
        path: Path,
        *,
        link: Path | None,
        epoch: int,
        iter: int,
    ) -> None:
        """Queue a copied state for writing to ``path`` (and re-point ``link`` after).

        Raises:
            CheckpointError: an earlier background write failed.
        """
        self._raise_pending_error()
        if self._thread is None:
            # Daemon, so a hung write cannot keep the interpreter alive; the atexit hook
            # still finishes queued writes on a normal exit (atexit runs before daemon
            # threads are stopped).
            self._thread = threading.Thread(
                target=self._run, name="trackcfg-checkpoint-writer", daemon=True
            )
            self._thread.start()
            atexit.register(_flush_at_exit, weakref.ref(self))
        self._queue.put(_Job(state=state, path=path, link=link, epoch=epoch, iter=iter))

    def wait(self) -> None:
        """Block until every submitted checkpoint is complete.

        Raises:
            CheckpointError: a background write (or listener) failed; chained to the cause.
        """
        self._queue.join()
        self._raise_pending_error()

    def _raise_pending_error(self) -> None:
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise CheckpointError(f"writing a checkpoint failed: {error!r}") from error

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                self._write(job)
            except BaseException as exc:  # kept and re-raised on the training thread
                with self._lock:
                    if self._error is None:
                        self._error = exc
            finally:
                self._queue.task_done()

    def _write(self, job: _Job) -> None:
        global _WRITTEN_IN_PROCESS
        with _WRITTEN_LOCK:
            _WRITTEN_IN_PROCESS += 1
            number = _WRITTEN_IN_PROCESS
        saved = write_checkpoint_file(
            job.state,
            job.path,
            epoch=job.epoch,
            iter=job.iter,
            kill_halfway=self._failpoint == number,
        )
        if job.link is not None:
            _point_symlink(job.link, job.path)
        for listener in self._listeners:
            listener(saved)


def _flush_at_exit(writer_ref: weakref.ref[CheckpointWriter]) -> None:
    writer = writer_ref()
    if writer is not None:
        writer._queue.join()  # errors were (or will never be) reported on the training thread


# -- reading ------------------------------------------------------------------


def _parse_trailer(tail: bytes, file_size: int) -> CheckpointRecord | None:
    """The record in a file's last bytes ``tail`` (of a ``file_size``-byte file), if any."""
    at = tail.rfind(_EOCD_SIGNATURE)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        return None
    (length,) = struct.unpack("<H", tail[at + 20 : at + 22])
    comment = tail[at + 22 :]
    if len(comment) != length or not comment.startswith(_TRAILER_MARKER):
        return None
    fields = dict(
        item.split("=", 1)
        for item in comment[len(_TRAILER_MARKER) :].decode().split(" ")
        if "=" in item
    )
    try:
        record = CheckpointRecord(
            digest=fields["xxh3-128"],
            size=int(fields["size"]),
            epoch=int(fields["epoch"]),
            iter=int(fields["iter"]),
        )
    except (KeyError, ValueError):
        return None
    # The hashed part ends right where the comment-length field starts.
    if record.size != file_size - len(tail) + at + 20:
        return None
    return record


_TAIL_BYTES = _EOCD_SIZE + 256  # EOCD + our comment, with room to spare


def read_checkpoint_record(path: str | Path) -> CheckpointRecord | None:
    """Read a checkpoint's trailer (not its content): None for a file without one.

    A torn file (its end missing) and a foreign ``.pth`` (no trailer) both give None.
    """
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - _TAIL_BYTES))
        tail = f.read()
    return _parse_trailer(tail, size)


def verify_checkpoint_file(path: str | Path) -> None:
    """Check a checkpoint's digest without loading it (what `load_checkpoint_file` checks first).

    Raises:
        CheckpointError: the file does not exist.
        CheckpointCorruptError: no trailer, or a digest mismatch.
    """
    _read_verified(Path(path), require_digest=True)


def _read_verified(path: Path, *, require_digest: bool) -> bytes:
    """The file's bytes, once its trailer digest (if any, or required) matches them."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    data = path.read_bytes()
    record = _parse_trailer(data[-_TAIL_BYTES:], len(data))
    if record is None:
        if require_digest:
            raise CheckpointCorruptError(
                f"{path}: no trackcfg digest trailer: the file is torn (its write was "
                "interrupted) or was not written by trackcfg",
                hint="resume from an earlier checkpoint, e.g. resume_from='auto'",
            )
        return data
    digest = xxhash.xxh3_128(memoryview(data)[: record.size]).hexdigest()
    if digest != record.digest:
        raise CheckpointCorruptError(
            f"{path}: content digest mismatch: the bytes hash to xxh3-128 {digest}, "
            f"the trailer records {record.digest}",
            hint="the file was modified or damaged after it was written",
        )
    return data


def load_checkpoint_file(path: str | Path, *, require_digest: bool = True) -> dict[str, object]:
    """Load a checkpoint after checking its digest, with ``torch.load(weights_only=True)``.

    Args:
        path: The checkpoint (or a ``latest.pth`` link to one).
        require_digest: If False, a file without a trailer (e.g. a pretrained
            mmcv checkpoint for ``load_from``) loads unverified; a present
            trailer is always checked.

    Returns:
        The checkpoint dict, every tensor on CPU.

    Raises:
        CheckpointError: the file does not exist.
        CheckpointCorruptError: no trailer (when required), a digest mismatch, or
            bytes torch cannot load as plain data.
    """
    path = Path(path)
    data = _read_verified(path, require_digest=require_digest)
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointCorruptError(f"{path}: cannot load as plain data: {exc}") from exc
    if not isinstance(loaded, dict):
        raise CheckpointCorruptError(f"{path}: holds a {type(loaded).__name__}, not a dict")
    return cast(dict[str, object], loaded)


def list_checkpoints(directory: str | Path) -> list[tuple[Path, CheckpointRecord]]:
    """Complete-looking checkpoints in ``directory``, newest first (by recorded iteration).

    Only regular ``*.pth`` files with a trailer count; links such as ``latest.pth``
    and hidden temp files are skipped. Ties go to the later-written file. The
    digest is not checked here (`verify_checkpoint_file` does that).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found: list[tuple[tuple[int, int, int], Path, CheckpointRecord]] = []
    for path in directory.glob("*.pth"):
        if path.name.startswith(".") or path.is_symlink() or not path.is_file():
            continue
        record = read_checkpoint_record(path)
        if record is not None:
            found.append(((record.iter, record.epoch, path.stat().st_mtime_ns), path, record))
    found.sort(key=lambda item: item[0], reverse=True)
    return [(path, record) for _, path, record in found]


def remove_stale_temp_files(directory: str | Path) -> list[Path]:
    """Delete temp files left by writers that were killed mid-write (their process is gone).

    Temp files are named ``.<name>.tmp-<pid>``; one whose pid is still alive may
    be in use by a concurrent writer and is kept.

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
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        except PermissionError:  # alive, owned by someone else
            continue
    return removed


def find_latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete-looking checkpoint in ``directory``, or None (see `list_checkpoints`)."""
    found = list_checkpoints(directory)
    return found[0][0] if found else None
