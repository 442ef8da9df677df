"""Registries: map names to classes/functions and build objects from ``dict(type=...)``.

Names and behaviour follow mmcv 1.x / mmengine (``Registry``, ``register_module``,
``build``, ``build_from_cfg``, ``build_model_from_cfg``), with these rules:

* **Scope.** Every registry has a scope. ``Registry(name, scope=None)`` takes the
  top-level package of the module that *constructs* it (mmcv's rule: a registry made in
  ``mmdet/models/builder.py`` has scope ``mmdet``). That is read once, at construction,
  from the constructing module's ``__name__``; nothing later depends on "the current
  scope", and there is no global default scope: the registry you call is the one used.
  Pass ``scope=`` to choose it explicitly (recommended in libraries and tests).
* **Lookup.** ``get("Name")`` looks in the registry, then its parent, grandparent...
  (mmengine; mmcv 1.x did not fall back). ``get("scope.Name")`` looks only in the
  registry with that scope: this one, one of its descendants, or any registry in the
  same tree (found from the common root), so siblings reach each other. mmengine looks
  only at the root's direct children there; we search the whole tree, so cousins
  (``cls`` -> ``det3d.PointNet``) resolve too instead of giving None.
* **Build.** ``build(cfg)`` copies ``cfg`` (the caller's dict, ``ConfigDict`` or
  ``Config`` is never changed), fills in ``default_args``, pops ``type`` (a registered
  name, ``scope.Name``, a class/function, or a ``QualifiedName`` from a snapshot) and
  calls it with the rest as keyword arguments. An unknown type is an
  ``UnknownTypeError`` naming the registry, the config location and key path when the
  caller passes them, and close matches. An exception raised by the constructor
  keeps its type and traceback and gains a note naming the key path and type; an
  ``ArgumentError`` (an argument the constructor rejects) also gets the key path
  put in front of its own (``lr_config.warmup_iters``) and the location.
* **Default registries.** ``MODELS``, ``DATASETS``, ``HOOKS``, ``OPTIMIZERS``,
  ``LR_SCHEDULERS``, ``RUNNERS`` (scope ``trackcfg``). ``OPTIMIZERS`` holds every
  ``torch.optim`` optimizer and ``LR_SCHEDULERS`` every ``torch.optim.lr_scheduler``
  scheduler; ``HOOKS`` and ``RUNNERS`` hold trackcfg's built-in hooks and runners.
  Those are registered on the registry's first use by importing their package
  (``trackcfg.runner.hooks``, ``trackcfg.runner``), whose ``__init__`` imports
  every module defining one, so importing this module never imports torch.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

from trackcfg.config.keypath import KeyPath, suggest
from trackcfg.config.location import Location
from trackcfg.errors import (
    ArgumentError,
    DuplicateRegistrationError,
    RegistryError,
    UnknownTypeError,
)

__all__ = [
    "DATASETS",
    "HOOKS",
    "LR_SCHEDULERS",
    "MODELS",
    "OPTIMIZERS",
    "RUNNERS",
    "BuildFunc",
    "Registry",
    "build_from_cfg",
    "build_model_from_cfg",
]

T = TypeVar("T")

#: A build function: called as ``build_func(cfg, registry=..., default_args=...)``.
BuildFunc = Callable[..., Any]

_NOT_STARTED, _RUNNING, _DONE = 0, 1, 2


class Registry:
    """A named table of classes/functions that can build objects from configs.

    Args:
        name: Registry name, used in messages (``"models"``).
        build_func: Builds an object from a cfg: called as
            ``build_func(cfg, registry=self, default_args=...)`` (plus ``key_path`` and
            ``location`` when ``build`` receives them). Defaults to the parent's
            build function, else ``build_from_cfg``.
        parent: Registry to fall back to for names this one lacks.
        scope: This registry's scope; defaults to the top-level package of the module
            that constructs the registry.
        populate: Called with the registry once, before its first lookup or
            registration; used to register third-party classes lazily.

    Raises:
        RegistryError: ``parent`` already has a child with this scope.

    Example:
        >>> MODELS = Registry("models", scope="demo")
        >>> @MODELS.register_module()
        ... class Net:
        ...     def __init__(self, depth: int) -> None:
        ...         self.depth = depth
        >>> MODELS.build(dict(type="Net", depth=18)).depth
        18
        >>> BACKBONES = Registry("backbones", parent=MODELS, scope="demo_det")
        >>> BACKBONES.get("Net") is Net  # falls back to the parent
        True
        >>> BACKBONES.get("demo.Net") is Net  # an explicit scope
        True
    """

    def __init__(
        self,
        name: str,
        build_func: BuildFunc | None = None,
        parent: Registry | None = None,
        scope: str | None = None,
        *,
        populate: Callable[[Registry], None] | None = None,
    ) -> None:
        self._name = name
        self._module_dict: dict[str, Callable[..., Any]] = {}
        self._children: dict[str, Registry] = {}
        self._scope = scope if scope is not None else self.infer_scope(_caller_module_name())
        self._parent = parent
        self._populate = populate
        self._populate_state = _NOT_STARTED if populate is not None else _DONE
        self._populate_lock = threading.RLock()
        if build_func is None:
            self.build_func: BuildFunc = parent.build_func if parent is not None else build_from_cfg
        else:
            self.build_func = build_func
        if parent is not None:
            if self._scope in parent._children:
                raise RegistryError(
                    f"registry {parent.name!r} already has a child with scope {self._scope!r} "
                    f"({parent._children[self._scope].name!r})",
                    hint="give each child registry of one parent its own scope=",
                )
            parent._children[self._scope] = self

    # -- properties -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The registry's name."""
        return self._name

    @property
    def scope(self) -> str:
        """The registry's scope (a top-level package name, or the one given)."""
        return self._scope

    @property
    def parent(self) -> Registry | None:
        """The registry this one falls back to, if any."""
        return self._parent

    @property
    def children(self) -> Mapping[str, Registry]:
        """Child registries by scope (read-only)."""
        return MappingProxyType(self._children)

    @property
    def module_dict(self) -> Mapping[str, Callable[..., Any]]:
        """Registered names and objects of this registry only (read-only)."""
        self._ensure_populated()
        return MappingProxyType(self._module_dict)

    @staticmethod
    def infer_scope(module_name: str) -> str:
        """The scope for a registry constructed in ``module_name``: its top-level package.

        Example:
            >>> Registry.infer_scope("mmdet.models.builder")
            'mmdet'
        """
        return module_name.split(".", 1)[0]

    @staticmethod
    def split_scope_key(key: str) -> tuple[str | None, str]:
        """Split ``"scope.Name"`` into ``("scope", "Name")``; ``"Name"`` gives ``(None, "Name")``.

        Only the first dot splits: ``"a.b.Name"`` gives ``("a", "b.Name")``.
        """
        scope, dot, rest = key.partition(".")
        return (scope, rest) if dot else (None, key)

    # -- lookup -----------------------------------------------------------------------

    def _ensure_populated(self) -> None:
        if self._populate_state == _DONE:
            return
        with self._populate_lock:
            # RUNNING here means this thread is inside populate (the lock is re-entrant):
            # registrations made by the populating code must not start it again.
            if self._populate_state != _NOT_STARTED or self._populate is None:
                return
            self._populate_state = _RUNNING
            try:
                self._populate(self)
            except BaseException:
                self._populate_state = _NOT_STARTED
                raise
            self._populate_state = _DONE

    def _root(self) -> Registry:
        root = self
        while root._parent is not None:
            root = root._parent
        return root

    def _find_scope(self, scope: str) -> Registry | None:
        """This registry or a descendant with ``scope`` (depth first)."""
        if self._scope == scope:
            return self
        for child in self._children.values():
            found = child._find_scope(scope)
            if found is not None:
                return found
        return None

    def _registry_for_scope(self, scope: str) -> Registry | None:
        return self._find_scope(scope) or self._root()._find_scope(scope)

    def get(self, key: str) -> Callable[..., Any] | None:
        """The class or function registered as ``key``, or None.

        Args:
            key: ``"Name"`` (this registry, then its ancestors) or ``"scope.Name"``
                (only the registry with that scope in this registry's tree).

        Raises:
            TypeError: ``key`` is not a str.
        """
        if not isinstance(key, str):
            raise TypeError(f"registry key must be a str, got {type(key).__name__}")
        scope, name = self.split_scope_key(key)
        if scope is None:
            registry: Registry | None = self
            while registry is not None:
                registry._ensure_populated()
                found = registry._module_dict.get(name)
                if found is not None:
                    return found
                registry = registry._parent
            return None
        target = self._registry_for_scope(scope)
        if target is None:
            # Not a scope of this tree: a name that itself contains a dot.
            self._ensure_populated()
            return self._module_dict.get(key)
        if target is self:
            self._ensure_populated()
            return self._module_dict.get(name)
        return target.get(name)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __len__(self) -> int:
        self._ensure_populated()
        return len(self._module_dict)

    def __iter__(self) -> Iterator[str]:
        self._ensure_populated()
        return iter(list(self._module_dict))

    def __repr__(self) -> str:
        # No populate here: printing OPTIMIZERS must not import torch.
        return (
            f"Registry(name={self._name!r}, scope={self._scope!r}, items={len(self._module_dict)})"
        )

    def _candidates(self) -> list[str]:
        """Names reachable without a scope (for "did you mean")."""
        names: list[str] = []
        registry: Registry | None = self
        while registry is not None:
            registry._ensure_populated()
            names.extend(registry._module_dict)
            registry = registry._parent
        return names

    def _unknown(
        self, key: str, key_path: str | None, location: Location | None
    ) -> UnknownTypeError:
        scope, name = self.split_scope_key(key)
        target = self._registry_for_scope(scope) if scope is not None else None
        if target is not None and target is not self:
            return target._unknown(name, key_path, location)
        where = f"registry {self._name!r} (scope {self._scope!r})"
        if target is None and scope is not None and key not in self._candidates():
            scopes = sorted(_all_scopes(self._root()))
            return UnknownTypeError(
                f"unknown type {key!r} in {where}: no registry in its tree has scope {scope!r}",
                location=location,
                key_path=key_path,
                hint=f"known scopes: {', '.join(map(repr, scopes))}",
            )
        lookup = name if target is self else key
        matches = suggest(lookup, self._candidates())
        hint = (
            "did you mean " + ", ".join(repr(m) for m in matches) + "?"
            if matches
            else f"register it with @{self._name.upper()}.register_module() and make sure "
            "the module defining it is imported (e.g. via custom_imports)"
        )
        return UnknownTypeError(
            f"unknown type {key!r} in {where}", location=location, key_path=key_path, hint=hint
        )

    # -- registration -----------------------------------------------------------------

    def _register(
        self, module: Callable[..., Any], names: str | Sequence[str] | None, force: bool
    ) -> None:
        if not callable(module):
            raise RegistryError(
                f"can only register classes and functions in registry {self._name!r}, "
                f"got {type(module).__name__}: {module!r}"
            )
        if names is None:
            names = [module.__name__]
        elif isinstance(names, str):
            names = [names]
        # No populate here: built-in modules register while they are being imported, and
        # populating from inside that import could re-enter half-initialised modules.
        for name in names:
            existing = self._module_dict.get(name)
            if existing is not None and not force and existing is not module:
                raise DuplicateRegistrationError(
                    f"{name!r} is already registered in registry {self._name!r} "
                    f"(by {_describe(existing)})",
                    hint="pass force=True to replace it, or register under another name",
                )
            self._module_dict[name] = module

    def register_module(
        self,
        name: str | Sequence[str] | None = None,
        force: bool = False,
        module: Callable[..., Any] | None = None,
    ) -> Any:
        """Register a class or function, as a decorator or a direct call.

        Args:
            name: The name (or several names) to register under; defaults to
                ``module.__name__``.
            force: Replace a different object already registered under the name.
            module: Register this object now instead of returning a decorator.

        Returns:
            ``module`` when given, else a decorator that registers and returns its
            argument unchanged.

        Raises:
            DuplicateRegistrationError: The name is taken by another object and
                ``force`` is false (registering the same object again is allowed).
            TypeError: ``name`` or ``force`` has the wrong type.

        Example:
            >>> REG = Registry("things", scope="demo_things")
            >>> @REG.register_module(name=["Alias", "Other"])
            ... def make() -> int:
            ...     return 1
            >>> REG.register_module(module=dict) is dict
            True
            >>> sorted(REG)
            ['Alias', 'Other', 'dict']
        """
        if not isinstance(force, bool):
            raise TypeError(f"force must be a bool, got {type(force).__name__}")
        if not (
            name is None
            or isinstance(name, str)
            or (isinstance(name, Sequence) and all(isinstance(n, str) for n in name))
        ):
            raise TypeError(
                f"name must be None, a str or a sequence of str, got {type(name).__name__}"
            )
        if module is not None:
            self._register(module, name, force)
            return module

        def decorator(obj: T) -> T:
            self._register(obj, name, force)  # type: ignore[arg-type]
            return obj

        return decorator

    # -- building ---------------------------------------------------------------------

    def build(
        self,
        cfg: object,
        default_args: Mapping[str, object] | None = None,
        *,
        key_path: str | KeyPath | None = None,
        location: Location | None = None,
    ) -> Any:
        """Build an object from ``cfg`` with this registry's build function.

        Args:
            cfg: A dict / ``ConfigDict`` / ``Config`` with a ``type`` key (or, with
                ``build_model_from_cfg``, a list of them).
            default_args: Values used for keys ``cfg`` lacks (``type`` included).
            key_path: Where ``cfg`` sits in the config (for messages), e.g. ``"model"``.
            location: The file and line that set ``cfg`` (for messages).

        Returns:
            The built object.

        Raises:
            UnknownTypeError: ``type`` is missing or names nothing registered.
        """
        extra: dict[str, object] = {}
        if key_path is not None:
            extra["key_path"] = key_path
        if location is not None:
            extra["location"] = location
        return self.build_func(cfg, registry=self, default_args=default_args, **extra)


def _caller_module_name() -> str:
    # Frame 0 is this function, 1 is Registry.__init__, 2 is the code constructing it.
    # Read once at construction to name the defining package (mmcv's scope rule); never
    # used to guess a "current" scope later.
    frame = sys._getframe(2)
    name = frame.f_globals.get("__name__")
    return name if isinstance(name, str) else "__main__"


def _all_scopes(registry: Registry) -> Iterator[str]:
    yield registry.scope
    for child in registry.children.values():
        yield from _all_scopes(child)


def _describe(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}.{qualname}"
    return repr(obj)


def _cfg_args(cfg: object) -> dict[str, object]:
    """A shallow copy of ``cfg`` as a dict; accepts any Mapping or a ``Config``."""
    if isinstance(cfg, Mapping):
        return dict(cfg)
    to_dict = getattr(cfg, "to_dict", None)
    if callable(to_dict):
        data = to_dict()
        if isinstance(data, Mapping):
            return dict(data)
    raise UnknownTypeError(
        f"expected a dict with a 'type' key to build from, got {type(cfg).__name__}: {cfg!r}"
    )


def _type_label(obj_type: object) -> str:
    if isinstance(obj_type, str):
        return repr(obj_type)
    return _describe(obj_type)


def build_from_cfg(
    cfg: object,
    registry: Registry,
    default_args: Mapping[str, object] | None = None,
    *,
    key_path: str | KeyPath | None = None,
    location: Location | None = None,
) -> Any:
    """Build an object from ``dict(type=..., **kwargs)`` (mmcv's ``build_from_cfg``).

    Args:
        cfg: A mapping (``dict``, ``ConfigDict``) or ``Config`` with ``type`` and the
            constructor's keyword arguments. Never modified.
        registry: Where a ``type`` name is looked up.
        default_args: Values for keys ``cfg`` lacks (``type`` included).
        key_path: Where ``cfg`` sits in the config, for messages (``"model.backbone"``).
        location: The file and line that set ``cfg``, for messages.

    Returns:
        ``type(**kwargs)``.

    Raises:
        UnknownTypeError: ``cfg`` is not a mapping, has no ``type``, or its ``type``
            names nothing in ``registry``.
        ArgumentError: The constructor rejects an argument; its key path is put
            under ``key_path`` and it gets ``location`` if it has none.
        Exception: Whatever the constructor raises, unchanged but with a note
            ``while building <key path> (type=...)``.

    Example:
        >>> REG = Registry("demo_build", scope="demo_build")
        >>> _ = REG.register_module(module=dict)
        >>> cfg = {"type": "dict", "a": 1}
        >>> build_from_cfg(cfg, REG, default_args={"b": 2})
        {'a': 1, 'b': 2}
        >>> cfg  # unchanged
        {'type': 'dict', 'a': 1}
    """
    path = str(key_path) if key_path is not None else None
    args = _cfg_args(cfg)
    if default_args is not None:
        for name, value in default_args.items():
            args.setdefault(name, value)
    if "type" not in args:
        raise UnknownTypeError(
            f"expected a 'type' key naming what to build from registry {registry.name!r}, "
            f"got keys {sorted(map(str, args))!r}",
            location=location,
            key_path=path,
        )
    obj_type = args.pop("type")
    target: Callable[..., Any] | None
    if isinstance(obj_type, str):
        from trackcfg.config.canonical import QualifiedName

        if isinstance(obj_type, QualifiedName):
            resolved = obj_type.resolve()
            target = resolved if callable(resolved) else None
        else:
            target = registry.get(obj_type)
        if target is None:
            raise registry._unknown(obj_type, path, location)
    elif callable(obj_type):
        target = obj_type
    else:
        raise UnknownTypeError(
            f"'type' must be a registered name or a class/function, "
            f"got {type(obj_type).__name__}: {obj_type!r}",
            location=location,
            key_path=f"{path}.type" if path else "type",
        )
    try:
        return target(**args)
    except Exception as exc:
        if isinstance(exc, ArgumentError):
            exc.locate(path, location)
        # Keep the user's exception (type, traceback); only add where it happened.
        where = f"while building {path} " if path else "while building "
        note = f"{where}(type={_type_label(obj_type)}) from registry {registry.name!r}"
        if location is not None:
            note += f" set at {location}"
        exc.add_note(note)
        raise


def build_model_from_cfg(
    cfg: object,
    registry: Registry,
    default_args: Mapping[str, object] | None = None,
    *,
    key_path: str | KeyPath | None = None,
    location: Location | None = None,
) -> Any:
    """Build a model; a list of configs builds an ``nn.Sequential`` of them (mmcv).

    Args:
        cfg: One config (see ``build_from_cfg``) or a list/tuple of them.
        registry: Where ``type`` names are looked up.
        default_args: Defaults applied to every config.
        key_path: Where ``cfg`` sits in the config (list elements get ``.0``, ``.1``...).
        location: The file and line that set ``cfg``.

    Returns:
        The module, or ``torch.nn.Sequential`` of the modules.
    """
    if isinstance(cfg, list | tuple):
        import torch.nn  # only here: importing the registry must not import torch

        if isinstance(key_path, KeyPath):
            base = key_path
        else:
            base = KeyPath.parse(key_path) if key_path is not None else KeyPath()
        modules = [
            build_from_cfg(item, registry, default_args, key_path=base / i, location=location)
            for i, item in enumerate(cfg)
        ]
        return torch.nn.Sequential(*modules)
    return build_from_cfg(cfg, registry, default_args, key_path=key_path, location=location)


# -- default registries -----------------------------------------------------------------


def _register_torch_optimizers(registry: Registry) -> None:
    import torch.optim

    for name in dir(torch.optim):
        obj = getattr(torch.optim, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, torch.optim.Optimizer)
            and obj is not torch.optim.Optimizer
            and name not in registry._module_dict
        ):
            registry.register_module(module=obj, name=name)


def _register_torch_lr_schedulers(registry: Registry) -> None:
    from torch.optim import lr_scheduler

    bases = {getattr(lr_scheduler, n, None) for n in ("LRScheduler", "_LRScheduler")}
    for name in dir(lr_scheduler):
        obj = getattr(lr_scheduler, name)
        if (
            isinstance(obj, type)
            and not name.startswith("_")
            and obj not in bases
            and (issubclass(obj, lr_scheduler.LRScheduler) or name == "ReduceLROnPlateau")
            and name not in registry._module_dict
        ):
            registry.register_module(module=obj, name=name)


def _importer(package: str) -> Callable[[Registry], None]:
    """A populate function importing ``package``, whose import registers the built-ins."""

    def populate(registry: Registry) -> None:
        importlib.import_module(package)

    return populate


MODELS = Registry("models", scope="trackcfg")
DATASETS = Registry("datasets", scope="trackcfg")
HOOKS = Registry("hooks", scope="trackcfg", populate=_importer("trackcfg.runner.hooks"))
OPTIMIZERS = Registry("optimizers", scope="trackcfg", populate=_register_torch_optimizers)
LR_SCHEDULERS = Registry("lr_schedulers", scope="trackcfg", populate=_register_torch_lr_schedulers)
RUNNERS = Registry("runners", scope="trackcfg", populate=_importer("trackcfg.runner"))
