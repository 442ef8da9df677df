"""--cfg-options: any value written in the option syntax parses back to itself."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from tests.strategies import identifiers, option_values
from trackcfg.config.options import parse_cfg_options, parse_option_value
from trackcfg.errors import ConfigOptionError


def to_option_text(value: object) -> str:
    """Write ``value`` in --cfg-options syntax (strings always quoted)."""
    if value is None or isinstance(value, bool | int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(to_option_text(v) for v in value) + "]"
    assert isinstance(value, tuple)
    inner = ", ".join(to_option_text(v) for v in value)
    return "(" + inner + ("," if len(value) == 1 else "") + ")"


def same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


@given(option_values)
def test_written_option_value_parses_back_to_itself(value: object) -> None:
    assert same(parse_option_value(to_option_text(value)), value)


@given(identifiers, option_values)
def test_parse_cfg_options_maps_the_key_to_the_value(key: str, value: object) -> None:
    options = parse_cfg_options([f"{key}={to_option_text(value)}"])
    assert list(options) == [key] and same(options[key], value)


@given(st.lists(identifiers, min_size=2, max_size=5))
def test_unbracketed_comma_list_is_a_list_of_strings(words: list[str]) -> None:
    # Words that read as scalars on their own ('nan', 'inf', 'true', 'None') are not strings.
    words = [w for w in words if isinstance(parse_option_value(w), str)]
    if len(words) >= 2:
        assert parse_option_value(",".join(words)) == words


@given(st.text(max_size=30))
def test_any_text_parses_or_raises_config_option_error(text: str) -> None:
    try:
        parse_option_value(text)
    except ConfigOptionError as exc:
        assert str(exc).startswith("<option>")


_plain_words = st.sampled_from(["a", "b_c", "x1", "None", "true", "False", "inf", "1", "-2", "0.5"])
_plain_values = st.recursive(
    _plain_words,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(children, min_size=1, max_size=3).map(lambda xs: "(" + ",".join(xs) + ")"),
    ),
    max_leaves=6,
)


@given(st.one_of(_plain_values, st.lists(_plain_words, min_size=2, max_size=3).map(",".join)))
def test_unquoted_values_parse_like_mmengine_dict_action(text: str) -> None:
    """mmengine is the oracle where our rules agree with it (no quotes, no inner spaces)."""
    from mmengine.config import DictAction

    ours = parse_option_value(text)
    theirs = DictAction._parse_iterable(text)
    assert same(ours, theirs)
