"""Checkpoint files: atomic, digest-verified writes in the background; safe loads.

A checkpoint is one file: the zip archive ``torch.save`` writes, whose zip
comment (the last bytes of the file, which zip readers and ``torch.load``
ignore) carries a trailer::

    trackcfg-checkpoint 1 xxh3-128=<32 hex> size=<n> epoch=<e> iter=<i> state=<32 hex>

``xxh3-128`` is the digest of the first ``size`` bytes (everything before the
comment-length field); `trackcfg.checkpoint_file` reads it without
torch (for the tracking agent and ``trackcfg sync``). ``state`` is
`training_state_digest`: the file's bytes differ between two runs that trained
identically (``meta['time']``, the work dir in ``meta['hook_msgs']``, measured
timings in the log buffer and hook states), the training state does not; it is
what ``trackcfg verify`` compares. The writer (a background
thread) writes a hidden temp file in the target directory, fsyncs it, renames
it over the final name, fsyncs the directory, and only then moves the
``latest.pth`` symlink and calls the listeners. A rename is atomic, so a
process killed at any moment leaves the final name either absent, or holding
the previous complete checkpoint, or the new complete one; ``latest.pth`` only
ever points at a complete file.
Loading recomputes the digest and checks it against the trailer before
``torch.load(weights_only=True)``: a torn or altered file raises
`CheckpointCorruptError`, and a checkpoint from a shared server cannot run code.

The training thread only *copies* the state (`copy_state`: tensors cloned to
CPU, everything validated as plain data); serialisation, fsync and renames
happen on the writer thread. At most one checkpoint waits behind the one
being written, which bounds memory to two copies of the state.

A listener may ask for a *pin* (`CheckpointWriter.add_listener` with
``pin_dir``): a hard link to the fsynced temp file, made in ``pin_dir`` before
the rename. Whatever later replaces the final name (the next write, or another
run sharing the directory), the pin still holds exactly the bytes this write's
digest names; the tracking agent uploads from it. Where the directory cannot
hold a hard link (another filesystem) the pin is a copy; a pin that cannot be
made at all (a full disk) is reported and the listener gets none.

The writer holds an exclusive ``flock`` on its temp file while writing it, and
removes the temp files of dead writers (``.<name>.tmp-<pid>``: their process is
gone and nobody holds the lock) the first time it writes into a directory.

Test aid: ``TRACKCFG_FAILPOINT=checkpoint-write:N`` makes the process SIGKILL
itself halfway through writing the N-th checkpoint it writes (1-based; the
temp file is left torn). Unset, it is inert.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import fcntl
import io
import logging
import os
import queue
import shutil
import signal
import struct
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, cast

import numpy as np
import torch
import xxhash

from trackcfg.checkpoint_file import (
    TAIL_BYTES,
    TRAILER_MARKER,
    CheckpointRecord,
    content_digest,
    parse_trailer,
    read_checkpoint_record,
    remove_stale_temp_files,
)
from trackcfg.errors import CheckpointCorruptError, CheckpointError

__all__ = [
    "CheckpointRecord",
    "CheckpointWriter",
    "SavedCheckpoint",
    "content_digest",
    "copy_state",
    "find_latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint_file",
    "read_checkpoint_record",
    "remove_stale_temp_files",
    "training_state_digest",
    "verify_checkpoint_file",
]

_logger = logging.getLogger(__name__)

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
        pinned: A hidden hard link (or copy) of these bytes in the listener's
            ``pin_dir``, made before ``path`` was committed; None when the
            listener asked for none or it could not be made.
        state_digest: `training_state_digest` of what it holds.
    """

    path: Path
    digest: str
    epoch: int
    iter: int
    pinned: Path | None = None
    state_digest: str = ""


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


#: Top-level checkpoint entries that are not training state: ``meta`` holds the
#: wall-clock time and the work dir's path, ``log_buffer`` and ``hook_states`` hold
#: measured timings (and only feed what is logged, which is compared on its own).
VOLATILE_ENTRIES = frozenset({"meta", "log_buffer", "hook_states"})


def training_state_digest(state: Mapping[str, object]) -> str:
    """xxh3-128 of a checkpoint's training state: what decides the rest of training.

    Everything but `VOLATILE_ENTRIES`: model and optimizer state, schedulers, AMP
    scaler, runner counters and data position, every RNG. Tensors count by dtype,
    shape and bytes, containers by their items (dict keys in sorted order), other
    values by type and ``repr`` (a float's is its shortest round-trip form), so two
    states digest alike exactly when they are bitwise equal.

    Example:
        >>> a = training_state_digest({"state_dict": {"w": torch.ones(2)}, "meta": {"time": 1}})
        >>> a == training_state_digest({"state_dict": {"w": torch.ones(2)}, "meta": {"time": 2}})
        True
        >>> a == training_state_digest({"state_dict": {"w": torch.zeros(2)}})
        False
    """
    hasher = xxhash.xxh3_128()
    _feed(hasher, {k: v for k, v in state.items() if k not in VOLATILE_ENTRIES})
    return hasher.hexdigest()


def _feed(hasher: xxhash.xxh3_128, obj: object) -> None:
    # Every item is prefixed by its kind and length: no two structures feed alike.
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu()
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        hasher.update(f"T{tensor.dtype}{tuple(tensor.shape)};".encode())
        if tensor.numel():
            flat = tensor.contiguous().reshape(-1)
            hasher.update(flat.view(torch.uint8).numpy().data)
    elif isinstance(obj, Mapping):
        hasher.update(f"D{len(obj)};".encode())
        for key in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            _feed(hasher, key)
            _feed(hasher, obj[key])
    elif isinstance(obj, list | tuple):
        hasher.update(f"{type(obj).__name__[0]}{len(obj)};".encode())
        for item in obj:
            _feed(hasher, item)
    elif isinstance(obj, bytes):
        hasher.update(f"B{len(obj)};".encode())
        hasher.update(obj)
    else:
        text = f"{type(obj).__name__}:{obj!r}"
        hasher.update(f"V{len(text)};{text}".encode())


# -- writing ------------------------------------------------------------------


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
    before_commit: Callable[[Path], None] | None = None,
) -> SavedCheckpoint:
    """Write one checkpoint atomically and return its record.

    Args:
        state: Already-copied state (see `copy_state`).
        path: Final checkpoint path; its directory must exist.
        epoch: Completed epochs, recorded in the trailer.
        iter: Completed iterations, recorded in the trailer.
        kill_halfway: Failpoint: truncate the temp file to half and SIGKILL this process.
        before_commit: Called with the complete, fsynced temp file just before it is
            renamed to ``path`` (where pins are made).

    Raises:
        CheckpointError: torch.save did not produce a zip archive without a comment.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    state_digest = training_state_digest(state)
    with open(tmp, "wb") as raw:
        # Held until the file is closed: `remove_stale_temp_files` leaves it alone.
        fcntl.flock(raw.fileno(), fcntl.LOCK_EX)
        writer = _HashingWriter(raw)
        torch.save(dict(state), cast(IO[bytes], writer))
        if writer.tail != b"\x00\x00":
            raise CheckpointError(f"{path}: torch.save wrote an unexpected archive ending")
        digest = writer.hasher.hexdigest()
        comment = TRAILER_MARKER + (
            f"xxh3-128={digest} size={writer.size} epoch={epoch} iter={iter} "
            f"state={state_digest}".encode()
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
        if before_commit is not None:
            before_commit(tmp)
    os.replace(tmp, path)  # the commit point: the final name now holds a complete file
    _fsync_dir(path.parent)
    return SavedCheckpoint(
        path=path, digest=digest, epoch=epoch, iter=iter, state_digest=state_digest
    )


def _point_symlink(link: Path, target: Path) -> None:
    """Atomically make ``link`` a relative symlink to ``target`` (same directory)."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)
    _fsync_dir(link.parent)


def _pin(tmp: Path, pin_dir: Path) -> Path | None:
    """A hidden hard link (else a copy) of the complete temp file ``tmp`` in ``pin_dir``.

    Returns None (after a warning) when neither can be made, e.g. on a full disk:
    the checkpoint itself is complete, and losing its pin must not fail training.
    """
    pinned = pin_dir / tmp.name
    try:
        pin_dir.mkdir(parents=True, exist_ok=True)
        pinned.unlink(missing_ok=True)
        try:
            os.link(tmp, pinned)
        except OSError:  # another filesystem, or one without hard links
            with open(tmp, "rb") as src, open(pinned, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
                dst.flush()
                os.fsync(dst.fileno())
        _fsync_dir(pin_dir)
    except OSError as error:
        with contextlib.suppress(OSError):
            pinned.unlink(missing_ok=True)
        _logger.warning(
            "trackcfg: cannot pin checkpoint %s in %s for its upload (%s); it is uploaded "
            "from its own path if its bytes still match its digest then",
            tmp.name.removeprefix(".").rpartition(".tmp-")[0],
            pin_dir,
            error,
        )
        return None
    return pinned


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
        self._listeners: list[tuple[Listener, Path | None]] = []
        self._cleaned: set[Path] = set()  # directories whose stale temp files are gone
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._failpoint = _parse_failpoint()

    def add_listener(self, listener: Listener, *, pin_dir: Path | None = None) -> None:
        """Call ``listener(SavedCheckpoint)`` on the writer thread after each complete write.

        Given ``pin_dir``, each checkpoint is first pinned there (see the module
        docstring) and the listener receives the pin as ``SavedCheckpoint.pinned``.
        """
        self._listeners.append((listener, pin_dir))

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
        pin_dirs = {d for _, d in self._listeners if d is not None}
        for directory in (job.path.parent, *pin_dirs):
            if directory not in self._cleaned:
                remove_stale_temp_files(directory)
                self._cleaned.add(directory)
        pins: dict[Path, Path | None] = {}

        def pin(tmp: Path) -> None:
            for directory in pin_dirs:
                pins[directory] = _pin(tmp, directory)

        saved = write_checkpoint_file(
            job.state,
            job.path,
            epoch=job.epoch,
            iter=job.iter,
            kill_halfway=self._failpoint == number,
            before_commit=pin if pin_dirs else None,
        )
        if job.link is not None:
            _point_symlink(job.link, job.path)
        for listener, pin_dir in self._listeners:
            listener(saved if pin_dir is None else replace(saved, pinned=pins.get(pin_dir)))


def _flush_at_exit(writer_ref: weakref.ref[CheckpointWriter]) -> None:
    writer = writer_ref()
    if writer is not None:
        writer._queue.join()  # errors were (or will never be) reported on the training thread


# -- reading ------------------------------------------------------------------


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
    record = parse_trailer(data[-TAIL_BYTES:], len(data))
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


def find_latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete-looking checkpoint in ``directory``, or None (see `list_checkpoints`)."""
    found = list_checkpoints(directory)
    return found[0][0] if found else None
