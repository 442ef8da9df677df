"""Loading: formats, `_base_` inheritance, `_delete_`, placeholders, `_base_.x`, private names."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from trackcfg.config.config import Config

DATA = Path(__file__).parents[2] / "data" / "configs"


def load(relative: str) -> Config:
    return Config.fromfile(DATA / relative, root=DATA)


PLAIN = {"model": {"type": "Net", "depth": 50, "scales": [1, 2]}, "lr": 0.1, "name": "plain"}


@pytest.mark.parametrize("name", ["plain.json", "plain.yaml"])
def test_json_and_yaml_load_to_the_same_dict(name: str) -> None:
    assert load(f"formats/{name}").to_dict() == PLAIN


def test_python_config_keeps_tuples() -> None:
    assert load("formats/plain.py").model.size == (224, 224)


def test_yaml_python_tuple_tag_gives_a_tuple() -> None:
    assert load("formats/tuple.yaml").size == (224, 224)


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("a = dict(b=1)\nc = [1, 2]\n", ".py"),
        ('{"a": {"b": 1}, "c": [1, 2]}', ".json"),
        ("a: {b: 1}\nc: [1, 2]\n", ".yaml"),
        ("a: {b: 1}\nc: [1, 2]\n", ".yml"),
    ],
)
def test_fromstring_reads_every_format(text: str, fmt: str) -> None:
    assert Config.fromstring(text, fmt).to_dict() == {"a": {"b": 1}, "c": [1, 2]}


def test_single_base_merges_dicts_and_replaces_lists() -> None:
    assert load("inherit/single.py").to_dict() == {
        "a": {"x": 1, "y": {"z": 2, "w": 3}},
        "items": [4],
    }


def test_list_of_bases_of_mixed_formats_merge_in_order() -> None:
    assert load("inherit/multi.py").to_dict() == {
        "a": {"x": 1, "y": {"z": 2}},
        "items": [1, 2, 3],
        "b": 3,
    }


def test_bases_resolve_relative_to_the_including_file_at_any_depth() -> None:
    cfg = load("inherit/sub/level3.yaml")
    assert cfg.level == 3
    assert cfg.a.to_dict() == {"x": 10, "y": {"z": 2, "w": 3}}
    assert [entry.path for entry in cfg.lineage] == [
        "inherit/base_a.py",
        "inherit/single.py",
        "inherit/sub/level1.py",
        "inherit/sub/level2.json",
        "inherit/sub/level3.yaml",
    ]


def test_delete_replaces_the_base_dict() -> None:
    assert load("delete/child.py").model.to_dict() == {
        "backbone": {"type": "ViT", "patch": 16},
        "head": {"num": 10},
    }


def test_delete_false_merges() -> None:
    assert load("delete/false.py").model.backbone.to_dict() == {"type": "ResNet", "depth": 101}


def test_delete_never_leaks_into_the_result() -> None:
    cfg = load("delete/no_base_key.py")
    assert cfg.optimizer.to_dict() == {"type": "SGD", "extra": {"a": 1}}
    assert cfg.pipeline == [{"type": "A"}]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("whole", 0.1),
        ("element", 128),
        ("subscript", 64),
        # Changed by `copied.backbone.depth = 101` through the alias (as in mmengine).
        ("nested", {"depth": 101, "channels": [64, 128]}),
        ("text", "model-r50-lr0.1"),
        ("doubled", 0.2),
    ],
)
def test_base_placeholders_and_expressions_in_python(key: str, expected: object) -> None:
    assert load("base_ref/child.py").to_dict()[key] == expected


def test_base_expression_is_the_inherited_value_itself() -> None:
    # mmengine hands out the base's own object: a change through `copied` is a change
    # of the inherited `model`, seen by every read of it (issue 16, item 2).
    cfg = load("base_ref/child.py")
    assert cfg.copied.backbone.depth == cfg.model.backbone.depth == cfg.nested["depth"] == 101


@pytest.mark.parametrize("name", ["child.yaml", "child.json"])
def test_base_placeholders_in_data_formats(name: str) -> None:
    cfg = load(f"base_ref/{name}").to_dict()
    assert cfg["whole"] == 0.1
    assert cfg["text"] == "model-r50"


def test_whole_value_placeholder_in_yaml_keeps_the_dict() -> None:
    assert load("base_ref/child.yaml").nested.to_dict() == {"depth": 50, "channels": [64, 128]}


@pytest.mark.parametrize("name", ["vars.py", "vars.yaml", "vars.json"])
def test_predefined_variables_name_the_real_file(name: str) -> None:
    cfg = load(f"predefined/{name}")
    assert cfg.work_dir == "./work_dirs/vars"
    assert cfg.ext == Path(name).suffix


@pytest.mark.parametrize("name", ["from_dirname.py", "from_dirname.yaml"])
def test_predefined_variables_work_in_base_paths(name: str) -> None:
    cfg = load(f"predefined/nested/{name}")
    assert (cfg.nested, cfg.work_dir) == (True, "./work_dirs/vars")


def test_python_predefined_variables_and_dunder_file() -> None:
    cfg = load("predefined/vars.py")
    real = DATA / "predefined" / "vars.py"
    assert (cfg.where, cfg.name, cfg.this) == (str(real.parent), "vars.py", str(real))
    assert "__file__" not in cfg


def test_private_names_modules_and_functions_are_not_keys() -> None:
    cfg = load("private/names.py")
    # Imported classes and functions are values, so keys; modules and the config's own
    # functions are not.
    assert sorted(cfg) == ["OrderedDict", "basename", "joined", "kind", "sqrt", "squares", "value"]
    assert (cfg.value, cfg.joined, cfg.squares) == (8, "a/b", [0, 1, 4, 9])


def test_classes_are_values() -> None:
    from collections import OrderedDict

    assert load("private/names.py").kind is OrderedDict


def test_custom_imports_imports_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(DATA / "custom_imports"))
    monkeypatch.delitem(sys.modules, "trackcfg_test_plugin", raising=False)
    load("custom_imports/ok.py")
    assert sys.modules["trackcfg_test_plugin"].IMPORTED is True


def test_custom_imports_can_be_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "trackcfg_test_plugin", raising=False)
    Config.fromfile(DATA / "custom_imports" / "ok.py", import_custom_modules=False)
    assert "trackcfg_test_plugin" not in sys.modules


def test_allowed_failed_custom_import_warns_naming_config_and_module() -> None:
    with pytest.warns(UserWarning) as record:
        load("custom_imports/allowed.py")
    assert [str(w.message) for w in record] == [
        "custom_imports/allowed.py:1: custom_imports.imports: trackcfg_no_such_module failed"
        " to import and is ignored: No module named 'trackcfg_no_such_module'"
    ]
    assert record[0].filename == __file__  # attributed to the code loading the config


def test_fromstring_imports_custom_modules_like_mmengine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(DATA / "custom_imports"))
    monkeypatch.delitem(sys.modules, "trackcfg_test_plugin", raising=False)
    Config.fromstring((DATA / "custom_imports" / "ok.py").read_text(), ".py")
    assert sys.modules["trackcfg_test_plugin"].IMPORTED is True


def test_fromstring_custom_imports_can_be_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "trackcfg_test_plugin", raising=False)
    text = (DATA / "custom_imports" / "ok.py").read_text()
    Config.fromstring(text, ".py", import_custom_modules=False)
    assert "trackcfg_test_plugin" not in sys.modules


def test_python_config_may_import_third_party_modules_and_compute() -> None:
    cfg = Config.fromstring("import xxhash\nn = len(xxhash.xxh3_128_hexdigest(b''))\n", ".py")
    assert cfg.to_dict() == {"n": 32}


@pytest.mark.parametrize(
    ("name", "imported"),
    [
        ("openmmlab/det/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py", "[]"),
        ("openmmlab/seg/exp/deeplabv3_r101_4xb2-80k_cityscapes.yaml", "['yaml']"),
        ("base_ref/child.json", "[]"),
    ],
)
def test_loading_a_config_imports_no_torch_mlflow_or_git(
    name: str, imported: str, tmp_path: Path
) -> None:
    import os
    import subprocess

    path = DATA / name
    code = (
        "import sys, trackcfg\n"
        f"cfg = trackcfg.Config.fromfile({str(path)!r})\n"
        "cfg.hash, cfg.pretty_text, cfg.provenance_map()\n"
        "print(sorted(m for m in ('torch', 'mlflow', 'git', 'yaml') if m in sys.modules))\n"
    )
    # An empty parse store: a stored YAML parse would need no yaml at all.
    env = {**os.environ, "TRACKCFG_CACHE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == imported  # yaml only for a tree with YAML files


def test_deprecation_key_warns_and_is_dropped() -> None:
    message = (
        "The config file deprecation/old.py will be deprecated in the future. Please use"
        " new.py instead. More information can be found at https://example.org/x"
    )
    with pytest.warns(DeprecationWarning) as record:
        cfg = load("deprecation/old.py")
    assert cfg.to_dict() == {"a": 1}
    assert [str(w.message) for w in record] == [message]


@pytest.mark.parametrize(
    ("suffix", "body"), [(".py", "a = 1\n"), (".json", '{"a": 1}'), (".yaml", "a: 1\n")]
)
def test_a_utf8_bom_is_not_part_of_the_config(tmp_path: Path, suffix: str, body: str) -> None:
    path = tmp_path / f"bom{suffix}"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert Config.fromfile(path).to_dict() == {"a": 1}
