"""Where a value came from: `Location` and one provenance entry, `Assignment`.

Locations come from parsers (ast line numbers, PyYAML marks, a position-tracking
JSON reader), never from guesses. ``file`` is relative to the project root (the
git work tree holding the loaded config, else the current directory), or the
pseudo-file ``<option>`` for command-line options / ``merge_from_dict``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["OPTION_FILE", "Assignment", "AssignmentKind", "Location"]

#: The file name used for values set by `--cfg-options` / `merge_from_dict`.
OPTION_FILE = "<option>"


@dataclass(frozen=True, slots=True)
class Location:
    """A position in a config file: 1-based ``line``, optional 1-based ``col``."""

    file: str
    line: int
    col: int | None = None

    def __str__(self) -> str:
        # Options have no line: their errors read `<option>: key: ...`.
        if self.file == OPTION_FILE:
            return self.file
        return f"{self.file}:{self.line}"


class AssignmentKind(enum.Enum):
    """How a key path got a value."""

    SET = "set"  # first assignment, in a base or the leaf file
    OVERRIDE = "override"  # a later file (or merge) replaced an earlier value
    DELETE = "delete"  # removed by `_delete_=True` in a later file
    SUBSTITUTION = "substitution"  # value taken from `{{ _base_.x }}` / `_base_.x`
    OPTION = "option"  # set by `--cfg-options` / `merge_from_dict`
    PRIVATE = "private"  # a top-level `__name` a file set: not a config key (as in mmengine)


@dataclass(frozen=True, slots=True)
class Assignment:
    """One entry in a key path's history.

    Attributes:
        kind: How the value was assigned.
        location: Where the assignment is written.
        value: The value assigned (for DELETE: the value that was removed).
        source: For SUBSTITUTION, where the substituted base value was set.
    """

    kind: AssignmentKind
    location: Location
    value: object
    source: Location | None = None
