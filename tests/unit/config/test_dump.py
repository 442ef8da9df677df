"""Dumps: pretty_text as Python that reloads exactly; YAML and JSON with documented losses."""

from __future__ import annotations

import collections
import enum
import json
import math
import os.path
import pathlib
from typing import Any

import pytest
import yaml

from tests.strategies import run_python
from trackcfg.config.canonical import QualifiedName, decode_value, to_canonical_bytes
from trackcfg.config.dump import (
    register_yaml_tags,
    to_json_text,
    to_python_text,
    to_text,
    to_yaml_text,
)
from trackcfg.errors import CanonicalizationError, ConfigError


class Mode(enum.Enum):
    FAST = "fast"


def test_pretty_text_short_values_stay_on_one_line() -> None:
    data = {"model": {"type": "Net", "size": (3, 3)}, "lr": 0.01, "name": "r50"}
    assert to_python_text(data) == (
        "model = dict(type='Net', size=(3, 3))\nlr = 0.01\nname = 'r50'\n"
    )


def test_pretty_text_breaks_long_values_one_item_per_line_keeping_key_order() -> None:
    data = {
        "model": {
            "type": "FasterRCNN",
            "backbone": {"type": "ResNet", "depth": 50, "out_indices": (0, 1, 2, 3)},
            "neck": {"type": "FPN", "in_channels": [256, 512, 1024, 2048], "num_outs": 5},
        }
    }
    assert to_python_text(data) == (
        "model = dict(\n"
        "    type='FasterRCNN',\n"
        "    backbone=dict(type='ResNet', depth=50, out_indices=(0, 1, 2, 3)),\n"
        "    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], num_outs=5),\n"
        ")\n"
    )


def test_pretty_text_breaks_long_lists() -> None:
    data = {"steps": [f"step_number_{i}" for i in range(6)]}
    text = to_python_text(data)
    assert text.splitlines()[:2] == ["steps = [", "    'step_number_0',"]
    assert text.endswith("    'step_number_5',\n]\n")


VALUES: list[tuple[object, str]] = [
    (None, "None"),
    (True, "True"),
    (2**70, str(2**70)),
    (-0.0, "-0.0"),
    (1e300, "1e+300"),
    (math.inf, "float('inf')"),
    (-math.inf, "float('-inf')"),
    (math.nan, "float('nan')"),
    ("it's", '"it\'s"'),
    (b"\x00", "b'\\x00'"),
    ((), "()"),
    ((1,), "(1,)"),
    ([], "[]"),
    ({}, "dict()"),
    ({"a-b": 1, 2: "x"}, "{'a-b': 1, 2: 'x'}"),
    ({"class": 1}, "{'class': 1}"),
    ({"ﬁ": 1}, "{'ﬁ': 1}"),
    ({3, 1, 2}, "{1, 2, 3}"),
    (set(), "set()"),
    (frozenset({"a"}), "frozenset({'a'})"),
    (pathlib.PurePosixPath("a/b"), "pathlib.Path('a/b')"),
    (collections.OrderedDict, "collections.OrderedDict"),
    (os.path.join, "posixpath.join"),
    (len, "len"),
    (Mode.FAST, f"{__name__}.Mode.FAST"),
    (QualifiedName("collections:OrderedDict"), "collections.OrderedDict"),
]


@pytest.mark.parametrize(("value", "text"), VALUES, ids=lambda v: repr(v)[:20])
def test_pretty_text_writes_each_type_so_it_reloads(value: object, text: str) -> None:
    dumped = to_python_text({"x": value})
    assert dumped.splitlines()[-1] == f"x = {text}"
    if "<locals>" not in text:
        assert to_canonical_bytes(run_python(dumped)) == to_canonical_bytes({"x": value})


def test_pretty_text_imports_modules_at_the_top() -> None:
    text = to_python_text({"a": collections.OrderedDict, "b": os.path.join, "c": math.sqrt})
    assert text == (
        "import collections\nimport math\nimport posixpath\n\n"
        "a = collections.OrderedDict\nb = posixpath.join\nc = math.sqrt\n"
    )


def test_top_level_keys_that_shadow_used_names_get_private_aliases() -> None:
    data = {
        "dict": 1,
        "float": 2,
        "collections": 3,
        "model": {"x": math.inf, "cls": collections.OrderedDict},
    }
    text = to_python_text(data)
    assert text == (
        "from builtins import dict as __trackcfg_dict\n"
        "from builtins import float as __trackcfg_float\n"
        "import collections as __trackcfg_collections\n"
        "\n"
        "dict = 1\n"
        "float = 2\n"
        "collections = 3\n"
        "model = __trackcfg_dict(\n"
        "    x=__trackcfg_float('inf'),\n"
        "    cls=__trackcfg_collections.OrderedDict,\n"
        ")\n"
    )
    assert to_canonical_bytes(run_python(text)) == to_canonical_bytes(data)


@pytest.mark.parametrize("key", ["a-b", "class", "__private", "1x", "ﬁ"])
def test_top_level_key_that_is_not_a_variable_name_is_an_error(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        to_python_text({key: 1})
    assert str(info.value).splitlines()[0] == (
        f"{key}: cannot write this top-level key as a Python variable"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"a": {"b": [1, object()]}}, "a.b.1: cannot encode a value of type object"),
        ({"a": {"f": lambda: 1}}, "a.f: function "),
    ],
)
def test_unwritable_values_name_their_key_path(data: dict[str, Any], message: str) -> None:
    for dump in (to_python_text, to_yaml_text, to_json_text):
        with pytest.raises(CanonicalizationError) as info:
            dump(data)
        assert str(info.value).startswith(message)


def test_yaml_keeps_order_and_tags_tuples_and_non_finite_floats() -> None:
    data = {"z": (1, 2), "a": [math.inf, -math.inf], "m": {"k": None}}
    assert to_yaml_text(data) == ("z: !!python/tuple [1, 2]\na:\n- .inf\n- -.inf\nm:\n  k: null\n")


class TaggedLoader(yaml.SafeLoader):
    """A safe loader that knows the tags to_yaml_text writes."""


register_yaml_tags(TaggedLoader)

EVERY_TYPE: dict[str, object] = {
    "plain": [1, 2.5, -0.0, True, None, "1", "yes", "null", "", "\x85"],
    "t": (1, (2, "x")),
    "n": math.nan,
    "inf": -math.inf,
    "k": {1: "int key", None: 0, 2.5: "f", (1, "a"): "tuple key"},
    "s": {2, 3},
    "fs": frozenset({"b", "a"}),
    "b": b"\x00\xff",
    "big": 2**80,
    "f": 1e20,
    "p": pathlib.PurePosixPath("a/b"),
    "cls": collections.OrderedDict,
    "fn": os.path.join,
    "builtin": len,
    "e": Mode.FAST,
    "q": QualifiedName("no_such_module:Thing"),
    "one": {"!tuple": 1},
}


def test_yaml_and_json_reload_every_type_to_the_same_hash_without_importing() -> None:
    expected = to_canonical_bytes(EVERY_TYPE)
    from_yaml = yaml.load(to_yaml_text(EVERY_TYPE), Loader=TaggedLoader)
    from_json = decode_value(json.loads(to_json_text(EVERY_TYPE)))
    assert isinstance(from_yaml, dict) and isinstance(from_json, dict)
    assert to_canonical_bytes(from_yaml) == expected
    assert to_canonical_bytes(from_json) == expected
    assert list(from_yaml) == list(EVERY_TYPE) == list(from_json)
    assert from_yaml["cls"] == from_json["cls"] == QualifiedName("collections:OrderedDict")


def test_yaml_writes_classes_functions_and_enums_as_local_tags() -> None:
    text = to_yaml_text(
        {"cls": collections.OrderedDict, "fn": math.sqrt, "m": Mode.FAST, "p": pathlib.Path("x")}
    )
    assert text == (
        "cls: !class 'collections:OrderedDict'\n"
        "fn: !function 'math:sqrt'\n"
        f"m: !enum '{__name__}:Mode.FAST'\n"
        "p: !path 'x'\n"
    )


def test_yaml_tag_with_a_bad_name_is_a_yaml_error_with_a_line() -> None:
    with pytest.raises(yaml.constructor.ConstructorError) as info:
        yaml.load("a: 1\nb: !class NoColon\n", Loader=TaggedLoader)
    assert info.value.problem_mark is not None and info.value.problem_mark.line == 1


def test_json_uses_the_canonical_tags_and_keeps_order() -> None:
    text = to_json_text({"z": (1,), "x": math.inf, "cls": collections.OrderedDict, "k": {1: "a"}})
    assert json.loads(text) == {
        "z": {"!tuple": [1]},
        "x": {"!float": "inf"},
        "cls": {"!class": "collections:OrderedDict"},
        "k": {"!dict": [[1, "a"]]},
    }
    assert list(json.loads(text)) == ["z", "x", "cls", "k"]


def test_json_of_plain_data_is_plain_json() -> None:
    data = {"a": [1, 2.5, -0.0, True, None, "x"], "m": {"n": "é", "!b": 1, "c": 2}}
    assert json.loads(to_json_text(data)) == data


@pytest.mark.parametrize(
    ("suffix", "writer"),
    [
        (".py", to_python_text),
        (".json", to_json_text),
        (".yaml", to_yaml_text),
        (".yml", to_yaml_text),
    ],
)
def test_to_text_writes_the_format_the_suffix_names(suffix: str, writer: Any) -> None:
    data = {"model": {"size": (3, 3)}}
    assert to_text(data, suffix) == writer(data)


def test_to_text_of_an_unknown_suffix_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        to_text({"a": 1}, ".toml")
    assert str(info.value) == "cannot dump to format '.toml'; use .py, .json or .yaml"


@pytest.mark.parametrize("suffix", [".py", ".json", ".yaml"])
def test_a_top_level_private_key_is_refused_not_written_for_the_reader_to_drop(
    tmp_path: pathlib.Path, suffix: str
) -> None:
    # Every reader drops a top-level __name (as mmengine does): .json and .yaml used to
    # write it, and the file then reloaded without it.
    from trackcfg.config.config import Config

    config = Config({"a": 1, "__x": 2})
    with pytest.raises(ConfigError, match="__x: a top-level __name is private"):
        config.dump(tmp_path / f"c{suffix}")
    assert not (tmp_path / f"c{suffix}").exists()
    assert Config({"a": {"__x": 2}}).dump() is not None  # nested: an ordinary key
