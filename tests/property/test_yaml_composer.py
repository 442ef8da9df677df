"""trackcfg's bounded YAML composer builds exactly the node graph PyYAML's composer builds."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.property.strategies_config import portable_configs, portable_values
from trackcfg.config.composer import compose_document
from trackcfg.config.config import Config

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def shape(node: yaml.Node, seen: dict[int, int]) -> object:
    """Everything a node graph says (tags, values, styles, marks), shared nodes by number."""
    if id(node) in seen:
        return ("alias", seen[id(node)])
    seen[id(node)] = len(seen)
    marks = (node.start_mark.line, node.start_mark.column, node.end_mark.line)
    if isinstance(node, yaml.ScalarNode):
        return (node.tag, node.value, node.style, marks)
    if isinstance(node, yaml.SequenceNode):
        return (node.tag, node.flow_style, marks, [shape(n, seen) for n in node.value])
    return (
        node.tag,
        node.flow_style,
        marks,
        [(shape(k, seen), shape(v, seen)) for k, v in node.value],
    )


@st.composite
def shared_configs(draw: st.DrawFn) -> dict[str, Any]:
    """Configs where some values are one shared object: PyYAML dumps them as aliases."""
    config = draw(portable_configs())
    shared = draw(portable_values())
    for key in draw(st.lists(st.sampled_from(["s1", "s2", "s3"]), max_size=3)):
        config[key] = shared
    return config


@given(shared_configs(), st.booleans())
def test_composer_builds_what_pyyaml_builds(config: dict[str, Any], flow: bool) -> None:
    text = yaml.safe_dump(config, default_flow_style=flow, allow_unicode=True)
    ours = compose_document(LOADER(text), "x.yaml")
    theirs = LOADER(text).get_single_node()
    assert ours is not None and theirs is not None
    assert shape(ours, {}) == shape(theirs, {})
    assert Config.fromstring(text, ".yaml").to_dict() == yaml.safe_load(text)
