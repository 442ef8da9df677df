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

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["KeyPath", "suggest"]

_PLAIN = re.compile(r"[^.\[\]'\"]+")
_DIGITS = re.compile(r"-?[0-9]+")


@dataclass(frozen=True, slots=True)
class KeyPath:
    """An immutable path of dict keys and list indices."""

    parts: tuple[str | int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> KeyPath:
        """Parse ``a.b.0.c``, ``a[0].b`` or ``a['x.y']``.

        Raises:
            ValueError: ``text`` is not a well-formed key path.
        """
        parts: list[str | int] = []
        i, n = 0, len(text)
        expect_sep = False
        while i < n:
            ch = text[i]
            if ch == "[":
                end = text.find("]", i)
                if end < 0:
                    raise ValueError(f"unclosed '[' in key path {text!r}")
                inner = text[i + 1 : end]
                if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
                    parts.append(inner[1:-1].replace("\\" + inner[0], inner[0]))
                elif _DIGITS.fullmatch(inner):
                    parts.append(int(inner))
                else:
                    raise ValueError(f"bad index [{inner}] in key path {text!r}")
                i = end + 1
                expect_sep = True
                continue
            if expect_sep:
                if ch != ".":
                    raise ValueError(f"expected '.' at position {i} in key path {text!r}")
                i += 1
            m = _PLAIN.match(text, i)
            if m is None:
                if i < n and text[i] == "[":
                    expect_sep = False
                    continue
                raise ValueError(f"empty element at position {i} in key path {text!r}")
            token = m.group(0)
            parts.append(int(token) if _DIGITS.fullmatch(token) else token)
            i = m.end()
            expect_sep = True
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


def suggest(word: str, candidates: Iterable[object], limit: int = 3) -> list[str]:
    """Close matches of ``word`` among ``candidates`` (as strings), best first."""
    names = [str(c) for c in candidates]
    return difflib.get_close_matches(word, names, n=limit, cutoff=0.6)
