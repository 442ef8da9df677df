"""--cfg-options parsing: mmengine DictAction semantics plus our documented deviations."""

from __future__ import annotations

import math

import pytest

from trackcfg.config.location import OPTION_FILE, Location
from trackcfg.config.options import check_option_keys, parse_cfg_options, parse_option_value
from trackcfg.errors import ConfigOptionError

OPTION = str(Location(OPTION_FILE, 1))

VALUES: list[tuple[str, object]] = [
    # scalars, as mmengine
    ("1", 1),
    ("-2", -2),
    ("1_000", 1000),
    ("0.5", 0.5),
    ("1e-3", 0.001),
    ("inf", math.inf),
    ("true", True),
    ("True", True),
    ("FALSE", False),
    ("None", None),
    ("none", "none"),
    ("abc", "abc"),
    ("/data/x.py", "/data/x.py"),
    ("a=b", "a=b"),
    ("", ""),
    ("  7  ", 7),
    # brackets, as mmengine
    ("[a,b]", ["a", "b"]),
    ("(1,2)", (1, 2)),
    ("[(1,2),(3,4)]", [(1, 2), (3, 4)]),
    ("[1,[2,(3,)]]", [1, [2, (3,)]]),
    ("[]", []),
    ("()", ()),
    ("(1,)", (1,)),
    ("(1)", (1,)),
    ("[1,]", [1]),
    # brackets inside an unquoted element are text, as in mmengine
    ("x[0]", "x[0]"),
    ("f(a,b)", "f(a,b)"),
    ("[f(a,b),c]", ["f(a,b)", "c"]),
    ("a(1),b", ["a(1)", "b"]),
    # comma lists without brackets, as mmengine
    ("a,b", ["a", "b"]),
    ("1,2.5,True", [1, 2.5, True]),
    ("a,", ["a"]),
    # quotes and spaces: our deviations (mmengine strips quotes and deletes spaces)
    ("'1'", "1"),
    ('"True"', "True"),
    ("'a b'", "a b"),
    ("'a,b'", "a,b"),
    ("a b", "a b"),
    ("[ 1 , 'x y' ]", [1, "x y"]),
    ("['1', \"2\"]", ["1", "2"]),
    ("it's", "it's"),
    (r"'it\'s'", "it's"),
    ("''", ""),
]


@pytest.mark.parametrize(("text", "expected"), VALUES)
def test_parse_option_value(text: str, expected: object) -> None:
    value = parse_option_value(text)
    assert value == expected
    assert type(value) is type(expected)


def test_nan_option_is_a_float_nan() -> None:
    value = parse_option_value("nan")
    assert isinstance(value, float) and math.isnan(value)


def test_parse_cfg_options_keeps_order_and_later_items_win() -> None:
    options = parse_cfg_options(["b.c=1", "a.0.x='s'", "b.c=2", "d = [1]"])
    assert options == {"b.c": 2, "a.0.x": "s", "d": [1]}
    assert list(options) == ["b.c", "a.0.x", "d"]


ERRORS: list[tuple[list[str], str]] = [
    (["lr"], f"{OPTION}: lr: expected key=value"),
    (["=3"], f"{OPTION}: empty key in '=3'"),
    (
        ["a.b=[1,2"],
        f"{OPTION}: a.b: malformed value '[1,2': unclosed '[' at position 0: "
        "expected ']' before the end",
    ),
    (["a=[1,,2]"], f"{OPTION}: a: malformed value '[1,,2]': empty element at position 3"),
    (["a=(1,2]"], f"{OPTION}: a: malformed value '(1,2]': unbalanced ']' at position 4"),
    (["a=[1]x"], f"{OPTION}: a: malformed value '[1]x': unexpected 'x' at position 3"),
    (["a=,x"], f"{OPTION}: a: malformed value ',x': empty element at position 0"),
    (["a=x)"], f"{OPTION}: a: malformed value 'x)': unbalanced ')' at position 1"),
    (
        ["a=f(x"],
        f"{OPTION}: a: malformed value 'f(x': unclosed '(' at position 1: "
        "expected ')' before the end",
    ),
    (["a=f(x]"], f"{OPTION}: a: malformed value 'f(x]': unbalanced ']' at position 3"),
    (["a='abc"], f"{OPTION}: a: malformed value \"'abc\": unclosed quote ' at position 0"),
    (["ok=1", "a=[(1,2]"], f"{OPTION}: a: malformed value '[(1,2]': unbalanced ']' at position 5"),
]


@pytest.mark.parametrize(("items", "message"), ERRORS)
def test_malformed_options_are_errors_naming_the_key(items: list[str], message: str) -> None:
    with pytest.raises(ConfigOptionError) as info:
        parse_cfg_options(items)
    assert str(info.value).splitlines()[0] == message
    assert info.value.location == Location(OPTION_FILE, 1)
    assert isinstance(info.value, ValueError)


def test_parse_option_value_error_has_no_key() -> None:
    with pytest.raises(ConfigOptionError) as info:
        parse_option_value("[1")
    assert info.value.key_path is None
    assert str(info.value) == (
        f"{OPTION}: malformed value '[1': unclosed '[' at position 0: expected ']' before the end"
    )


# -- check_option_keys: typos refused, deliberate new keys spelled `+key` -----------------

_DATA = {"optimizer": {"type": "SGD", "lr": 0.01}, "data": {"train": {}}, "p": [{"a": 1}]}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"optimizer.lr": 0.1}, {"optimizer.lr": 0.1}),  # an existing key
        ({"+note": "x"}, {"note": "x"}),  # a new key, on purpose
        ({"+optimizer.lrr": 1}, {"optimizer.lrr": 1}),
        ({"optimizer.nesterov": True}, {"optimizer.nesterov": True}),  # a typed dict: open
        ({"p.0.a": 2, "p.5": 1}, {"p.0.a": 2, "p.5": 1}),  # lists: left to merge_from_dict
    ],
)
def test_check_option_keys_passes_known_and_plus_keys(
    options: dict[str, object], expected: dict[str, object]
) -> None:
    assert check_option_keys(_DATA, options) == expected


@pytest.mark.parametrize("key", ["optimzer.lr", "data.tran.x", "p.0.b"])
def test_check_option_keys_refuses_a_key_no_plain_dict_has(key: str) -> None:
    with pytest.raises(ConfigOptionError) as caught:
        check_option_keys(_DATA, {key: 1})
    assert caught.value.key_path == key


def test_check_option_keys_asks_the_lookup_what_a_dict_takes() -> None:
    takes = {"lr", "momentum", "nesterov"}
    assert check_option_keys(_DATA, {"optimizer.nesterov": 1}, lambda p, n: takes)
    with pytest.raises(ConfigOptionError, match="did you mean 'momentum'"):
        check_option_keys(_DATA, {"optimizer.momentun": 1}, lambda p, n: takes)
