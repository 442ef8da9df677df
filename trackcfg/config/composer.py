"""Compose one YAML document into PyYAML nodes, iteratively and within ``limits``.

PyYAML's composer (its C one too) recurses once per nesting level, so a deeply
nested document overflows the C stack (a segfault past ~24,000 levels) or Python's
(a ``RecursionError``); and it turns every alias into a shared node, which is cheap,
but every walk of the config after it (provenance, merge, hash, dump) expands
aliases into copies: a few hundred bytes of nested aliases become billions of nodes.

``compose_document`` builds the same node graph as ``Loader.get_single_node`` (same
tags, marks, styles, and the same errors for undefined aliases, duplicate anchors and
a second document), from the parser's events, with an explicit stack. While it goes
it counts the nodes of the document as the later walks will see it (an alias counts
the whole subtree it stands for) and its depth, and refuses, at the line of the
offending node or alias:

* a value nested more than ``limits.MAX_DEPTH`` key path elements deep;
* an alias that would make aliases add more than ``limits.MAX_ALIAS_NODES`` nodes;
* an alias that refers to a node that contains it (a recursive document, which no
  tree walk could finish).

The counts cost one integer addition per event, so a normal config pays almost
nothing; the cost of the whole document stays linear in its text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from trackcfg.config.keypath import KeyParts
from trackcfg.config.limits import MAX_ALIAS_NODES, MAX_DEPTH, short_key_path
from trackcfg.config.location import Location
from trackcfg.errors import ConfigLimitError

if TYPE_CHECKING:
    import yaml

__all__ = ["EventSource", "compose_document"]


class EventSource(Protocol):
    """What the composer needs of a PyYAML loader (the C one or the pure-Python one)."""

    def get_event(self) -> yaml.Event | None:
        """The next parser event."""
        ...

    def resolve(
        self, kind: type[yaml.Node], value: str | None, implicit: bool | tuple[bool, bool]
    ) -> str:
        """The tag of an untagged node."""
        ...


class _Mark(Protocol):
    """A position in the text: PyYAML's C and Python ``Mark`` classes both have it."""

    @property
    def line(self) -> int:
        """0-based line."""
        ...


@dataclass(slots=True)
class _Open:
    """A sequence or mapping node whose end event has not come yet."""

    node: yaml.CollectionNode
    anchor: str | None
    size: int = 1  # nodes in the expanded subtree so far (this one included)
    height: int = 0  # levels of nodes below it so far
    key: yaml.Node | None = None  # a mapping's key waiting for its value
    mapping: bool = field(default=False)


@dataclass(frozen=True, slots=True)
class _Anchored:
    node: yaml.Node
    size: int
    height: int


def compose_document(loader: EventSource, display: str) -> yaml.Node | None:
    """The single document of ``loader``'s stream as a node graph (None when empty).

    Args:
        loader: A fresh (C or pure-Python) safe loader over the text.
        display: The file name for error locations.

    Raises:
        yaml.YAMLError: What ``get_single_node`` raises for malformed YAML.
        ConfigLimitError: The document nests too deeply, or its aliases expand too far
            or refer to themselves.
    """
    import yaml

    get_event = loader.get_event
    get_event()  # StreamStartEvent
    event = get_event()
    if isinstance(event, yaml.StreamEndEvent):
        return None
    composer = _Composer(loader, display)
    root = composer.compose()
    event = get_event()  # the next document or the end of the stream
    if not isinstance(event, yaml.StreamEndEvent):
        raise yaml.composer.ComposerError(
            "expected a single document in the stream",
            root.start_mark,
            "but found another document",
            event.start_mark if event is not None else None,  # type: ignore[arg-type]
        )
    return root


class _Composer:
    def __init__(self, loader: EventSource, display: str) -> None:
        self.loader = loader
        self.display = display
        self.anchors: dict[str, _Anchored | None] = {}  # None: still open
        self.stack: list[_Open] = []
        self.added = 0  # nodes that aliases added so far

    def compose(self) -> yaml.Node:
        import yaml

        get_event = self.loader.get_event
        resolve = self.loader.resolve
        stack = self.stack
        while True:
            event = get_event()
            node: yaml.Node
            # PyYAML's C parser has its own Mark class, which nodes take as well (the
            # stubs only list the Python one): hence the ignores on node marks below.
            if isinstance(event, yaml.ScalarEvent):
                self._check_depth(event.start_mark)
                tag = event.tag
                if tag is None or tag == "!":
                    tag = resolve(yaml.ScalarNode, event.value, event.implicit)
                node = yaml.ScalarNode(
                    tag,
                    event.value,
                    event.start_mark,  # type: ignore[arg-type]
                    event.end_mark,  # type: ignore[arg-type]
                    style=event.style,
                )
                size, height = 1, 0
                if event.anchor is not None:
                    self._anchor(event.anchor, event.start_mark)
                    self.anchors[event.anchor] = _Anchored(node, 1, 0)
            elif isinstance(event, yaml.CollectionStartEvent):
                self._check_depth(event.start_mark)
                mapping = isinstance(event, yaml.MappingStartEvent)
                node_class = yaml.MappingNode if mapping else yaml.SequenceNode
                tag = event.tag
                if tag is None or tag == "!":
                    tag = resolve(node_class, None, event.implicit)
                collection = node_class(
                    tag,
                    [],
                    event.start_mark,  # type: ignore[arg-type]
                    None,
                    flow_style=event.flow_style,
                )
                if event.anchor is not None:
                    self._anchor(event.anchor, event.start_mark)
                    self.anchors[event.anchor] = None
                stack.append(_Open(collection, event.anchor, mapping=mapping))
                continue
            elif isinstance(event, yaml.CollectionEndEvent):
                done = stack.pop()
                node = done.node
                node.end_mark = event.end_mark
                size, height = done.size, done.height
                if done.anchor is not None:
                    self.anchors[done.anchor] = _Anchored(node, size, height)
            elif isinstance(event, yaml.AliasEvent):
                node, size, height = self._alias(event)
            else:
                # DocumentStartEvent was read by the caller; a DocumentEndEvent ends a node.
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"unexpected {type(event).__name__}",
                    event.start_mark if event is not None else None,  # type: ignore[arg-type]
                )
            if not stack:
                get_event()  # DocumentEndEvent
                return node
            self._attach(node, size, height)

    def _attach(self, node: yaml.Node, size: int, height: int) -> None:
        top = self.stack[-1]
        top.size += size
        top.height = max(top.height, height + 1)
        if not top.mapping:
            top.node.value.append(node)
        elif top.key is None:
            top.key = node
        else:
            top.node.value.append((top.key, node))
            top.key = None

    def _anchor(self, anchor: str, mark: _Mark | None) -> None:
        import yaml

        if anchor in self.anchors:
            first = self.anchors[anchor]
            raise yaml.composer.ComposerError(
                "found duplicate anchor; first occurrence",
                first.node.start_mark if first is not None else None,
                "second occurrence",
                mark,  # type: ignore[arg-type]
            )

    def _alias(self, event: yaml.AliasEvent) -> tuple[yaml.Node, int, int]:
        import yaml

        if event.anchor not in self.anchors:
            raise yaml.composer.ComposerError(
                None,
                None,
                "found undefined alias",
                event.start_mark,  # type: ignore[arg-type]
            )
        anchored = self.anchors[event.anchor]
        if anchored is None:
            raise self._error(
                f"alias *{event.anchor} refers to a node that contains it; a config must be"
                " a finite tree",
                event.start_mark,
            )
        self._check_depth(event.start_mark, anchored.height)
        self.added += anchored.size
        if self.added > MAX_ALIAS_NODES:
            raise self._error(
                f"alias *{event.anchor} expands the document too far: aliases would add"
                f" more than {MAX_ALIAS_NODES:,} nodes",
                event.start_mark,
                hint="every alias is a full copy of its anchor once the config is merged"
                " and hashed; write the values out, or alias smaller parts",
            )
        return anchored.node, anchored.size, anchored.height

    def _check_depth(self, mark: _Mark | None, height: int = 0) -> None:
        # A node attached now sits `len(stack)` key path elements deep.
        if len(self.stack) + height > MAX_DEPTH:
            raise self._error(f"nested more than {MAX_DEPTH} levels deep", mark)

    def _error(self, message: str, mark: _Mark | None, hint: str | None = None) -> ConfigLimitError:
        parts = self._key_parts()
        return ConfigLimitError(
            message,
            location=Location(self.display, mark.line + 1 if mark is not None else 1),
            key_path=short_key_path(parts) or None,
            hint=hint,
        )

    def _key_parts(self) -> KeyParts:
        """The key path of the node being read (scalar keys only; others by position)."""
        import yaml

        parts: list[str | int] = []
        for frame in self.stack:
            if not frame.mapping:
                parts.append(len(frame.node.value))
            elif frame.key is None:
                break  # reading a key: its path is the mapping's
            elif isinstance(frame.key, yaml.ScalarNode):
                key = frame.key.value
                parts.append(int(key) if frame.key.tag.endswith(":int") and key.isdigit() else key)
            else:
                parts.append(len(frame.node.value))
        return tuple(parts)
