"""`{{ ... }}` placeholders and `_base_` references: their syntax, and base lookups.

Two kinds of placeholder exist, as in mmcv/mmengine:

* predefined variables ``{{ fileDirname }}``, ``{{ fileBasename }}``,
  ``{{ fileBasenameNoExtension }}``, ``{{ fileExtname }}`` — the *real* file's, never a
  temporary copy (mmengine substitutes into a temp file; we never make one);
* base references ``{{ _base_.a.b }}`` — a value taken from the merged bases.

Anything else between ``{{`` and ``}}`` is an error (mmengine's ``{{$ENV:default}}``
form is not supported: a config whose value depends on the environment could not be
re-resolved from its snapshot).

A string that is exactly one placeholder takes the base value whole, with its type
(``lr: {{ _base_.lr }}`` gives a float); a placeholder inside a longer string is
interpolated with ``str()``. mmengine only supports the whole-value form (inside a
string it leaves a random token behind).

This module holds what every format shares; how placeholders get into a loaded value,
always keeping line numbers, is format specific: ``transform`` rewrites a ``.py``
config's ast, ``marker`` puts tokens into JSON/YAML text and swaps them for values
after loading.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from trackcfg.config.configdict import ConfigDict
from trackcfg.config.keypath import KeyParts, KeyPath, suggest
from trackcfg.config.location import Location
from trackcfg.config.merge import descend
from trackcfg.errors import ConfigSubstitutionError

__all__ = [
    "ABSOLUTE_NAME",
    "BASE_KEY",
    "PLACEHOLDER",
    "PREDEFINED_NAMES",
    "BaseLookup",
    "base_reference",
    "copy_base",
    "find_base",
    "interpolate",
    "lookup_base",
    "placeholder_bodies",
    "predefined_variables",
    "unknown_placeholder",
]

BASE_KEY = "_base_"

PREDEFINED_NAMES = ("fileDirname", "fileBasename", "fileBasenameNoExtension", "fileExtname")
#: The one predefined variable whose value depends on where the project is checked out.
ABSOLUTE_NAME = "fileDirname"

#: One placeholder on one line: `{{ anything-without-braces }}`.
PLACEHOLDER = re.compile(r"\{\{\s*([^{}\n]*?)\s*\}\}")
_BASE_PATH = re.compile(r"_base_\.([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)")


def predefined_variables(path: Path | None) -> dict[str, str]:
    """The values of ``{{ fileDirname }}`` etc. for the real file ``path``.

    Backslashes become ``/`` (as in mmengine) so the values are safe inside strings.
    A config read from a string (``path`` None) uses the current directory and the
    name ``<string>``.
    """
    if path is None:
        dirname, basename = os.getcwd(), "<string>"
    else:
        dirname, basename = str(path.parent), path.name
    stem, ext = os.path.splitext(basename)
    values = {
        "fileDirname": dirname,
        "fileBasename": basename,
        "fileBasenameNoExtension": stem,
        "fileExtname": ext,
    }
    return {k: v.replace("\\", "/") for k, v in values.items()}


def _parts(dotted: str) -> KeyParts:
    return tuple(int(p) if p.isdigit() else p for p in dotted.split("."))


def placeholder_bodies(text: str) -> list[str]:
    """The text inside every ``{{ ... }}`` of ``text``, stripped."""
    return [m.group(1) for m in PLACEHOLDER.finditer(text)]


def base_reference(body: str) -> KeyParts | None:
    """The key path of a ``_base_.a.b`` placeholder body, else None."""
    m = _BASE_PATH.fullmatch(body)
    return _parts(m.group(1)) if m else None


# ---------------------------------------------------------------------------- lookups


BaseLookup = Callable[[KeyParts, Location], object]


def lookup_base(base: Mapping[str, object], path: KeyParts, location: Location) -> object:
    """Deep copy of the value at ``path`` in the merged bases.

    Raises:
        ConfigSubstitutionError: ``path`` names nothing in the bases.
    """
    return copy_base(find_base(base, path, location), path)


def find_base(base: Mapping[str, object], path: KeyParts, location: Location) -> object:
    """The value at ``path`` itself (not a copy); errors as ``lookup_base``."""
    value: object = base
    for depth, part in enumerate(path):
        try:
            value = descend(value, part)
        except KeyError:
            found = KeyPath(path[:depth])
            candidates: list[object] = list(value) if isinstance(value, Mapping) else []
            close = suggest(str(part), candidates)
            prefix = f"{found}." if found.parts else ""
            if close:
                hint: str | None = f"did you mean _base_.{prefix}{close[0]}?"
            elif candidates:
                keys = ", ".join(str(c) for c in candidates[:10])
                hint = f"_base_{'.' if found.parts else ''}{found} has: {keys}"
            else:
                hint = None
            raise ConfigSubstitutionError(
                f"_base_.{KeyPath(path)} is not defined in the bases",
                location=location,
                hint=hint,
            ) from None
    return value


def copy_base(value: object, parts: KeyParts = ()) -> object:
    """A deep copy of an inherited value at key path ``parts``, dicts as ``ConfigDict``.

    Dicts come back as ``ConfigDict`` (knowing their key path, for error messages) so
    that ``_base_.model.backbone`` chains and attribute edits keep working.
    """
    if isinstance(value, Mapping):
        new = ConfigDict()
        object.__setattr__(new, "_key_path", parts)
        for k, v in value.items():
            dict.__setitem__(new, k, copy_base(v, (*parts, k)))
        return new
    if isinstance(value, list):
        return [copy_base(v, (*parts, i)) for i, v in enumerate(value)]
    if type(value) is tuple:
        return tuple(copy_base(v, (*parts, i)) for i, v in enumerate(value))
    if isinstance(value, str | int | float | bool | type(None) | type):
        return value
    return copy.deepcopy(value)


def interpolate(
    template: str,
    base: Mapping[str, object],
    location: Location,
) -> object:
    """Replace every ``{{ _base_.x }}`` in ``template``; a lone placeholder keeps its type."""
    whole = PLACEHOLDER.fullmatch(template)
    if whole is not None:
        ref = base_reference(whole.group(1))
        if ref is not None:
            return lookup_base(base, ref, location)

    def one(m: re.Match[str]) -> str:
        ref = base_reference(m.group(1))
        if ref is None:
            return m.group(0)
        return str(lookup_base(base, ref, location))

    return PLACEHOLDER.sub(one, template)


def unknown_placeholder(
    body: str, location: Location, key_path: str | None
) -> ConfigSubstitutionError:
    """The error for ``{{ body }}``, which is neither a predefined variable nor a base path."""
    names = [*PREDEFINED_NAMES, "_base_.<key path>"]
    close = suggest(body, PREDEFINED_NAMES)
    hint = f"did you mean {{{{ {close[0]} }}}}?" if close else f"known: {', '.join(names)}"
    if body.lstrip("'\"").startswith("$"):
        hint = (
            "environment-variable placeholders are not supported (the config would resolve "
            "differently per machine); pass the value with --cfg-options instead"
        )
    return ConfigSubstitutionError(
        f"unknown placeholder {{{{ {body} }}}}",
        location=location,
        key_path=key_path,
        hint=hint,
    )
