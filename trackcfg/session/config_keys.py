"""Which keys a config's dicts accept: what a ``--cfg-options`` key may add.

`trackcfg.config.options.check_option_keys` refuses an option key the config does
not have unless its dict accepts it; this module says what each dict accepts, from
what `trackcfg.runner.train.train` reads:

* the top level: the sections ``train`` reads (``work_dir``, ``fp16``, ``load_from``…);
* a dict with a ``type``: its constructor's parameters, looked up in the registry the
  section builds from (``optimizer.nesterov=True`` for ``SGD``). A constructor taking
  ``**kwargs``, or a type not registered here (a model whose ``custom_imports`` a
  reading command does not import), accepts any key: the build names the option if
  it is wrong;
* the sections whose hook ``type`` is implied (``checkpoint_config`` builds a
  ``CheckpointHook``, ``lr_config`` a ``<policy>LrUpdaterHook``…): that hook's
  parameters; ``data`` and ``log_config``: the keys ``train`` reads;
* any other dict: no new key.

Looking a type up may import torch (the optimizer and hook registries fill
themselves from it); it happens only for an option that adds a key to such a dict.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from trackcfg.config.config import load_config as _load_config
from trackcfg.config.keypath import KeyParts

if TYPE_CHECKING:
    from trackcfg.config.config import Config
    from trackcfg.registry import Registry

__all__ = ["accepted_keys", "load_config"]

#: Top-level keys `train` (and `TrainingPlan`) read; anything else would do nothing.
ROOT_KEYS = frozenset(
    {
        "model",
        "data",
        "optimizer",
        "optimizer_config",
        "fp16",
        "lr_config",
        "momentum_config",
        "runner",
        "total_epochs",
        "checkpoint_config",
        "log_config",
        "custom_hooks",
        "custom_imports",
        "workflow",
        "seed",
        "deterministic",
        "diff_rank_seed",
        "ddp",
        "work_dir",
        "resume_from",
        "load_from",
    }
)
#: Keys of ``data`` that `train` reads.
DATA_KEYS = frozenset({"samples_per_gpu", "workers_per_gpu", "persistent_workers", "train", "val"})
#: Keys of ``log_config`` (its ``hooks`` are typed dicts).
LOG_CONFIG_KEYS = frozenset({"interval", "hooks"})
#: Sections whose hook type is implied, and that type (mmcv's register_training_hooks).
IMPLIED_HOOKS = {
    "optimizer_config": "OptimizerHook",
    "fp16": "Fp16OptimizerHook",
    "checkpoint_config": "CheckpointHook",
}
#: Sections naming a ``policy`` instead of a type, and the hook name's suffix.
POLICY_HOOKS = {"lr_config": "LrUpdaterHook", "momentum_config": "MomentumUpdaterHook"}


def _registry_for(section: str | int) -> Registry | None:
    from trackcfg import registry

    by_section = {
        "model": registry.MODELS,
        "data": registry.DATASETS,
        "optimizer": registry.OPTIMIZERS,
        "runner": registry.RUNNERS,
        "custom_hooks": registry.HOOKS,
        "log_config": registry.HOOKS,
        **{name: registry.HOOKS for name in (*IMPLIED_HOOKS, *POLICY_HOOKS)},
    }
    return by_section.get(str(section))


def _signature_names(function: object) -> tuple[frozenset[str], bool] | None:
    """``(keyword parameter names, takes **kwargs)``; None when it has no signature."""
    try:
        signature = inspect.signature(function)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # some builtins have none
        return None
    kinds = inspect.Parameter
    names = frozenset(
        p.name
        for p in signature.parameters.values()
        if p.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD)
    )
    return names, any(p.kind is kinds.VAR_KEYWORD for p in signature.parameters.values())


def _parameters(target: object) -> frozenset[str] | None:
    """The keyword parameters ``target(**kwargs)`` takes; None: any (or unknown).

    A class's ``__init__`` taking ``**kwargs`` is taken to hand them to its base's
    (mmcv's hooks: ``StepLrUpdaterHook(step, **kwargs)`` -> ``LrUpdaterHook(warmup=...)``):
    the bases' parameters count too, up to one without ``**kwargs``. Reaching
    ``object`` means the keywords go somewhere unknown: any key.
    """
    if not callable(target):
        return None
    if not isinstance(target, type):
        found = _signature_names(target)
        return None if found is None or found[1] else found[0]
    names: set[str] = set()
    for klass in target.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        found = None if klass is object else _signature_names(init)
        if found is None:
            return None
        names |= found[0] - {"self"}
        if not found[1]:
            return frozenset(names)
    return None


def _constructor(section: str | int, type_name: object) -> object:
    if not isinstance(type_name, str):
        return type_name  # a class given directly in a .py config
    found = _registry_for(section)
    return None if found is None else found.get(type_name)


def accepted_keys(parts: KeyParts, node: Mapping[str, object]) -> Collection[str] | None:
    """The keys the dict ``node`` at ``parts`` accepts besides its own (None: any).

    A `trackcfg.config.options.ParameterLookup`.

    Example:
        >>> sorted(accepted_keys(("data",), {"train": {}}))
        ['persistent_workers', 'samples_per_gpu', 'train', 'val', 'workers_per_gpu']
        >>> accepted_keys(("model", "init_cfg"), {"gain": 1})
        frozenset()
    """
    if not parts:
        return ROOT_KEYS
    section = parts[0]
    if "type" in node:
        params = _parameters(_constructor(section, node["type"]))
        return None if params is None else params | {"type"}
    if len(parts) == 1:
        if section == "data":
            return DATA_KEYS
        if section == "log_config":
            return LOG_CONFIG_KEYS
        if section in IMPLIED_HOOKS:
            params = _parameters(_constructor(section, IMPLIED_HOOKS[str(section)]))
            return None if params is None else params | {"type"}
        if section in POLICY_HOOKS:
            policy = node.get("policy")
            if not isinstance(policy, str):
                return None
            # mmcv: an all-lowercase policy is title-cased ('step' -> 'StepLrUpdaterHook').
            name = (policy.title() if policy == policy.lower() else policy) + POLICY_HOOKS[section]
            params = _parameters(_constructor(section, name))
            return None if params is None else params | {"type", "policy"}
    return frozenset()


def load_config(
    path: str | os.PathLike[str],
    cfg_options: Sequence[str] = (),
    *,
    import_custom_modules: bool,
    parameters: Callable[[KeyParts, Mapping[str, object]], Collection[str] | None]
    | None = accepted_keys,
) -> Config:
    """`trackcfg.config.config.load_config` with option keys checked by `accepted_keys`."""
    return _load_config(
        path, cfg_options, import_custom_modules=import_custom_modules, parameters=parameters
    )
