"""Priority: hook order, 0 (first) to 100 (last); equal priorities keep registration order."""

from __future__ import annotations

import enum

from trackcfg.errors import HookRegistrationError

__all__ = ["Priority", "get_priority"]


class Priority(enum.IntEnum):
    """Named hook priorities, as in mmcv."""

    HIGHEST = 0
    VERY_HIGH = 10
    HIGH = 30
    ABOVE_NORMAL = 40
    NORMAL = 50
    BELOW_NORMAL = 60
    LOW = 70
    VERY_LOW = 90
    LOWEST = 100


def get_priority(priority: int | str | Priority) -> int:
    """Normalise a priority given as a name (``'HIGH'``, case-insensitive), int or `Priority`.

    Raises:
        HookRegistrationError: an unknown name, or an int outside 0..100.
    """
    if isinstance(priority, Priority):
        return int(priority)
    if isinstance(priority, bool):
        raise HookRegistrationError(f"priority must be an int or a name, got {priority!r}")
    if isinstance(priority, int):
        if not 0 <= priority <= 100:
            raise HookRegistrationError(f"priority must be between 0 and 100, got {priority}")
        return priority
    if isinstance(priority, str):
        try:
            return int(Priority[priority.upper()])
        except KeyError:
            names = ", ".join(p.name for p in Priority)
            raise HookRegistrationError(
                f"unknown priority {priority!r}", hint=f"use one of {names} or an int 0..100"
            ) from None
    raise HookRegistrationError(f"priority must be an int or a name, got {type(priority).__name__}")
