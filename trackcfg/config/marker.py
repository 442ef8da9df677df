"""Placeholders in JSON/YAML text: marker tokens on the same line, then values.

The text does not parse with placeholders in it, so ``substitute_data_text`` replaces
predefined variables by their text (as mmengine does) and each base reference by a
unique marker token on the same line (in JSON a marker outside a string is quoted);
after loading, ``resolve_markers`` swaps markers for values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from trackcfg.config.keypath import KeyParts, KeyPath
from trackcfg.config.location import Location
from trackcfg.config.substitute import (
    ABSOLUTE_NAME,
    PLACEHOLDER,
    base_reference,
    lookup_base,
    unknown_placeholder,
)
from trackcfg.errors import ConfigSubstitutionError

__all__ = ["Marker", "MarkerUse", "SubstitutedText", "resolve_markers", "substitute_data_text"]


@dataclass(frozen=True, slots=True)
class Marker:
    """A placeholder replaced by a token in JSON/YAML text.

    Attributes:
        token: The unique text put in its place.
        body: The text between the braces.
        ref: The ``_base_`` key path, or None for an unknown variable.
        line: 1-based line of the placeholder.
        col: 1-based column of the placeholder.
    """

    token: str
    body: str
    ref: KeyParts | None
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class SubstitutedText:
    """JSON/YAML text ready to parse, and the markers left in it."""

    text: str
    markers: tuple[Marker, ...]
    #: Whether ``{{ fileDirname }}`` (an absolute path) was put into the text.
    absolute: bool = False


def substitute_data_text(text: str, suffix: str, variables: Mapping[str, str]) -> SubstitutedText:
    """Replace placeholders in JSON/YAML text, keeping every line where it was.

    Predefined variables become their text (mmengine's behaviour). Base references and
    unknown placeholders become marker tokens; in JSON a marker outside a string is
    quoted so the text parses.
    """
    if "{{" not in text:
        return SubstitutedText(text, ())
    absolute = False
    nonce = os.urandom(4).hex()
    markers: list[Marker] = []
    out: list[str] = []
    is_json = suffix == ".json"
    pos = 0
    in_string = False
    line = 1
    line_start = 0
    for m in PLACEHOLDER.finditer(text):
        chunk = text[pos : m.start()]
        if is_json:
            in_string = _json_in_string(chunk, in_string)
        newlines = chunk.count("\n")
        if newlines:
            line += newlines
            line_start = pos + chunk.rindex("\n") + 1
        out.append(chunk)
        body = m.group(1)
        if body in variables:
            out.append(variables[body])
            absolute = absolute or body == ABSOLUTE_NAME
        else:
            token = f"__trackcfg_{nonce}_{len(markers)}__"
            markers.append(
                Marker(token, body, base_reference(body), line, m.start() - line_start + 1)
            )
            out.append(f'"{token}"' if is_json and not in_string else token)
        pos = m.end()
    out.append(text[pos:])
    return SubstitutedText("".join(out), tuple(markers), absolute)


def _json_in_string(chunk: str, in_string: bool) -> bool:
    i, n = 0, len(chunk)
    while i < n:
        ch = chunk[i]
        if in_string and ch == "\\":
            i += 2
            continue
        if ch == '"':
            in_string = not in_string
        i += 1
    return in_string


@dataclass(frozen=True, slots=True)
class MarkerUse:
    """Where a marker was found after loading: the key path it sits under."""

    parts: KeyParts
    marker: Marker
    whole: bool


def resolve_markers(
    data: dict[str, object],
    markers: tuple[Marker, ...],
    base: Mapping[str, object],
    file: str,
) -> tuple[dict[str, object], list[MarkerUse]]:
    """Swap marker tokens in loaded JSON/YAML data for base values.

    Returns:
        The new data and, for every key path holding a marker, how it was used.

    Raises:
        ConfigSubstitutionError: An unknown placeholder or a missing base path.
    """
    if not markers:
        return data, []
    by_token = {m.token: m for m in markers}
    token_re = re.compile("|".join(re.escape(t) for t in by_token))
    uses: list[MarkerUse] = []

    def value_of(marker: Marker, parts: KeyParts) -> object:
        location = Location(file, marker.line, marker.col)
        if marker.ref is None:
            raise unknown_placeholder(marker.body, location, str(KeyPath(parts)) or None)
        try:
            return lookup_base(base, marker.ref, location)
        except ConfigSubstitutionError as exc:
            exc.key_path = str(KeyPath(parts)) or None
            raise

    def walk(value: object, parts: KeyParts) -> object:
        if isinstance(value, str):
            if value in by_token:
                marker = by_token[value]
                uses.append(MarkerUse(parts, marker, True))
                return value_of(marker, parts)
            if "__trackcfg_" not in value:
                return value

            def one(m: re.Match[str]) -> str:
                marker = by_token[m.group(0)]
                uses.append(MarkerUse(parts, marker, False))
                return str(value_of(marker, parts))

            return token_re.sub(one, value)
        if isinstance(value, dict):
            return {k: walk(v, (*parts, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, parts) for v in value]
        if isinstance(value, tuple):
            return tuple(walk(v, parts) for v in value)
        return value

    resolved = walk(data, ())
    return resolved, uses  # type: ignore[return-value]
