"""Hostile shapes of input end in a located ConfigError, and everything inside the limits works."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trackcfg.config.config import Config
from trackcfg.config.limits import MAX_BASE_DEPTH, MAX_DEPTH
from trackcfg.errors import ConfigBaseError, ConfigLimitError, ConfigSyntaxError


def write_chain(directory: Path, length: int) -> Path:
    """``c0.py`` <- ``c1.py`` <- ... each including the one before; returns the last."""
    for i in range(length):
        base = f"_base_ = './c{i - 1}.py'\n" if i else ""
        (directory / f"c{i}.py").write_text(f"{base}v{i} = {i}\n")
    return directory / f"c{length - 1}.py"


def test_base_chain_of_500_files_is_refused_at_the_base_line(tmp_path: Path) -> None:
    top = write_chain(tmp_path, 500)
    with pytest.raises(ConfigBaseError) as info:
        Config.fromfile(top, root=tmp_path)
    # c499 is the first file; the 64th file down (c436) may not name a 65th.
    assert str(info.value).splitlines()[0] == (
        "c436.py:1: _base_: _base_ chain is more than 64 files deep:"
        " c499.py -> … -> c437.py -> c436.py -> c435.py"
    )


def test_base_chain_at_the_limit_loads(tmp_path: Path) -> None:
    cfg = Config.fromfile(write_chain(tmp_path, MAX_BASE_DEPTH), root=tmp_path)
    assert len(cfg.lineage) == MAX_BASE_DEPTH
    assert cfg.v0 == 0 and cfg[f"v{MAX_BASE_DEPTH - 1}"] == MAX_BASE_DEPTH - 1


def nested_list(levels: int) -> object:
    """``[[...[1]...]]`` with ``levels`` lists: the 1 sits ``levels`` elements below."""
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("suffix", [".py", ".json", ".yaml"])
def test_values_exactly_at_the_depth_limit_load_hash_dump_and_copy(
    tmp_path: Path, suffix: str
) -> None:
    # `x` is one element, so the deepest 1 sits at exactly MAX_DEPTH.
    source = Config({"x": nested_list(MAX_DEPTH - 1)})
    path = tmp_path / f"deep{suffix}"
    source.dump(path)
    cfg = Config.fromfile(path)
    assert cfg.hash == source.hash
    assert Config.fromstring(cfg.pretty_text, ".py").hash == source.hash
    for out in (".json", ".yaml"):
        cfg.dump(tmp_path / f"again{out}")
        assert Config.fromfile(tmp_path / f"again{out}").hash == source.hash
    assert copy.deepcopy(cfg).hash == pickle.loads(pickle.dumps(cfg)).hash == source.hash
    assert cfg.provenance_map().to_json()["key_paths"]


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        # 20,000 levels: the C JSON decoder itself runs out of recursion.
        ("deep.json", '{"ok": 1,\n"x": ' + "[" * 20_000 + "]" * 20_000 + "}", 2),
        ("deep.yaml", "ok: 1\nx: " + "[" * 20_000 + "]" * 20_000 + "\n", 2),
        ("deep.yaml", "ok: 1\nx:\n" + "".join(f"{' ' * i}- \n" for i in range(150)), 103),
    ],
    ids=["json-flow", "yaml-flow", "yaml-block"],
)
def test_deeply_nested_data_files_are_refused_at_their_line(
    tmp_path: Path, name: str, text: str, line: int
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigLimitError) as info:
        Config.fromfile(tmp_path / name, root=tmp_path)
    assert info.value.location is not None and info.value.location.line == line
    assert info.value.message == "nested more than 100 levels deep"


def test_yaml_too_deep_for_the_c_composer_is_an_error_not_a_crash(tmp_path: Path) -> None:
    # PyYAML's C composer recurses per level and segfaults past ~24,000 levels:
    # run it in a child so that a crash cannot take the test session with it.
    path = tmp_path / "deep.yaml"
    path.write_text("x: " + "[" * 200_000 + "]" * 200_000 + "\n")
    code = (
        "import sys\nfrom trackcfg.config.config import Config\n"
        "from trackcfg.errors import ConfigLimitError\n"
        f"try:\n    Config.fromfile({str(path)!r}, root={str(tmp_path)!r})\n"
        "except ConfigLimitError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("deep.yaml:1: x.0.0.0.0.0.…: nested more than 100 levels deep")


@pytest.mark.parametrize(
    "expression",
    [
        "+".join(["1"] * 5000),  # the parser's own recursion limit
        "+".join(["1"] * 2000),  # the parser copes, the compiler does not
        "-" * 100_000 + "1",  # the parser runs out of its stack: MemoryError
        # Placeholders make us rewrite the ast, which our visitor walks recursively.
        "len('{{ fileBasename }}') + " + "+".join(["1"] * 900),
    ],
    ids=["parser", "compiler", "parser-stack", "rewrite"],
)
def test_python_expression_too_deep_to_compile_names_its_statement(
    tmp_path: Path, expression: str
) -> None:
    path = tmp_path / "deep.py"
    path.write_text(f"ok = 1\nif ok:\n    other = 2\nx = {expression}\ny = 3\n")
    # Python's default limit: a library another test imported may have raised it, and
    # then a 2,000-term expression compiles.
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        with pytest.raises(ConfigSyntaxError) as info:
            Config.fromfile(path, root=tmp_path)
    finally:
        sys.setrecursionlimit(previous)
    assert str(info.value) == (
        "deep.py:4: expression nested too deeply for Python's parser\n"
        "  hint: build deep values with a loop, or nest less"
    )


@pytest.mark.parametrize(
    ("edit", "key_path"),
    [
        ("_base_.model.deep = value", "model.deep.0.0.0.0.…"),
        ("_base_.model.update(deep=value)", "model.deep.0.0.0.0.…"),
        ("_base_.model.layers.append(value)", "model.layers.0.0.0.0.…"),
    ],
)
def test_editing_a_base_with_a_too_deep_value_is_refused_at_the_edit(
    tmp_path: Path, edit: str, key_path: str
) -> None:
    (tmp_path / "base.py").write_text("model = dict(layers=[])\n")
    (tmp_path / "child.py").write_text(
        f"_base_ = './base.py'\nvalue = 1\nfor _ in range(5000):\n    value = [value]\n{edit}\n"
    )
    with pytest.raises(ConfigLimitError) as info:
        Config.fromfile(tmp_path / "child.py", root=tmp_path)
    assert str(info.value) == f"child.py:5: {key_path}: nested more than 100 levels deep"


ALIASES = """\
defaults: &defaults
  type: SGD
  lr: 0.01
  betas: &betas [0.9, 0.999]
optimizer:
  <<: *defaults
  lr: 0.02
backup: *defaults
pairs: [*betas, *betas]
"""

WRITTEN_OUT = """\
defaults: {type: SGD, lr: 0.01, betas: [0.9, 0.999]}
optimizer: {type: SGD, lr: 0.02, betas: [0.9, 0.999]}
backup: {type: SGD, lr: 0.01, betas: [0.9, 0.999]}
pairs: [[0.9, 0.999], [0.9, 0.999]]
"""


def test_yaml_aliases_and_merge_keys_load_as_pyyaml_reads_them() -> None:
    cfg = Config.fromstring(ALIASES, ".yaml")
    assert cfg.to_dict() == yaml.safe_load(ALIASES)
    assert cfg.hash == Config.fromstring(WRITTEN_OUT, ".yaml").hash
    assert [a.location.line for a in cfg.provenance("optimizer.lr")] == [7]


def test_yaml_aliases_up_to_the_limit_load() -> None:
    # 1,000 aliases of a 99-node anchor: 99,000 nodes added, under MAX_ALIAS_NODES.
    anchor = "[" + ", ".join(["1"] * 98) + "]"
    text = f"a: &a {anchor}\nb: [{', '.join(['*a'] * 1000)}]\n"
    assert len(Config.fromstring(text, ".yaml").b) == 1000
