"""`ConfigDict`: a dict with attribute access that knows its key path.

Every dict reached through a ``ConfigDict`` (also inside lists and tuples) is a
``ConfigDict`` that knows its key path, so a missing key names the whole path
(``model.backbone.dpeth: no such key; did you mean 'depth'?``); mmengine's error
names only the missing attribute.

It lives apart from ``Config`` because the loader's own modules hand values out as
``ConfigDict`` (``substitute.copy_base``, ``editor.BaseEditor``) and ``Config`` sits
above the loader: with both in one module the imports would run in a circle.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from trackcfg.config.keypath import KeyParts, KeyPath, suggest
from trackcfg.config.merge import to_plain
from trackcfg.errors import ConfigAttributeError, ConfigKeyError

__all__ = ["ConfigDict", "no_such_key"]


def no_such_key(
    parts: KeyParts, candidates: Mapping[object, object], cls: type[ConfigKeyError]
) -> ConfigKeyError:
    """A ``cls`` error for missing ``parts``, suggesting close keys of ``candidates``."""
    close = suggest(str(parts[-1]), [k for k in candidates if isinstance(k, str | int)])
    message = "no such key"
    if close:
        message += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return cls(message, key_path=str(KeyPath(parts)))


#: Leaf types met most often: returned as they are before any (slower) ABC check.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _wrap(value: object, parts: KeyParts) -> object:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is ConfigDict and value._key_path == parts:  # type: ignore[attr-defined]
        return value
    if kind is dict or isinstance(value, Mapping):
        return ConfigDict._at(value, parts)  # type: ignore[arg-type]
    if type(value) is list or type(value) is tuple:
        # Scalar items (most) as they are, without a call and a key path each.
        items = [v if type(v) in _SCALARS else _wrap(v, (*parts, i)) for i, v in enumerate(value)]
        return items if kind is list else tuple(items)
    return value


class ConfigDict(dict):  # type: ignore[type-arg]
    """A dict with attribute access; nested dicts (also inside lists) are ConfigDicts.

    A missing key raises ``ConfigAttributeError`` (an ``AttributeError``) for
    ``d.key`` and ``ConfigKeyError`` (a ``KeyError``) for ``d['key']``, naming the
    full key path and suggesting close matches.

    Example:
        >>> d = ConfigDict(model=dict(backbone=dict(depth=50)))
        >>> d.model.backbone.depth
        50
        >>> d.model.backbone.dpeth
        Traceback (most recent call last):
        trackcfg.errors.ConfigAttributeError: model.backbone.dpeth: no such key; ...
    """

    __slots__ = ("_key_path",)
    _key_path: KeyParts

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__()
        object.__setattr__(self, "_key_path", ())
        self.update(*args, **kwargs)

    @classmethod
    def _at(
        cls, data: Mapping[str, object] | Mapping[object, object], parts: KeyParts
    ) -> ConfigDict:
        new = cls.__new__(cls)
        object.__setattr__(new, "_key_path", parts)
        scalars = _SCALARS
        dict.update(
            new,
            {
                key: value if type(value) in scalars else _wrap(value, (*parts, key))  # type: ignore[arg-type]
                for key, value in data.items()
            },
        )
        return new

    def __missing__(self, key: object) -> object:
        raise no_such_key((*self._key_path, key), self, ConfigKeyError)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        try:
            return dict.__getitem__(self, name)
        except KeyError:
            if name.startswith("__"):
                raise AttributeError(name) from None
            raise no_such_key((*self._key_path, name), self, ConfigAttributeError) from None

    def __setattr__(self, name: str, value: object) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        if name not in self:
            raise no_such_key((*self._key_path, name), self, ConfigAttributeError)
        del self[name]

    def __setitem__(self, key: object, value: object) -> None:
        dict.__setitem__(self, key, _wrap(value, (*self._key_path, key)))  # type: ignore[arg-type]

    def __delitem__(self, key: object) -> None:
        if key not in self:
            raise no_such_key((*self._key_path, key), self, ConfigKeyError)  # type: ignore[arg-type]
        dict.__delitem__(self, key)

    def pop(self, key: object, *default: object) -> object:
        """Like ``dict.pop``; a missing key without a default names its key path."""
        if key not in self and not default:
            raise no_such_key((*self._key_path, key), self, ConfigKeyError)  # type: ignore[arg-type]
        return dict.pop(self, key, *default)

    def update(self, *args: object, **kwargs: object) -> None:
        """Like ``dict.update``; nested dicts become ConfigDicts."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: object, default: object = None) -> object:
        """Like ``dict.setdefault``; the default is wrapped first."""
        if key not in self:
            self[key] = default
        return dict.__getitem__(self, key)

    def copy(self) -> ConfigDict:
        """A shallow copy that is still a ConfigDict."""
        return ConfigDict._at(self, self._key_path)

    __copy__ = copy

    def __deepcopy__(self, memo: dict[int, object]) -> ConfigDict:
        new = ConfigDict.__new__(ConfigDict)
        object.__setattr__(new, "_key_path", self._key_path)
        memo[id(self)] = new
        for key, value in self.items():
            dict.__setitem__(new, copy.deepcopy(key, memo), copy.deepcopy(value, memo))
        return new

    def __reduce__(self) -> tuple[object, ...]:
        return (ConfigDict._at, (dict(self), self._key_path))

    def to_dict(self) -> dict[object, object]:
        """Plain dicts all the way down; lists stay lists and tuples stay tuples."""
        return to_plain(self)  # type: ignore[return-value]
