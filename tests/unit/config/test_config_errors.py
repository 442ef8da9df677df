"""Every config error message, in one table: type, fields and exact text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from trackcfg.config.config import Config
from trackcfg.config.options import check_option_keys, parse_cfg_options
from trackcfg.errors import (
    CanonicalizationError,
    ConfigAttributeError,
    ConfigBaseError,
    ConfigError,
    ConfigFileNotFoundError,
    ConfigImportError,
    ConfigKeyError,
    ConfigLimitError,
    ConfigMergeError,
    ConfigOptionError,
    ConfigSubstitutionError,
    ConfigSyntaxError,
)

DATA = Path(__file__).parents[2] / "data" / "configs"


def load(name: str) -> Callable[[], object]:
    return lambda: Config.fromfile(DATA / "errors" / name, root=DATA)


def hash_of(name: str) -> Callable[[], object]:
    return lambda: Config.fromfile(DATA / "errors" / name, root=DATA).hash


def option(options: dict[str, object], data: dict[str, object]) -> Callable[[], object]:
    return lambda: Config(data).merge_from_dict(options)


HINT_DELETE = "  hint: put `_delete_=True` in this dict to replace the base value"

CASES: list[tuple[str, Callable[[], object], type[ConfigError], str | None, str]] = [
    (
        "missing config file",
        load("no_such_config.py"),
        ConfigFileNotFoundError,
        None,
        "errors/no_such_config.py:1: config file not found",
    ),
    (
        "unsupported config format",
        load("config.toml"),
        ConfigError,
        None,
        "errors/config.toml:1: unsupported config format '.toml';"
        " expected one of .py, .json, .yaml, .yml",
    ),
    (
        "missing base file",
        load("missing_base.py"),
        ConfigBaseError,
        "_base_",
        "errors/missing_base.py:1: _base_: base file './nope.py' not found"
        " (looked for errors/nope.py)",
    ),
    (
        "cyclic base shows the whole cycle",
        load("cycle_a.py"),
        ConfigBaseError,
        "_base_",
        "errors/cycle_b.py:2: _base_: cyclic _base_:"
        " errors/cycle_a.py -> errors/cycle_b.py -> errors/cycle_a.py",
    ),
    (
        "duplicate key across sibling bases",
        load("dup.py"),
        ConfigBaseError,
        "model",
        "errors/dup_b.py:2: model: defined in two sibling bases; first defined at"
        " errors/dup_a.py:1\n"
        "  hint: define each top-level key in one base only, or set it in the including file",
    ),
    (
        "_base_ assigned twice",
        load("base_twice.py"),
        ConfigBaseError,
        "_base_",
        "errors/base_twice.py:3: _base_: _base_ is assigned twice (first at line 1)\n"
        "  hint: list every base in one `_base_ = [...]`",
    ),
    (
        "package base of a package that is not installed",
        load("package_base.py"),
        ConfigBaseError,
        "_base_",
        "errors/package_base.py:1: _base_: package 'trackcfg_no_such_pkg' of base"
        " 'trackcfg_no_such_pkg::configs/x.py' is not installed",
    ),
    (
        "python syntax error",
        load("syntax.py"),
        ConfigSyntaxError,
        None,
        "errors/syntax.py:2: invalid Python syntax: invalid syntax",
    ),
    (
        "base file that is not UTF-8",
        load("latin1.py"),
        ConfigSyntaxError,
        None,
        "errors/latin1_base.py:2: not valid UTF-8: byte 0xe9 at offset 38\n"
        "  hint: save the file as UTF-8",
    ),
    (
        "invalid json",
        load("bad.json"),
        ConfigSyntaxError,
        None,
        "errors/bad.json:4: invalid JSON: Expecting ',' delimiter",
    ),
    (
        "unknown type tag in json",
        load("bad_tag.json"),
        ConfigSyntaxError,
        "b",
        "errors/bad_tag.json:2: b: invalid JSON value: not canonical JSON data: unknown tag"
        " '!nope' with 2\n"
        "  hint: a one-key object whose key starts with '!' is a type tag; write '!!' to mean"
        " a literal '!'",
    ),
    (
        "invalid yaml",
        load("bad.yaml"),
        ConfigSyntaxError,
        None,
        "errors/bad.yaml:3: invalid YAML: did not find expected ',' or ']'",
    ),
    (
        "unsafe yaml tag",
        load("unsafe.yaml"),
        ConfigSyntaxError,
        None,
        "errors/unsafe.yaml:1: invalid YAML: could not determine a constructor for the tag"
        " 'tag:yaml.org,2002:python/object/apply:os.system'",
    ),
    (
        "yaml alias bomb, at the alias that expands too far",
        load("alias_bomb.yaml"),
        ConfigLimitError,
        "f.0",
        "errors/alias_bomb.yaml:7: f.0: alias *e expands the document too far: aliases"
        " would add more than 100,000 nodes\n"
        "  hint: every alias is a full copy of its anchor once the config is merged and"
        " hashed; write the values out, or alias smaller parts",
    ),
    (
        "yaml alias inside its own anchor",
        load("recursive_alias.yaml"),
        ConfigLimitError,
        "loop.1",
        "errors/recursive_alias.yaml:4: loop.1: alias *loop refers to a node that contains"
        " it; a config must be a finite tree",
    ),
    (
        "yaml nested too deeply",
        load("deep.yaml"),
        ConfigLimitError,
        "x.0.0.0.0.0.…",
        "errors/deep.yaml:3: x.0.0.0.0.0.…: nested more than 100 levels deep",
    ),
    (
        "json nested too deeply",
        load("deep.json"),
        ConfigLimitError,
        "x.a.0.0.0.0.…",
        "errors/deep.json:3: x.a.0.0.0.0.…: nested more than 100 levels deep",
    ),
    (
        "python value built too deep",
        load("deep_value.py"),
        ConfigLimitError,
        "depth.inner.inner.inner.inner.inner.…",
        "errors/deep_value.py:3: depth.inner.inner.inner.inner.inner.…: nested more than"
        " 100 levels deep",
    ),
    (
        "python value that contains itself",
        load("cyclic_value.py"),
        ConfigLimitError,
        "loop.1",
        "errors/cyclic_value.py:2: loop.1: the value contains itself; a config value must"
        " be a finite tree",
    ),
    (
        "unknown placeholder variable",
        load("unknown_var.py"),
        ConfigSubstitutionError,
        "work_dir",
        "errors/unknown_var.py:2: work_dir: unknown placeholder {{ fileDirnam }}\n"
        "  hint: did you mean {{ fileDirname }}?",
    ),
    (
        "environment-variable placeholder",
        load("env_var.yaml"),
        ConfigSubstitutionError,
        "data_root",
        "errors/env_var.yaml:1: data_root: unknown placeholder {{ $DATA_ROOT:/data }}\n"
        "  hint: environment-variable placeholders are not supported (the config would"
        " resolve differently per machine); pass the value with --cfg-options instead",
    ),
    (
        "unknown _base_ path in a placeholder",
        load("unknown_base.py"),
        ConfigSubstitutionError,
        "x.y",
        "errors/unknown_base.py:3: x.y: _base_.model.b is not defined in the bases\n"
        "  hint: _base_.model has: a",
    ),
    (
        "unknown _base_ path in yaml suggests a close match",
        load("unknown_base.yaml"),
        ConfigSubstitutionError,
        "x.y",
        "errors/unknown_base.yaml:3: x.y: _base_.modle.a is not defined in the bases\n"
        "  hint: did you mean _base_.model?",
    ),
    (
        "unknown _base_ path in a python expression",
        load("unknown_base_expr.py"),
        ConfigSubstitutionError,
        "z",
        "errors/unknown_base_expr.py:2: z: _base_.model.c is not defined in the bases\n"
        "  hint: _base_.model has: a",
    ),
    (
        "editing a _base_ path that does not exist",
        load("assign_base.py"),
        ConfigSubstitutionError,
        "modle.a",
        "errors/assign_base.py:2: modle.a: _base_.modle is not defined in the bases\n"
        "  hint: did you mean _base_.model?",
    ),
    (
        "deleting _base_ itself",
        load("mutate_base.py"),
        ConfigSubstitutionError,
        "_base_",
        "errors/mutate_base.py:3: _base_: _base_ itself cannot be replaced or deleted here\n"
        "  hint: list the bases in the one top-level `_base_ = [...]`",
    ),
    (
        "_delete_ with a non-bool value",
        load("delete_value.py"),
        ConfigMergeError,
        "model._delete_",
        "errors/delete_value.py:3: model._delete_: _delete_ must be True or False, got 'yes'",
    ),
    (
        "_delete_ at the top level",
        load("delete_top.py"),
        ConfigMergeError,
        "_delete_",
        "errors/delete_top.py:2: _delete_: _delete_ at the top level of a file has nothing"
        " to replace\n"
        "  hint: put `_delete_=True` inside the dict that should replace its base",
    ),
    (
        "dict merged into a non-dict base value",
        load("dict_into_int.py"),
        ConfigMergeError,
        "model",
        "errors/dict_into_int.py:2: model: cannot merge a dict into a base value of type int\n"
        "  base value set at errors/int_base.py:2\n" + HINT_DELETE,
    ),
    (
        "value the hash cannot encode",
        hash_of("unencodable.py"),
        CanonicalizationError,
        "marker",
        "errors/unencodable.py:1: marker: cannot encode a value of type slice:"
        " slice(1, 2, None)\n"
        "  hint: config values must be plain data (None, bool, int, float, str, list,"
        " tuple, dict), or importable classes, functions and enum members",
    ),
    (
        "failed custom import",
        load("bad_import.py"),
        ConfigImportError,
        "custom_imports.imports",
        "errors/bad_import.py:1: custom_imports.imports: cannot import module"
        " 'trackcfg_no_such_module': No module named 'trackcfg_no_such_module'\n"
        "  hint: make the module importable (PYTHONPATH) or set allow_failed_imports=True",
    ),
    (
        "custom_imports allow_failed_imports that is not a bool",
        load("allow_failed_not_bool.py"),
        ConfigImportError,
        "custom_imports.allow_failed_imports",
        "errors/allow_failed_not_bool.py:1: custom_imports.allow_failed_imports:"
        " allow_failed_imports must be True or False, got 'no'",
    ),
    (
        "missing key by attribute suggests a close match",
        lambda: Config({"model": {"depth": 50}}).model.dpth,
        ConfigAttributeError,
        "model.dpth",
        "model.dpth: no such key; did you mean 'depth'?",
    ),
    (
        "missing key by item",
        lambda: Config({"model": {"depth": 50}})["modl"],
        ConfigKeyError,
        "modl",
        "modl: no such key; did you mean 'model'?",
    ),
    (
        "malformed --cfg-options item",
        lambda: parse_cfg_options(["a.b"]),
        ConfigOptionError,
        "a.b",
        "<option>: a.b: expected key=value\n"
        "  hint: write options as key=value, e.g. optimizer.lr=0.01",
    ),
    (
        "malformed --cfg-options value",
        lambda: parse_cfg_options(["a=[1,2"]),
        ConfigOptionError,
        "a",
        "<option>: a: malformed value '[1,2': unclosed '[' at position 0:"
        " expected ']' before the end",
    ),
    (
        "--cfg-options value nested too deeply",
        lambda: parse_cfg_options(["a=" + "[" * 101 + "]" * 101]),
        ConfigOptionError,
        "a",
        f"<option>: a: malformed value '{'[' * 60}'…"
        " (202 characters): brackets nested more than 100 deep at position 100",
    ),
    (
        "option key path too long",
        option({".".join(["a"] * 101): 1}, {}),
        ConfigOptionError,
        "a.a.a.a.a.a.…",
        "<option>: a.a.a.a.a.a.…: key path has 101 elements; at most 100 are supported",
    ),
    (
        "option value nesting past the limit below its key",
        option({".".join(["a"] * 99): [[1]]}, {}),
        ConfigOptionError,
        "a.a.a.a.a.a.…",
        "<option>: a.a.a.a.a.a.…: nested more than 100 levels deep",
    ),
    (
        "option list index out of range",
        option({"p.3": 1}, {"p": [1]}),
        ConfigOptionError,
        "p.3",
        "<option>: p.3: index 3 is out of range for a list of length 1",
    ),
    (
        "option indexing a list with a name",
        option({"p.x": 1}, {"p": [1]}),
        ConfigOptionError,
        "p.x",
        "<option>: p.x: cannot index a list with key 'x'",
    ),
    (
        "option key the config does not have (a typo)",
        lambda: check_option_keys({"optimizer": {"lr": 0.1}}, {"optimzer.lr": 0.05}),
        ConfigOptionError,
        "optimzer.lr",
        "<option>: optimzer.lr: unknown key 'optimzer': the config has no such key; "
        "did you mean 'optimizer'?\n"
        "  hint: to add a key the config does not have, write +optimzer.lr=...",
    ),
    (
        "option key a typed dict's constructor does not take",
        lambda: check_option_keys(
            {"optimizer": {"type": "SGD", "lr": 0.1}},
            {"optimizer.lrr": 0.05},
            lambda parts, node: {"lr", "momentum", "nesterov"},
        ),
        ConfigOptionError,
        "optimizer.lrr",
        "<option>: optimizer.lrr: unknown key 'lrr': optimizer (type='SGD') has no such key "
        "and its constructor no such parameter; did you mean 'lr'?\n"
        "  hint: to add a key the config does not have, write +optimizer.lrr=...",
    ),
    (
        "option merging a dict into a scalar",
        option({"p.x": 1}, {"p": 1}),
        ConfigMergeError,
        "p",
        "<option>: p: cannot merge a dict into a base value of type int\n" + HINT_DELETE,
    ),
]


@pytest.mark.parametrize(
    ("case", "action", "error", "key_path", "message"), CASES, ids=[c[0] for c in CASES]
)
def test_config_error_message(
    case: str,
    action: Callable[[], object],
    error: type[ConfigError],
    key_path: str | None,
    message: str,
) -> None:
    with pytest.raises(error) as info:
        action()
    assert info.value.key_path == key_path
    assert str(info.value) == message


def test_user_code_error_keeps_type_and_gets_a_note() -> None:
    with pytest.raises(NameError) as info:
        Config.fromfile(DATA / "errors" / "runtime.py", root=DATA)
    assert info.value.__notes__ == ["while loading config errors/runtime.py"]
    assert info.traceback[-1].lineno + 1 == 4  # the config's own line is in the traceback
