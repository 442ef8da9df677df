"""`_base_` inheritance: find base files, detect cycles and clashes, merge, record lineage.

Resolution is depth first: a file's bases are resolved (left to right) before the
file itself is evaluated and merged into them, so provenance and lineage come out in
*resolution order*: every base before the file that includes it, siblings in the
order they are listed.

Rules (mmengine's): ``_base_`` is a file name or a list, relative to the including
file, any depth, any mix of formats. Two sibling bases may not define the same
top-level key (the error names both places). A file that includes itself, directly
or not, is an error showing the whole cycle. ``package::path/config.py`` bases are
read from ``<package>/.mim/configs/`` and their outermost ``dict(type=...)`` get
``_scope_`` (mmengine's behaviour); their files are in the lineage like any other.
A file's ``_deprecation_`` key is dropped with a ``DeprecationWarning`` (mmengine's
behaviour). A chain of more than ``limits.MAX_BASE_DEPTH`` files, each including the
next, is an error (mmengine ends in a ``RecursionError``).

Paths in locations and lineage are relative to the *project root*: the git work tree
holding the loaded config (found by looking for ``.git`` upwards; gitpython is not
imported on this path), else the current directory.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from trackcfg.config.basecache import BaseCache, BaseFile, ResolvedBase, keep_base
from trackcfg.config.canonical import digest, to_canonical_bytes
from trackcfg.config.filecache import DiskStore, ParseCache, cache_dir, cache_mode
from trackcfg.config.keypath import KeyParts
from trackcfg.config.limits import MAX_BASE_DEPTH
from trackcfg.config.location import Assignment, AssignmentKind, Location
from trackcfg.config.merge import descend, merge
from trackcfg.config.provenance import ProvenanceBuilder
from trackcfg.config.readers import (
    SUFFIXES,
    ConfigSource,
    EvaluatedConfig,
    KeyOrigin,
    ParsedConfig,
    evaluate_config,
    parse_config,
)
from trackcfg.errors import (
    ConfigBaseError,
    ConfigError,
    ConfigFileNotFoundError,
    ConfigSyntaxError,
)

__all__ = [
    "BASES",
    "PARSES",
    "LineageEntry",
    "Resolution",
    "clear_caches",
    "find_root",
    "hash_lineage",
    "resolve_file",
    "resolve_text",
]

#: A file's `_deprecation_ = dict(expected=..., reference=...)` (mmengine): warned, dropped.
DEPRECATION_KEY = "_deprecation_"

#: The process's parses and resolved bases. Both are keyed by what decides their
#: content (``filecache``, ``basecache``), so every load may share them.
PARSES = ParseCache()
BASES = BaseCache()
_STORES: dict[Path, DiskStore] = {}


def clear_caches() -> None:
    """Forget every parse and base kept in memory (the disk store stays)."""
    PARSES.clear()
    BASES.clear()


def _store(directory: Path) -> DiskStore:
    store = _STORES.get(directory)
    if store is None:
        store = _STORES.setdefault(directory, DiskStore(directory))
    return store


@dataclass(frozen=True, slots=True)
class LineageEntry:
    """One file that took part in resolving a config.

    Attributes:
        path: Relative to the project root, posix separators.
        digest: xxh3-128 hex digest of the file's bytes.
        included_by: ``path`` of the file whose ``_base_`` names it (None for the
            loaded config itself).
        order: Position in resolution order (bases before the file including them).
    """

    path: str
    digest: str
    included_by: str | None
    order: int


@dataclass(frozen=True, slots=True)
class Resolution:
    """A resolved config tree: data, provenance, lineage and each file's text.

    ``data`` may share containers with other loads (``BASES`` hands a base's values
    to every load that includes it): read it, or copy it before changing anything, as
    ``Config`` does. Provenance values are each load's own.
    """

    data: dict[str, object]
    provenance: ProvenanceBuilder
    lineage: tuple[LineageEntry, ...]
    texts: tuple[tuple[str, str], ...]
    root: Path
    #: Whether some file uses ``{{ fileDirname }}`` / ``__file__``: values may hold the
    #: root's absolute path, which the hash then leaves out (``canonical.RootedText``).
    absolute: bool = False


def hash_lineage(lineage: Iterable[LineageEntry]) -> str:
    """The lineage hash: a digest over each file's path, digest, includer and order.

    What ``Config.lineage_hash`` is, and what a snapshot's ``lineage.json`` must hash
    to. The formula is part of every recorded run: it never changes.

    Example:
        >>> hash_lineage([LineageEntry("configs/a.py", "0" * 32, None, 0)])
        '50c030b10fd36661964b015a98f79f34'
    """
    rows = [[entry.path, entry.digest, entry.included_by, entry.order] for entry in lineage]
    return digest(to_canonical_bytes({"lineage": rows}))


def find_root(path: Path) -> Path:
    """The git work tree holding ``path`` (a ``.git`` dir or file upwards), else cwd."""
    # os.path on strings: pathlib's objects cost more than the stat calls here.
    current = str(path)
    while True:
        if os.path.exists(os.path.join(current, ".git")):
            return Path(current)
        parent = os.path.dirname(current)
        if parent == current:
            return Path.cwd()
        current = parent


@functools.lru_cache(maxsize=4096)
def _relative(path: str, root: str) -> str:
    # Both absolute: `relpath` is then a function of the two strings alone.
    return Path(os.path.relpath(path, root)).as_posix()


def _display(path: Path, root: Path) -> str:
    return _relative(str(path), str(root))


def resolve_file(path: str | os.PathLike[str], root: Path | None = None) -> Resolution:
    """Load a config file and everything it inherits.

    Args:
        path: The config file.
        root: The project root; found from ``path`` when None.

    Raises:
        ConfigFileNotFoundError: The file does not exist (also a FileNotFoundError).
        ConfigError: The file has an unsupported suffix.
        ConfigBaseError, ConfigSyntaxError, ConfigSubstitutionError,
        ConfigMergeError: As described in ``trackcfg.errors``.
    """
    real = Path(os.path.abspath(os.path.expanduser(path)))
    if root is None:
        root = find_root(real.parent)
    root = Path(os.path.abspath(root))
    display = _display(real, root)
    if real.suffix not in SUFFIXES:
        raise ConfigError(
            f"unsupported config format {real.suffix!r}; expected one of {', '.join(SUFFIXES)}",
            location=Location(display, 1),
        )
    if not real.is_file():
        raise ConfigFileNotFoundError("config file not found", location=Location(display, 1))
    resolver = _Resolver(root)
    source, file_digest = resolver.read(real)
    resolved = resolver.resolve(source, file_digest, None, ())
    return resolver.result(resolved)


def resolve_text(text: str, suffix: str, root: Path | None = None) -> Resolution:
    """Resolve config text as if it were a file named ``<string>`` in the current directory.

    Bases are looked up relative to the current directory; like a file there, their
    paths are shown relative to the git work tree holding it (else the directory).
    """
    if suffix not in SUFFIXES:
        raise ConfigError(
            f"unsupported config format {suffix!r}; expected one of {', '.join(SUFFIXES)}"
        )
    resolver = _Resolver(Path(os.path.abspath(root or find_root(Path.cwd()))))
    source = ConfigSource(None, "<string>", suffix, text)
    resolved = resolver.resolve(source, digest(text.encode("utf-8")), None, ())
    return resolver.result(resolved)


@dataclass(frozen=True, slots=True)
class _Resolved:
    data: dict[str, object]
    provenance: ProvenanceBuilder
    key_locations: dict[str, Location]
    #: The longest chain of files from this one down, itself included.
    height: int = 1
    #: Whether it may be kept for other loads (``basecache``).
    keep: bool = False


class _Resolver:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.lineage: list[LineageEntry] = []
        self.texts: list[tuple[str, str]] = []
        self.files: list[BaseFile] = []  # beside `lineage`
        self.absolute = False
        # Read per load, so that a test or a user can switch the caches off at any time.
        mode = cache_mode()
        self.parses = None if mode == "off" else PARSES
        self.bases = None if mode == "off" else BASES
        self.store = _store(cache_dir() / "config") if mode == "disk" else None

    def parse(self, source: ConfigSource, file_digest: str) -> ParsedConfig:
        if self.parses is None:
            return parse_config(source)
        return self.parses.parse(source, file_digest, self.store)

    def read(self, path: Path) -> tuple[ConfigSource, str]:
        raw = path.read_bytes()
        display = _display(path, self.root)
        try:
            # utf-8-sig: a BOM some editors write is not part of the config (the digest
            # still covers the exact bytes).
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            # Config files are UTF-8 (as Python source is by default); name the line.
            line = raw.count(b"\n", 0, exc.start) + 1
            raise ConfigSyntaxError(
                f"not valid UTF-8: byte {raw[exc.start]:#04x} at offset {exc.start}",
                location=Location(display, line),
                hint="save the file as UTF-8",
            ) from exc
        return ConfigSource(path, display, path.suffix, text), digest(raw)

    def result(self, resolved: _Resolved) -> Resolution:
        return Resolution(
            resolved.data,
            resolved.provenance,
            tuple(self.lineage),
            tuple(self.texts),
            self.root,
            self.absolute,
        )

    def resolve(
        self,
        source: ConfigSource,
        file_digest: str,
        included_by: str | None,
        stack: tuple[tuple[Path, str], ...],
        real: Path | None = None,
    ) -> _Resolved:
        """Resolve one file; ``real`` is its real path when the caller has it already."""
        parsed = self.parse(source, file_digest)
        self.absolute = self.absolute or parsed.absolute
        # Kept for other loads only if evaluating it can have no other input or effect.
        keep = parsed.pure and not parsed.unused_functions
        height = 0
        # The stack holds real paths: a cycle through a symlink is still a cycle.
        if real is None:
            real = Path(os.path.realpath(source.path)) if source.path else Path("<string>")
        stack = (*stack, (real, source.display))
        base_data: dict[str, object] = {}
        provenance = ProvenanceBuilder()
        key_locations: dict[str, Location] = {}
        here = source.path.parent if source.path is not None else Path.cwd()
        for entry in parsed.bases:
            location = Location(source.display, entry.line)
            sub = self._resolve_base(here, entry.name, location, source.display, stack)
            # A package base is found through sys.path: not a function of the files.
            keep = keep and sub.keep and "::" not in entry.name
            height = max(height, sub.height)
            clash = [key for key in sub.data if key in base_data]
            if clash:
                key = clash[0]
                raise ConfigBaseError(
                    f"defined in two sibling bases; first defined at {key_locations[key]}",
                    location=sub.key_locations.get(key, location),
                    key_path=key,
                    hint="define each top-level key in one base only, or set it in the "
                    "including file",
                )
            base_data.update(sub.data)
            # `sub` was made for this include alone (resolved, adopted or scoped here).
            provenance.absorb(sub.provenance)
            key_locations.update(sub.key_locations)
        evaluated = evaluate_config(parsed, base_data)
        # A reused base would not warn again.
        keep = keep and DEPRECATION_KEY not in evaluated.data
        evaluated = _pop_deprecation(evaluated, source.display)
        if evaluated.edited_base is not None:
            # `_base_.x.y = v` in this file: merge into the bases as it edited them.
            base_data = dict(evaluated.edited_base)
            provenance.extend(evaluated.base_records)
        origin = _FileOrigin(evaluated, source.display, provenance, base_data)
        merged = merge(base_data, evaluated.data, origin, base_location=origin.base_location)
        provenance.extend(merged.records)
        for name, line, value in evaluated.private:
            location = Location(source.display, line)
            provenance.add((name,), Assignment(AssignmentKind.PRIVATE, location, value))
        for key in evaluated.data:
            key_locations[key] = origin.location((key,))
        self.lineage.append(
            LineageEntry(source.display, file_digest, included_by, len(self.lineage))
        )
        self.texts.append((source.display, source.text))
        self.files.append(BaseFile(str(source.path), str(real), file_digest, parsed.absolute))
        return _Resolved(merged.data, provenance, key_locations, height + 1, keep)

    def _resolve_base(
        self,
        here: Path,
        name: str,
        location: Location,
        including: str,
        stack: tuple[tuple[Path, str], ...],
    ) -> _Resolved:
        scope = None
        if "::" in name:
            path, scope = _package_base(name, location)
        else:
            path = Path(os.path.normpath(here / name))
        display = _display(path, self.root)
        if not path.is_file():
            raise ConfigBaseError(
                f"base file {name!r} not found (looked for {display})",
                location=location,
                key_path="_base_",
            )
        if path.suffix not in SUFFIXES:
            raise ConfigBaseError(
                f"base file {name!r} has unsupported format {path.suffix!r}; "
                f"expected one of {', '.join(SUFFIXES)}",
                location=location,
                key_path="_base_",
            )
        if len(stack) >= MAX_BASE_DEPTH:
            # Resolution recurses once per file; refuse before the stack runs out.
            shown = [stack[0][1], "…", *[s for _, s in stack[-2:]], display]
            raise ConfigBaseError(
                f"_base_ chain is more than {MAX_BASE_DEPTH} files deep: {' -> '.join(shown)}",
                location=location,
                key_path="_base_",
                hint="flatten the chain: a file may list several bases in `_base_ = [...]`",
            )
        real = Path(os.path.realpath(path))
        for index, (seen, _) in enumerate(stack):
            if seen == real:
                cycle = [shown for _, shown in stack[index:]] + [display]
                raise ConfigBaseError(
                    f"cyclic _base_: {' -> '.join(cycle)}",
                    location=location,
                    key_path="_base_",
                )
        kept = self.bases.get(path, self.root) if self.bases is not None else None
        if (
            kept is not None
            and len(stack) + kept.height <= MAX_BASE_DEPTH
            and kept.is_current((seen for seen, _ in stack), real)
        ):
            resolved = self._adopt(kept, including)
        else:
            start = len(self.lineage)
            source, file_digest = self.read(path)
            resolved = self.resolve(source, file_digest, including, stack, real)
            if resolved.keep and self.bases is not None:
                self._keep(path, start, resolved)
        return resolved if scope is None else _with_scope(resolved, scope, location)

    def _keep(self, path: Path, start: int, resolved: _Resolved) -> None:
        """Keep the base just resolved at ``path`` (its files from ``start`` on)."""
        entries = self.lineage[start:]
        top = len(entries) - 1
        kept = keep_base(
            files=tuple(self.files[start:]),
            data=resolved.data,
            records=resolved.provenance.records(),
            key_locations=resolved.key_locations,
            lineage=tuple(
                (e.path, e.digest, None if i == top else e.included_by, e.order - start)
                for i, e in enumerate(entries)
            ),
            texts=tuple(self.texts[start:]),
            height=resolved.height,
        )
        if kept is not None and self.bases is not None:
            self.bases.put(path, self.root, kept)

    def _adopt(self, kept: ResolvedBase, including: str) -> _Resolved:
        """A kept base in this load: lineage in its order, provenance values its own."""
        offset = len(self.lineage)
        top = len(kept.lineage) - 1
        for i, (path, file_digest, included_by, order) in enumerate(kept.lineage):
            by = including if i == top else included_by
            self.lineage.append(LineageEntry(path, file_digest, by, offset + order))
        self.texts.extend(kept.texts)
        self.files.extend(kept.files)
        self.absolute = self.absolute or kept.absolute
        provenance = ProvenanceBuilder.from_histories(kept.fresh_history())
        # The values themselves are shared: a load never changes its bases' values (see
        # `editor`, `merge`), and `Config` copies every container it hands out.
        return _Resolved(kept.data, provenance, dict(kept.key_locations), kept.height, keep=True)


class _FileOrigin:
    """Where a file's own key paths were written (``merge.ChildOrigin``)."""

    def __init__(
        self,
        evaluated: EvaluatedConfig,
        display: str,
        provenance: ProvenanceBuilder,
        base: Mapping[str, object],
    ) -> None:
        self.origins = evaluated.origins
        self.display = display
        self.provenance = provenance
        self.base = base

    def _find(self, parts: KeyParts) -> tuple[int, KeyOrigin] | None:
        origins = self.origins
        for end in range(len(parts), 0, -1):
            found = origins.get(parts[:end])
            if found is not None:
                return end, found
        return None

    def location(self, parts: KeyParts) -> Location:
        found = self._find(parts)
        # A key no parser saw (e.g. from `from x import *`): the top of the file.
        return Location(self.display, found[1].line if found else 1)

    def base_location(self, parts: KeyParts) -> Location | None:
        last = self.provenance.last(parts)
        return last.location if last is not None else None

    def assignment(
        self, parts: KeyParts, existed: bool, value: object
    ) -> tuple[AssignmentKind, Location | None]:
        found = self._find(parts)
        ref = found[1].ref if found is not None else None
        if found is not None and ref is not None:
            base_parts = (*ref, *parts[found[0] :])
            if _has_path(self.base, base_parts):
                last: Assignment | None = self.provenance.last(base_parts)
                return AssignmentKind.SUBSTITUTION, last.location if last else None
        return (AssignmentKind.OVERRIDE if existed else AssignmentKind.SET), None


def _package_base(name: str, location: Location) -> tuple[Path, str]:
    """Where ``package::path/to/config.py`` lives: ``<package dir>/.mim/configs/...``.

    As mmengine (``mim`` installs a package's configs there). mmengine first looks the
    name up in the package's ``.mim/model-index.yml``; that lookup is not supported.
    """
    package, _, relative = name.partition("::")
    if not package.isidentifier() or not relative or "::" in relative:
        raise ConfigBaseError(
            f"malformed package base {name!r}; expected 'package::path/to/config.py'",
            location=location,
            key_path="_base_",
        )
    # find_spec of a top-level name locates the package without importing it.
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigBaseError(
            f"package {package!r} of base {name!r} is not installed",
            location=location,
            key_path="_base_",
        )
    return Path(os.path.normpath(Path(spec.origin).parent / ".mim" / "configs" / relative)), package


def _with_scope(resolved: _Resolved, scope: str, location: Location) -> _Resolved:
    """Add ``_scope_`` to the outermost dicts with a ``type`` of a package base (mmengine).

    mmengine tags every outermost ``dict(type=...)`` (also inside lists) of a config
    inherited from ``package::...`` with ``_scope_=package`` (unless it has a scope), so
    registries build it from that package. The assignments are recorded at the
    ``_base_`` line naming the package base.
    """
    provenance = resolved.provenance.copy()

    def walk(value: object, open_: bool, parts: KeyParts | None) -> object:
        if isinstance(value, Mapping):
            if open_ and "type" in value:
                open_ = False
                if value.get("_scope_") is None:
                    value = {**value, "_scope_": scope}
                    if parts is not None:
                        provenance.add(
                            (*parts, "_scope_"), Assignment(AssignmentKind.SET, location, scope)
                        )
            return {
                k: walk(v, open_, None if parts is None else (*parts, k)) for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            items = [walk(v, open_, None) for v in value]
            new = items if isinstance(value, list) else tuple(items)
            if parts is not None and new != value:
                # A list is a leaf: its history gets the scoped list as a whole.
                provenance.add(parts, Assignment(AssignmentKind.OVERRIDE, location, new))
            return new
        return value

    data = walk(resolved.data, True, ())
    return dataclasses.replace(resolved, data=data, provenance=provenance)  # type: ignore[arg-type]


def _pop_deprecation(evaluated: EvaluatedConfig, display: str) -> EvaluatedConfig:
    """Drop a file's ``_deprecation_`` key with a DeprecationWarning, as mmengine does."""
    info = evaluated.data.get(DEPRECATION_KEY)
    if DEPRECATION_KEY not in evaluated.data:
        return evaluated
    message = f"The config file {display} will be deprecated in the future."
    if isinstance(info, Mapping):
        if "expected" in info:
            message += f" Please use {info['expected']} instead."
        if "reference" in info:
            message += f" More information can be found at {info['reference']}"
    warnings.warn(message, DeprecationWarning, stacklevel=2)
    data = {k: v for k, v in evaluated.data.items() if k != DEPRECATION_KEY}
    return dataclasses.replace(evaluated, data=data)


def _has_path(data: object, parts: KeyParts) -> bool:
    for part in parts:
        try:
            data = descend(data, part)
        except KeyError:
            return False
    return True
