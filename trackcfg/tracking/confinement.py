"""Paths read back from a store, confined to the directory they are used in.

A snapshot's artifacts come from a tracking store that other people can write,
so every path taken from one is checked before it touches the file system:

* `parse_relative_path` accepts exactly the *normalised relative* posix paths:
  non-empty parts separated by single ``/``, none of them ``.`` or ``..``, no
  ``\\`` (a separator on Windows) and no NUL. Lineage paths may also climb out
  of the project root (``../shared/base.py``: a base beside the project), but
  only with leading ``..`` parts (``allow_climb``), as ``os.path.relpath`` writes
  them; ``x/../../name`` is refused, never normalised into something else.
* `write_confined` writes a file below a directory without following a symbolic
  link at any level: each directory is opened relative to the one above it with
  ``O_NOFOLLOW`` (``openat``), so a link planted by a patch, or swapped in while
  writing, cannot redirect the write; a file with other hard links is refused too.
* `read_tree` reads every regular file below a directory, refusing links and
  special files, so what is verified is exactly what is used afterwards.

POSIX only (``dir_fd``/``O_NOFOLLOW``), like the rest of trackcfg's tracking.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from trackcfg.errors import SnapshotError

__all__ = ["climb", "parse_relative_path", "read_tree", "write_confined"]


def parse_relative_path(text: str, *, allow_climb: bool = False) -> tuple[str, ...]:
    """The parts of a normalised relative posix path.

    Args:
        text: The path as stored.
        allow_climb: Accept leading ``..`` parts (a lineage path outside the project root).

    Returns:
        The parts, ``..`` included.

    Raises:
        SnapshotError: ``text`` is empty, absolute, not normalised (``a//b``, ``a/./b``,
            ``a/``, ``x/../y``), holds ``\\`` or NUL, or climbs without ``allow_climb``.

    Example:
        >>> parse_relative_path("configs/_base_/model.py")
        ('configs', '_base_', 'model.py')
        >>> parse_relative_path("../shared/base.py", allow_climb=True)
        ('..', 'shared', 'base.py')
    """
    parts = tuple(text.split("/"))
    up = climb(parts) if allow_climb else 0
    if up == len(parts) or any(
        part in ("", ".", "..") or "\\" in part or "\0" in part for part in parts[up:]
    ):
        what = "normalised relative path" + (" (leading '..' only)" if allow_climb else "")
        raise SnapshotError(f"{text!r} is not a {what}")
    return parts


def climb(parts: tuple[str, ...]) -> int:
    """How many leading ``..`` parts a path has.

    Example:
        >>> climb(("..", "..", "a", "b.py"))
        2
    """
    count = 0
    while count < len(parts) and parts[count] == "..":
        count += 1
    return count


def write_confined(root: Path, rel: str, data: bytes) -> Path:
    """Write ``data`` to ``root/rel`` without following a symbolic link below ``root``.

    Missing directories are created. ``root`` itself is trusted (the caller made it).

    Args:
        root: An existing directory.
        rel: A normalised relative path (see `parse_relative_path`; no ``..``).
        data: The bytes.

    Returns:
        The path written.

    Raises:
        SnapshotError: ``rel`` is not a normalised relative path, a directory on the
            way or the file itself is a symbolic link (or not a directory/regular
            file), or the file has other hard links.
    """
    parts = parse_relative_path(rel)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for depth, name in enumerate(parts[:-1]):
            with contextlib.suppress(FileExistsError):  # then opened: a link fails there
                os.mkdir(name, dir_fd=fd)
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as error:
                where = "/".join(parts[: depth + 1])
                raise SnapshotError(
                    f"{rel}: refusing to write through {where}, which is a symbolic link "
                    f"or not a directory in {root}"
                ) from error
            os.close(fd)
            fd = child
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
        try:
            out = os.open(parts[-1], flags, 0o666, dir_fd=fd)
        except OSError as error:
            raise SnapshotError(
                f"{rel}: refusing to write it in {root}: it is a symbolic link or not a file"
            ) from error
        with os.fdopen(out, "wb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
                raise SnapshotError(
                    f"{rel}: refusing to write it in {root}: it is not a plain file of its own"
                )
            file.truncate(0)
            file.write(data)
    finally:
        os.close(fd)
    return root.joinpath(*parts)


def read_tree(directory: Path) -> dict[str, bytes]:
    """Every regular file below ``directory``: posix relative path -> bytes.

    Raises:
        SnapshotError: A symbolic link or a special file is below ``directory``.
    """
    files: dict[str, bytes] = {}
    for current, dirs, names in os.walk(directory, followlinks=False):
        base = Path(current)
        for name in [*dirs, *names]:
            path = base / name
            mode = path.lstat().st_mode
            rel = path.relative_to(directory).as_posix()
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise SnapshotError(f"{rel}: not a regular file (a symbolic link?) in {directory}")
            files[rel] = path.read_bytes()
    return files
