"""KeyPath: a typed path into a config tree, parsed from and printed as ``a.b.0.c``.

Elements are ``str`` (a dict key) or ``int`` (a list index, or an int dict key).
Printing follows the dotted form users type in ``--cfg-options``; a string key
that the dotted form cannot carry (empty, containing ``.``/``[``/``]``/quotes, or
all digits, which would read back as an index) prints as ``['key']``::

    >>> str(KeyPath.parse("data.train.pipeline.0.type"))
    'data.train.pipeline.0.type'
    >>> KeyPath.parse("a['0'].b").parts
    ('a', '0', 'b')
    >>> KeyPath.parse("a[1].b").parts
    ('a', 1, 'b')
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["KeyParts", "KeyPath", "suggest"]

#: The elements of a key path as the engine passes them around (a ``KeyPath`` unwrapped).
KeyParts = tuple[str | int, ...]

_PLAIN = re.compile(r"[^.\[\]'\"]+")
_DIGITS = re.compile(r"-?[0-9]+")


@dataclass(frozen=True, slots=True)
class KeyPath:
    """An immutable path of dict keys and list indices."""

    parts: KeyParts = ()

    @classmethod
    def parse(cls, text: str) -> KeyPath:
        """Parse ``a.b.0.c``, ``a[0].b`` or ``a['x.y']``; the exact inverse of ``str()``.

        A bracketed string is a Python string literal (what ``repr`` prints), so any key
        survives a print/parse round trip. An all-digit dotted element is an int.

        Raises:
            ValueError: ``text`` is not a well-formed key path.
        """
        parts: list[str | int] = []
        i, n = 0, len(text)
        while i < n:
            if text[i] == "[":
                i = _parse_bracket(text, i, parts)
            else:
                m = _PLAIN.match(text, i)
                if m is None:
                    raise ValueError(f"empty element at position {i} in key path {text!r}")
                token = m.group(0)
                parts.append(int(token) if _DIGITS.fullmatch(token) else token)
                i = m.end()
            if i == n:
                break
            if text[i] == ".":
                i += 1
                if i == n:
                    raise ValueError(f"key path {text!r} ends with '.'")
            elif text[i] != "[":
                raise ValueError(f"expected '.' or '[' at position {i} in key path {text!r}")
        return cls(tuple(parts))

    def __str__(self) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, int):
                out.append(("." if out else "") + str(part))
            elif _PLAIN.fullmatch(part) and not _DIGITS.fullmatch(part):
                out.append(("." if out else "") + part)
            else:
                out.append("[" + repr(part) + "]")
        return "".join(out)

    def __truediv__(self, part: str | int) -> KeyPath:
        """``path / "key"`` appends one element."""
        return KeyPath((*self.parts, part))

    def __iter__(self) -> Iterator[str | int]:
        return iter(self.parts)

    def __len__(self) -> int:
        return len(self.parts)

    @property
    def parent(self) -> KeyPath:
        """The path without its last element (the root is its own parent)."""
        return KeyPath(self.parts[:-1])

    def startswith(self, prefix: KeyPath) -> bool:
        """True when ``prefix`` is this path or one of its ancestors."""
        return self.parts[: len(prefix.parts)] == prefix.parts


def _parse_bracket(text: str, i: int, parts: list[str | int]) -> int:
    """Parse ``[0]`` or ``['key']`` starting at ``text[i] == '['``; return the index after ``]``."""
    j = i + 1
    quote = text[j : j + 1]
    if quote in ("'", '"'):
        k = j + 1
        # Scan the literal as repr() writes it: a backslash escapes the next character.
        while k < len(text) and text[k] != quote:
            k += 2 if text[k] == "\\" else 1
        if k >= len(text):
            raise ValueError(f"unclosed string at position {j} in key path {text!r}")
        try:
            value = ast.literal_eval(text[j : k + 1])
        except (SyntaxError, ValueError) as exc:
            raise ValueError(f"bad string at position {j} in key path {text!r}: {exc}") from None
        if not isinstance(value, str):
            raise ValueError(f"bad string at position {j} in key path {text!r}")
        parts.append(value)
        end = k + 1
    else:
        end = text.find("]", j)
        if end < 0:
            raise ValueError(f"unclosed '[' in key path {text!r}")
        inner = text[j:end]
        if not _DIGITS.fullmatch(inner):
            raise ValueError(f"bad index [{inner}] in key path {text!r}")
        parts.append(int(inner))
    if text[end : end + 1] != "]":
        raise ValueError(f"expected ']' at position {end} in key path {text!r}")
    return end + 1


def suggest(word: str, candidates: Iterable[object], limit: int = 3) -> list[str]:
    """Close matches of ``word`` among ``candidates`` (as strings), best first."""
    names = [str(c) for c in candidates]
    return difflib.get_close_matches(word, names, n=limit, cutoff=0.6)
