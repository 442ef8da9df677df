"""Parse ``--cfg-options key=value`` strings into typed values (mmcv/mmengine ``DictAction``).

Values follow mmengine's ``DictAction``:

* ``1`` -> int, ``0.5`` / ``1e-3`` / ``inf`` / ``nan`` -> float (anything ``float()``
  accepts), ``true``/``false`` in any case -> bool, ``None`` -> None, anything else
  -> the text itself (a string).
* ``[a,b]`` -> list, ``(a,b)`` -> tuple, nested freely: ``[(1,2),(3,4)]``;
  ``[]`` and ``()`` are empty; a trailing comma is allowed (``(1,)``).
* ``a,b`` without brackets -> the list ``['a', 'b']`` (``a,`` is a one-element list).

Where we deliberately differ from mmengine (which strips every quote and deletes every
space before parsing), because its behaviour loses what the user typed:

* A quoted value (``'...'`` or ``"..."``, also as a list element) is always a string,
  (a quote inside an unquoted element is an ordinary character: ``it's``),
  kept verbatim: ``'1'`` stays ``'1'``, ``'a b'`` keeps its space, ``'a,b'`` is not split.
  Inside quotes a backslash escapes the quote character or a backslash.
* Spaces around elements are ignored; spaces inside an unquoted element are kept
  (``a b`` -> ``'a b'``, where mmengine gives ``'ab'``).
* Malformed input is an error (``ConfigOptionError``), not a guess: unbalanced
  brackets or quotes, text after a closing bracket (``[1]x``), an empty element between
  commas, an item without ``=`` or with an empty key. Brackets *inside* an unquoted
  element are text, as in mmengine: ``f(a,b)`` and ``x[0]`` are strings.

Keys are checked by `check_option_keys` (``trackcfg run``/``show``/``hash`` call it; the
Python ``merge_from_dict`` stays as lenient as mmcv's): a key path that leaves the config
must name something its dict accepts, else it is a typo (``optimzer.lr=0.05`` would
otherwise add a top-level key and train with the old learning rate). A dict with a
``type`` accepts its constructor's parameters (``optimizer.nesterov=True`` for SGD);
what else a dict accepts is the caller's knowledge (``parameters``). A key the check
does not know is added on purpose with a leading ``+`` (Hydra's spelling for "append a
new key"): ``+my_note=1``. The ``+`` is not part of the key.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from trackcfg.config.keypath import KeyParts, KeyPath, suggest
from trackcfg.config.limits import MAX_DEPTH
from trackcfg.config.location import OPTION_FILE, Location
from trackcfg.errors import ConfigOptionError

__all__ = [
    "NEW_KEY_PREFIX",
    "ParameterLookup",
    "check_option_keys",
    "parse_cfg_options",
    "parse_option_value",
]

#: Written before an option's key (``+new_key=1``) to add a key the config does not have.
NEW_KEY_PREFIX = "+"

#: ``(key path of a dict, the dict) -> the keys it accepts besides its own``, or None
#: when any key is accepted (a constructor taking ``**kwargs``, or one not known here).
ParameterLookup = Callable[[KeyParts, Mapping[str, object]], Collection[str] | None]

_OPEN_TO_CLOSE = {"[": "]", "(": ")"}
_CLOSERS = frozenset("])")
_QUOTES = frozenset("'\"")
_SCALAR_WORDS: dict[str, object] = {"true": True, "false": False}


class _Malformed(Exception):
    """Internal: a parse failure before the key is known."""


def _parse_scalar(token: str) -> object:
    """Type one unquoted, stripped element (mmengine's ``_parse_int_float_bool``)."""
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        pass
    lowered = token.lower()
    if lowered in _SCALAR_WORDS:
        return _SCALAR_WORDS[lowered]
    if token == "None":
        return None
    return token


class _Parser:
    """A small recursive-descent parser over one option value."""

    __slots__ = ("depth", "pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0  # brackets open around `pos`

    def skip_spaces(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos].isspace():
            pos += 1
        self.pos = pos

    def parse_top(self) -> object:
        """The whole value: one element, or a comma list without brackets."""
        items, trailing_comma = self.parse_sequence(closer=None, open_pos=-1)
        if len(items) == 1 and not trailing_comma:
            return items[0]
        return items

    def parse_sequence(self, closer: str | None, open_pos: int) -> tuple[list[object], bool]:
        """Elements separated by commas, up to ``closer`` (or the end of the text)."""
        items: list[object] = []
        trailing_comma = False
        self.skip_spaces()
        if closer is not None and self.peek() == closer:
            self.pos += 1
            return items, False
        while True:
            items.append(self.parse_element(closer, allow_empty=closer is None and not items))
            self.skip_spaces()
            ch = self.peek()
            if ch == ",":
                self.pos += 1
                self.skip_spaces()
                nxt = self.peek()
                if nxt == closer or (closer is None and nxt == ""):
                    if closer is not None:
                        self.pos += 1
                    trailing_comma = True
                    return items, trailing_comma
                continue
            if closer is None:
                if ch == "":
                    return items, trailing_comma
                raise _Malformed(f"unexpected {ch!r} at position {self.pos}")
            if ch == closer:
                self.pos += 1
                return items, trailing_comma
            if ch == "":
                raise _Malformed(
                    f"unclosed {self.text[open_pos]!r} at position {open_pos}: "
                    f"expected {closer!r} before the end"
                )
            raise _Malformed(f"expected ',' or {closer!r} at position {self.pos}, got {ch!r}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse_element(self, closer: str | None, *, allow_empty: bool) -> object:
        self.skip_spaces()
        ch = self.peek()
        if ch in _OPEN_TO_CLOSE:
            open_pos = self.pos
            if self.depth == MAX_DEPTH:
                # The parser recurses per bracket; so does everything after it.
                raise _Malformed(
                    f"brackets nested more than {MAX_DEPTH} deep at position {open_pos}"
                )
            self.pos += 1
            self.depth += 1
            items, _ = self.parse_sequence(_OPEN_TO_CLOSE[ch], open_pos)
            self.depth -= 1
            return tuple(items) if ch == "(" else items
        if ch in _QUOTES:
            return self.parse_quoted(ch)
        start = self.pos
        text = self.text
        pos = start
        # Brackets inside an unquoted element (``f(a,b)``, ``x[0]``) are ordinary text, as in
        # mmengine, but must balance; commas inside them do not split.
        pending: list[tuple[str, int]] = []
        while pos < len(text):
            ch = text[pos]
            if ch in _OPEN_TO_CLOSE:
                pending.append((_OPEN_TO_CLOSE[ch], pos))
            elif ch in _CLOSERS:
                if not pending:
                    break
                if ch != pending[-1][0]:
                    raise _Malformed(f"unbalanced {ch!r} at position {pos}")
                pending.pop()
            elif ch == "," and not pending:
                break
            pos += 1
        if pending:
            close, at = pending[-1]
            raise _Malformed(
                f"unclosed {text[at]!r} at position {at}: expected {close!r} before the end"
            )
        if pos < len(text) and text[pos] in _CLOSERS and text[pos] != closer:
            raise _Malformed(f"unbalanced {text[pos]!r} at position {pos}")
        self.pos = pos
        token = text[start:pos].strip()
        if not token:
            if allow_empty and (pos == len(text)):
                return ""
            raise _Malformed(f"empty element at position {start}")
        return _parse_scalar(token)

    def parse_quoted(self, quote: str) -> str:
        text = self.text
        start = self.pos
        pos = start + 1
        out: list[str] = []
        while pos < len(text):
            ch = text[pos]
            if ch == "\\" and pos + 1 < len(text) and text[pos + 1] in (quote, "\\"):
                out.append(text[pos + 1])
                pos += 2
                continue
            if ch == quote:
                self.pos = pos + 1
                return "".join(out)
            out.append(ch)
            pos += 1
        raise _Malformed(f"unclosed quote {quote} at position {start}")


def _shown(text: str, limit: int = 80) -> str:
    """``repr(text)``, cut so that an error about a huge value stays one short line."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[: limit - 20]!r}… ({len(text):,} characters)"


def parse_option_value(text: str) -> object:
    """Parse the value part of one ``--cfg-options`` item.

    Args:
        text: What follows the first ``=`` of ``key=value``.

    Returns:
        An int, float, bool, None, str, or a (nested) list/tuple of those.

    Raises:
        ConfigOptionError: The text is malformed (no key is known at this level, so the
            error's ``key_path`` is None; ``parse_cfg_options`` adds it).

    Example:
        >>> parse_option_value("[(1, 2), (3, 4)]")
        [(1, 2), (3, 4)]
        >>> parse_option_value("a,b")
        ['a', 'b']
        >>> parse_option_value("'1'"), parse_option_value("1"), parse_option_value("false")
        ('1', 1, False)
        >>> parse_option_value("'a b, c'")
        'a b, c'
    """
    try:
        return _Parser(text).parse_top()
    except _Malformed as exc:
        raise ConfigOptionError(
            f"malformed value {_shown(text)}: {exc}", location=Location(OPTION_FILE, 1)
        ) from None


def parse_cfg_options(items: Sequence[str]) -> dict[str, object]:
    """Parse ``key=value`` strings (``--cfg-options``) into a dict, in order.

    The key is everything before the first ``=`` (``model.backbone.depth``,
    ``data.train.pipeline.0.type``); a later item with the same key wins, as with
    mmengine's ``DictAction``.

    Args:
        items: The ``key=value`` strings.

    Returns:
        Dotted keys mapped to parsed values, ready for ``Config.merge_from_dict``.

    Raises:
        ConfigOptionError: An item has no ``=``, an empty key, or a malformed value;
            the message starts ``<option>: key:``.

    Example:
        >>> parse_cfg_options(["optimizer.lr=0.01", "model.name='r50 v2'", "gpus=0,1"])
        {'optimizer.lr': 0.01, 'model.name': 'r50 v2', 'gpus': [0, 1]}
    """
    options: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigOptionError(
                "expected key=value",
                location=Location(OPTION_FILE, 1),
                key_path=key,
                hint="write options as key=value, e.g. optimizer.lr=0.01",
            )
        if not key:
            raise ConfigOptionError(
                f"empty key in {item!r}",
                location=Location(OPTION_FILE, 1),
                hint="write options as key=value, e.g. optimizer.lr=0.01",
            )
        try:
            options[key] = _Parser(value).parse_top()
        except _Malformed as exc:
            raise ConfigOptionError(
                f"malformed value {_shown(value)}: {exc}",
                location=Location(OPTION_FILE, 1),
                key_path=key,
            ) from None
    return options


def _typed_only(parts: KeyParts, node: Mapping[str, object]) -> Collection[str] | None:
    """The lookup without outside knowledge: a ``type`` dict may take any key, others none."""
    return None if "type" in node else frozenset()


def _child(node: object, part: str | int) -> tuple[bool, object]:
    """``(found, value)`` of ``part`` in a dict or list (a digit part also finds an int key)."""
    if isinstance(node, Mapping):
        for key in (str(part), part):
            if key in node:
                return True, node[key]
        return False, None
    if isinstance(node, list | tuple) and isinstance(part, int) and -len(node) <= part < len(node):
        return True, node[part]
    return False, None


def _unknown_key(
    key: str, parts: KeyParts, node: Mapping[str, object], accepted: Collection[str]
) -> ConfigOptionError:
    where = KeyPath(parts[:-1])
    described = f"{where} (type={node['type']!r})" if "type" in node else str(where or "the config")
    message = f"unknown key {str(parts[-1])!r}: {described} has no such key"
    if "type" in node and accepted:
        message += " and its constructor no such parameter"
    close = suggest(str(parts[-1]), sorted({*map(str, node), *accepted} - {"type"}))
    if close:
        message += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return ConfigOptionError(
        message,
        location=Location(OPTION_FILE, 1),
        key_path=key,
        hint=f"to add a key the config does not have, write {NEW_KEY_PREFIX}{key}=...",
    )


def check_option_keys(
    data: Mapping[str, object],
    options: Mapping[str, object],
    parameters: ParameterLookup | None = None,
) -> dict[str, object]:
    """Refuse option keys that name nothing in ``data``; drop the ``+`` of deliberate ones.

    Each key path is followed through ``data``; where it first leaves it (a dict lacks
    the next key), that key must be one the dict accepts: ``parameters(key path, dict)``
    (None: any key). Without ``parameters``, a dict with a ``type`` accepts any key and
    any other dict none. A path that ends in a list or a plain value is left to
    ``merge_from_dict`` (which reports a bad index or a dict merged into a value).

    Args:
        data: The resolved config the options apply to.
        options: Parsed options (`parse_cfg_options`), keys as typed.
        parameters: What each dict accepts besides its own keys.

    Returns:
        The options for ``merge_from_dict``: same order, ``+`` removed from keys.

    Raises:
        ConfigOptionError: A key the config does not have and its dict does not
            accept; the message names the option and suggests close keys.

    Example:
        >>> data = {"optimizer": {"type": "SGD", "lr": 0.01}, "seed": 0}
        >>> check_option_keys(data, {"optimizer.lr": 0.1, "+note": "x"})
        {'optimizer.lr': 0.1, 'note': 'x'}
        >>> check_option_keys(data, {"optimzer.lr": 0.1})
        Traceback (most recent call last):
        ...
        trackcfg.errors.ConfigOptionError: <option>: optimzer.lr: unknown key 'optimzer': \
the config has no such key; did you mean 'optimizer'?
          hint: to add a key the config does not have, write +optimzer.lr=...
    """
    lookup = parameters or _typed_only
    checked: dict[str, object] = {}
    for key, value in options.items():
        if key.startswith(NEW_KEY_PREFIX):
            checked[key[len(NEW_KEY_PREFIX) :]] = value
            continue
        checked[key] = value
        try:
            parts = KeyPath.parse(key).parts
        except ValueError:
            continue  # merge_from_dict reports a malformed key with its position
        if len(parts) > MAX_DEPTH:
            continue  # so does it a key path too deep (`limits`)
        node: object = data
        for depth, part in enumerate(parts):
            found, child = _child(node, part)
            if found:
                node = child
                continue
            if isinstance(node, Mapping):
                accepted = lookup(parts[:depth], node)
                if accepted is not None and str(part) not in accepted:
                    raise _unknown_key(key, parts[: depth + 1], node, accepted)
            break
    return checked
