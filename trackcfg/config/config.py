"""`Config`: the mmcv/mmengine-named facade over the config engine.

The work is done elsewhere (``readers``, ``substitute``, ``inherit``, ``merge``,
``provenance``, ``canonical``, ``dump``; ``ConfigDict`` in ``configdict``, re-exported
here under its mmengine path); this module wires it up under the names
users know: ``Config.fromfile``, ``fromstring``, ``merge_from_dict``, ``to_dict``,
``dump``, ``pretty_text``, ``filename``, ``text`` — plus what trackcfg adds:
``hash``, ``canonical_bytes()``, ``lineage``, ``lineage_hash``, ``root``,
``provenance(key_path)``, ``provenance_map()`` and ``options``.

Where we follow mmengine although it may surprise (issue 16, "the last mile"):

* ``_base_.x`` is the inherited value itself, so a change through it
  (``_base_.x.y = v``, or ``m = _base_.model; m.update(...)``) changes what the file
  inherits; we add that every such change is recorded in provenance at the statement
  that made it (``editor``), and that the base files' own values never change;
* top-level ``__names`` are dropped in every format (recorded in provenance as
  ``private``); a ``.py`` config's own top-level functions and lambdas are dropped
  (mmengine's usual configs drop them; its "lazy import" ones keep them), with a
  ``ConfigWarning`` at the line of one the file never uses;
* a YAML ``2024-01-01`` is a ``datetime.date`` (hashed, dumped and reloaded typed);
* ``{{ fileDirname }}`` is the absolute directory; the *hash* of a config that uses it
  (or ``__file__``) leaves the project root out of such paths, so that a checkout at
  another path, a snapshot's temp dir, ``resume`` and ``reproduce`` all verify. A dump
  of such a config holds the absolute paths and hashes them as written.

Differences from mmengine, on purpose:

* ``{{ _base_.x }}`` also works inside a longer string (interpolated), and takes dotted
  list indices (``{{ _base_.pipeline.0 }}``) in every format;
* ``{{ $ENV:default }}`` placeholders and the lazy-import config style
  (``with read_base():``) are not supported (values would depend on the machine);
* ``_delete_`` never leaks into the result and must be a bool;
* functions imported by a ``.py`` config are values (mmengine drops them); modules
  are not keys;
* YAML is read safely; every dump (.py/.json/.yaml) reloads to the same hash;
* a missing attribute suggests close matches;
* hostile shapes are refused with a located error (``limits``): values nested more than
  100 key path elements deep, `_base_` chains of more than 64 files, YAML aliases that
  would add more than 100,000 nodes (mmengine hangs or ends in a ``RecursionError``);
* ``fromstring`` imports ``custom_imports`` as mmengine's does (it goes through a temp
  file there) but reads no temp file: ``{{ fileDirname }}`` is the current directory.

Example:
    >>> cfg = Config(dict(model=dict(depth=50)))
    >>> cfg.model.depth
    50
    >>> cfg.merge_from_dict({"model.depth": 101})
    >>> cfg.model.depth, cfg.provenance("model.depth")[-1].kind.value
    (101, 'option')
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from trackcfg.config.canonical import digest, to_canonical_bytes
from trackcfg.config.configdict import ConfigDict, no_such_key
from trackcfg.config.inherit import (
    LineageEntry,
    Resolution,
    hash_lineage,
    resolve_file,
    resolve_text,
)
from trackcfg.config.keypath import KeyParts, KeyPath
from trackcfg.config.limits import MAX_DEPTH, find_overflow, short_key_path
from trackcfg.config.location import OPTION_FILE, Assignment, AssignmentKind, Location
from trackcfg.config.merge import descend, merge
from trackcfg.config.options import ParameterLookup
from trackcfg.config.provenance import Provenance, ProvenanceBuilder
from trackcfg.errors import CanonicalizationError, ConfigKeyError, ConfigOptionError

__all__ = ["Config", "ConfigDict", "LineageEntry", "load_config"]

#: Keys a config may not define: they name `Config` attributes (mmengine's list).
RESERVED_KEYS = ("filename", "text", "pretty_text", "env_variables")


def _import_custom_modules(resolution: Resolution) -> None:
    if "custom_imports" not in resolution.data:
        return
    # Imported here: most configs have no custom_imports.
    from trackcfg.config.imports import import_custom_modules

    last = resolution.provenance.last(("custom_imports", "imports"))
    import_custom_modules(resolution.data["custom_imports"], last.location if last else None)


def _check_option_shape(parts: KeyParts, value: object) -> None:
    """Refuse an option that would nest past ``MAX_DEPTH`` (see ``limits``)."""
    if len(parts) > MAX_DEPTH:
        raise ConfigOptionError(
            f"key path has {len(parts):,} elements; at most {MAX_DEPTH} are supported",
            location=Location(OPTION_FILE, 1),
            key_path=short_key_path(parts),
        )
    overflow = find_overflow(value, len(parts))
    if overflow is not None:
        raise ConfigOptionError(
            overflow.message,
            location=Location(OPTION_FILE, 1),
            key_path=short_key_path((*parts, *overflow.parts)),
        )


class _OptionOrigin:
    """``merge.ChildOrigin`` for ``merge_from_dict``: everything is an OPTION."""

    location_value = Location(OPTION_FILE, 1)

    def location(self, parts: KeyParts) -> Location:
        return self.location_value

    def assignment(
        self, parts: KeyParts, existed: bool, value: object
    ) -> tuple[AssignmentKind, Location | None]:
        return AssignmentKind.OPTION, None


class Config:
    """A resolved config: values (via attribute or item access) plus hash, lineage, provenance.

    Args:
        cfg_dict: The values.
        filename: The file it came from, if any.
        text: The text it came from, if any.
    """

    __slots__ = (
        "_absolute",
        "_cfg_dict",
        "_filename",
        "_lineage",
        "_options",
        "_provenance",
        "_root",
        "_text",
    )
    _absolute: bool
    _cfg_dict: ConfigDict
    _filename: str | None
    _lineage: tuple[LineageEntry, ...]
    _options: dict[str, object]
    _provenance: ProvenanceBuilder
    _root: Path
    _text: str

    def __init__(
        self,
        cfg_dict: Mapping[str, object] | None = None,
        filename: str | os.PathLike[str] | None = None,
        text: str | None = None,
    ) -> None:
        data = {} if cfg_dict is None else cfg_dict
        if not isinstance(data, Mapping):
            raise TypeError(f"cfg_dict must be a dict, got {type(data).__name__}")
        for key in data:
            if key in RESERVED_KEYS:
                raise ConfigKeyError("is reserved: it names a Config attribute", key_path=str(key))
        setattr_ = object.__setattr__
        setattr_(self, "_cfg_dict", ConfigDict._at(data, ()))
        setattr_(self, "_filename", None if filename is None else str(filename))
        if text is None and filename is not None and Path(filename).is_file():
            text = Path(filename).read_text(encoding="utf-8")
        setattr_(self, "_text", text or "")
        setattr_(self, "_lineage", ())
        setattr_(self, "_provenance", ProvenanceBuilder())
        setattr_(self, "_root", Path.cwd())
        setattr_(self, "_options", {})
        setattr_(self, "_absolute", False)

    # ------------------------------------------------------------------ loading

    @classmethod
    def _from_resolution(cls, resolution: Resolution, filename: str | None) -> Config:
        cfg = cls.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(cfg, "_cfg_dict", ConfigDict._at(resolution.data, ()))
        setattr_(cfg, "_filename", filename)
        setattr_(cfg, "_text", "\n".join(f"{path}\n{text}" for path, text in resolution.texts))
        setattr_(cfg, "_lineage", resolution.lineage)
        setattr_(cfg, "_provenance", resolution.provenance)
        setattr_(cfg, "_root", resolution.root)
        setattr_(cfg, "_options", {})
        setattr_(cfg, "_absolute", resolution.absolute)
        return cfg

    @classmethod
    def fromfile(
        cls,
        filename: str | os.PathLike[str],
        *,
        import_custom_modules: bool = True,
        root: str | os.PathLike[str] | None = None,
    ) -> Config:
        """Load a ``.py``, ``.json``, ``.yaml`` or ``.yml`` config and everything it inherits.

        Args:
            filename: The config file.
            import_custom_modules: Import the modules listed in ``custom_imports``.
            root: The project root for relative paths (default: the git work tree
                holding the file, else the current directory).

        Returns:
            The resolved config.

        Raises:
            ConfigError: Any problem in the files, named by ``file:line: key.path:``.
        """
        resolution = resolve_file(filename, None if root is None else Path(root))
        if import_custom_modules:
            _import_custom_modules(resolution)
        return cls._from_resolution(resolution, str(filename))

    @classmethod
    def fromstring(
        cls, cfg_str: str, file_format: str, *, import_custom_modules: bool = True
    ) -> Config:
        """Load config text as if it were a file in the current directory.

        As in mmengine (whose ``fromstring`` goes through ``fromfile``), the modules
        listed in ``custom_imports`` are imported.

        Args:
            cfg_str: The text.
            file_format: ``.py``, ``.json``, ``.yaml`` or ``.yml``.
            import_custom_modules: Import the modules listed in ``custom_imports``.

        Raises:
            ConfigError: As for ``fromfile``; locations name the file ``<string>``.
        """
        resolution = resolve_text(cfg_str, file_format)
        if import_custom_modules:
            _import_custom_modules(resolution)
        return cls._from_resolution(resolution, None)

    # ------------------------------------------------------------------ mapping facade

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") or name in Config.__slots__:
            raise AttributeError(name)
        return getattr(self._cfg_dict, name)

    def __setattr__(self, name: str, value: object) -> None:
        self._cfg_dict[name] = value

    def __delattr__(self, name: str) -> None:
        delattr(self._cfg_dict, name)

    def __getitem__(self, name: str) -> object:
        return self._cfg_dict[name]

    def __setitem__(self, name: str, value: object) -> None:
        self._cfg_dict[name] = value

    def __delitem__(self, name: str) -> None:
        del self._cfg_dict[name]

    def __contains__(self, name: object) -> bool:
        return name in self._cfg_dict

    def __iter__(self) -> Iterator[str]:
        return iter(self._cfg_dict)

    def __len__(self) -> int:
        return len(self._cfg_dict)

    def __repr__(self) -> str:
        return f"Config (path: {self._filename}): {self._cfg_dict.to_dict()!r}"

    def __copy__(self) -> Config:
        new = Config.__new__(Config)
        for name in Config.__slots__:
            object.__setattr__(new, name, getattr(self, name))
        object.__setattr__(new, "_cfg_dict", self._cfg_dict.copy())
        object.__setattr__(new, "_provenance", self._provenance.copy())
        object.__setattr__(new, "_options", dict(self._options))
        return new

    def __deepcopy__(self, memo: dict[int, object]) -> Config:
        new = self.__copy__()
        object.__setattr__(new, "_cfg_dict", copy.deepcopy(self._cfg_dict, memo))
        return new

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in Config.__slots__}

    def __setstate__(self, state: Mapping[str, object]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ mmcv surface

    @property
    def filename(self) -> str | None:
        """The file this config was loaded from."""
        return self._filename

    @property
    def text(self) -> str:
        """Every lineage file's text, each after a line with its path (mmengine's form)."""
        return self._text

    @property
    def pretty_text(self) -> str:
        """The resolved config as Python source that reloads to the same values."""
        from trackcfg.config.dump import to_python_text

        return str(to_python_text(self.to_dict()))

    def to_dict(self) -> dict[str, object]:
        """The values as plain dicts; lists stay lists, tuples stay tuples."""
        return self._cfg_dict.to_dict()  # type: ignore[return-value]

    def dump(self, file: str | os.PathLike[str] | None = None) -> str | None:
        """Write the config, in the format of ``file``'s suffix.

        Args:
            file: Where to write; when None the text is returned, in the format of
                ``filename`` (Python when there is none).

        Returns:
            The text when ``file`` is None, else None.

        Raises:
            ConfigError: The suffix is not ``.py``, ``.json``, ``.yaml`` or ``.yml``.
        """
        from trackcfg.config import dump as dumper

        suffix = Path(file).suffix if file is not None else Path(self._filename or "x.py").suffix
        text = dumper.to_text(self.to_dict(), suffix)
        if file is None:
            return text
        Path(file).write_text(text, encoding="utf-8")
        return None

    def merge_from_dict(self, options: Mapping[str, object], allow_list_keys: bool = True) -> None:
        """Merge dotted-key options (``--cfg-options``) into the config.

        ``{"model.backbone.depth": 50}`` sets one leaf; with ``allow_list_keys`` a
        digit part indexes a list (``"pipeline.0.type"``). New keys are created; a
        dict value merges into a dict (as in mmcv). Every leaf set gets an OPTION
        assignment at ``Location('<option>', 1)`` (printed ``<option>``). A digit part
        also finds an int key of a dict (``keypoint_info.0``; mmengine adds a ``'0'`` key).

        Raises:
            ConfigOptionError: A malformed key or a bad list index.
            ConfigMergeError: A dict merged into a value that is not a dict.
        """
        tree: dict[str, object] = {}
        paths: list[KeyParts] = []
        for full_key, value in options.items():
            try:
                parts = KeyPath.parse(full_key).parts
            except ValueError as exc:
                raise ConfigOptionError(
                    str(exc), location=Location(OPTION_FILE, 1), key_path=full_key
                ) from None
            if not parts:
                raise ConfigOptionError("empty key", location=Location(OPTION_FILE, 1))
            _check_option_shape(parts, value)
            node = tree
            for part in parts[:-1]:
                # Copy on the way down: the caller's option values are never mutated.
                existing = node.get(str(part))
                child: dict[str, object] = dict(existing) if isinstance(existing, Mapping) else {}
                node[str(part)] = child
                node = child
            node[str(parts[-1])] = value
            paths.append(parts)
        result = merge(
            self._cfg_dict,
            tree,
            _OptionOrigin(),
            base_location=self._last_location,
            list_keys=allow_list_keys,
        )
        self._provenance.extend(result.records)
        for parts in paths:
            self._record_list_option(result.data, parts)
        object.__setattr__(self, "_cfg_dict", ConfigDict._at(result.data, ()))
        self._options.update(options)

    def _record_list_option(self, data: Mapping[str, object], parts: KeyParts) -> None:
        # An option inside a list changes the list, which is the leaf: record it whole.
        value: object = data
        for end, part in enumerate(parts):
            if isinstance(value, list | tuple):
                self._provenance.add(
                    parts[:end],
                    Assignment(
                        AssignmentKind.OPTION, Location(OPTION_FILE, 1), copy.deepcopy(value)
                    ),
                )
                return
            if isinstance(value, Mapping) and str(part) in value:
                value = value[str(part)]
            elif isinstance(value, Mapping) and part in value:
                value = value[part]
            else:
                return

    def _last_location(self, parts: KeyParts) -> Location | None:
        last = self._provenance.last(parts)
        return last.location if last is not None else None

    # ------------------------------------------------------------------ trackcfg additions

    def canonical_bytes(self) -> bytes:
        """The canonical bytes of the resolved config (what ``hash`` digests).

        When a file of the config uses ``{{ fileDirname }}`` (or ``__file__``), strings
        that hold the project root's absolute path are encoded without it
        (``canonical.RootedText``): values keep the absolute path, as in mmengine, and a
        checkout of the project at another path hashes the same.

        Raises:
            CanonicalizationError: A value cannot be encoded; the error names its key
                path and where it was set.
        """
        # A config that uses {{ fileDirname }} holds the checkout's absolute path: hash
        # it relative to the project root, so that another checkout verifies.
        root = self._root.as_posix() if self._absolute else None
        try:
            return to_canonical_bytes(self._cfg_dict, root=root)
        except CanonicalizationError as exc:
            location = None
            if exc.key_path:
                location = self._last_location(KeyPath.parse(exc.key_path).parts)
            if location is None or exc.location is not None:
                raise
            raise CanonicalizationError(
                exc.message,
                location=location,
                key_path=exc.key_path,
                hint=exc.hint,
                details=exc.details,
            ) from exc

    @property
    def hash(self) -> str:
        """xxh3-128 hex digest (32 chars) of ``canonical_bytes()``."""
        return digest(self.canonical_bytes())

    @property
    def lineage(self) -> tuple[LineageEntry, ...]:
        """Every file that took part, in resolution order (bases first)."""
        return self._lineage

    @property
    def lineage_hash(self) -> str:
        """Digest over the lineage: each file's path, digest, includer and order.

        ``inherit.hash_lineage`` of ``lineage``.
        """
        return hash_lineage(self._lineage)

    @property
    def root(self) -> Path:
        """The project root that lineage and provenance paths are relative to."""
        return self._root

    @property
    def options(self) -> dict[str, object]:
        """Every ``merge_from_dict`` option, in the order given (later calls win)."""
        return dict(self._options)

    def provenance(self, key_path: str | KeyPath) -> tuple[Assignment, ...]:
        """The ordered assignments of one key path (empty for a dict with no history).

        Raises:
            ConfigKeyError: The key path is neither in the config nor in its history.
        """
        parts = key_path.parts if isinstance(key_path, KeyPath) else KeyPath.parse(key_path).parts
        history = self._provenance.history(parts)
        if history:
            return history
        value: object = self._cfg_dict
        for depth, part in enumerate(parts):
            try:
                value = descend(value, part)
            except KeyError:
                candidates = value if isinstance(value, Mapping) else {}
                raise no_such_key(parts[: depth + 1], candidates, ConfigKeyError) from None
        return ()

    def provenance_map(self) -> Provenance:
        """Every key path's history."""
        return self._provenance.freeze()


def load_config(
    path: str | os.PathLike[str],
    cfg_options: Sequence[str] = (),
    *,
    import_custom_modules: bool,
    parameters: ParameterLookup | None = None,
) -> Config:
    """Load a config file, then apply command-line ``k=v`` options in order.

    The one loading path of `trackcfg run`, `resume` and the audit commands, so a
    config hashes the same whichever command resolved it. Unlike ``merge_from_dict``,
    an option whose key the config does not have is refused unless its dict accepts
    it or it is written ``+key=value`` (`trackcfg.config.options.check_option_keys`).

    Args:
        path: The config file.
        cfg_options: ``--cfg-options`` strings as typed (``'optimizer.lr=0.1'``).
        import_custom_modules: Import the modules in ``custom_imports`` (training
            needs them; reading commands must not execute them).
        parameters: What each dict accepts besides its own keys (see
            ``check_option_keys``); ``trackcfg.session.config_keys`` knows the sections.

    Raises:
        ConfigError: the file or an option is wrong (the message names file, line and key).
    """
    from trackcfg.config.options import check_option_keys, parse_cfg_options

    cfg = Config.fromfile(path, import_custom_modules=import_custom_modules)
    if cfg_options:
        options = parse_cfg_options(list(cfg_options))
        cfg.merge_from_dict(check_option_keys(cfg.to_dict(), options, parameters))
    return cfg
