"""`custom_imports`: import the modules a config lists, so they can fill registries.

``custom_imports = dict(imports=['pkg.models'], allow_failed_imports=False)`` as in
mmcv/mmengine. A module that fails to import is a ``ConfigImportError`` naming the
config line and the module (the original exception is chained), or a ``UserWarning``
when ``allow_failed_imports=True``; the warning starts like the error
(``file:line: custom_imports.imports: ...``) where mmengine names only the module.
``allow_failed_imports`` must be a bool: a truthy string would silently turn errors
into warnings. Only ``ImportError`` counts as a failed import (as in mmengine); any
other exception from the module propagates with a note.
"""

from __future__ import annotations

import importlib
import types
import warnings
from collections.abc import Mapping

from trackcfg.config.location import Location
from trackcfg.errors import ConfigImportError

__all__ = ["CUSTOM_IMPORTS_KEY", "import_custom_modules"]

CUSTOM_IMPORTS_KEY = "custom_imports"


def import_custom_modules(
    spec: object, location: Location | None = None
) -> list[types.ModuleType | None]:
    """Import every module named by a ``custom_imports`` value.

    Args:
        spec: ``dict(imports=str | list[str], allow_failed_imports=bool)``.
        location: Where ``custom_imports`` is set (for error messages).

    Returns:
        The imported modules, None for an allowed failure.

    Raises:
        ConfigImportError: ``spec`` is malformed or a module fails to import.
    """
    key_path = CUSTOM_IMPORTS_KEY
    if not isinstance(spec, Mapping):
        raise ConfigImportError(
            f"custom_imports must be a dict(imports=[...]), got {spec!r}",
            location=location,
            key_path=key_path,
        )
    imports = spec.get("imports", [])
    allow_failed = spec.get("allow_failed_imports", False)
    if not isinstance(allow_failed, bool):
        raise ConfigImportError(
            f"allow_failed_imports must be True or False, got {allow_failed!r}",
            location=location,
            key_path=f"{key_path}.allow_failed_imports",
        )
    names = [imports] if isinstance(imports, str) else imports
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ConfigImportError(
            f"custom_imports.imports must be a module name or a list of them, got {imports!r}",
            location=location,
            key_path=f"{key_path}.imports",
        )
    modules: list[types.ModuleType | None] = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            if allow_failed:
                where = f"{location}: " if location is not None else ""
                warnings.warn(
                    f"{where}{key_path}.imports: {name} failed to import and is ignored: {exc}",
                    UserWarning,
                    # Point at the code calling Config.fromfile/fromstring.
                    stacklevel=4,
                )
                modules.append(None)
                continue
            raise ConfigImportError(
                f"cannot import module {name!r}: {exc}",
                location=location,
                key_path=f"{key_path}.imports",
                hint="make the module importable (PYTHONPATH) or set allow_failed_imports=True",
            ) from exc
        except Exception as exc:
            exc.add_note(f"while importing {name!r} listed in custom_imports at {location}")
            raise
    return modules
