"""The mmcv-named surface: ConfigDict, merge_from_dict, to_dict, dump, pretty_text, copies."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from trackcfg.config.config import Config, ConfigDict
from trackcfg.errors import ConfigAttributeError, ConfigKeyError

DATA = Path(__file__).parents[2] / "data" / "configs"


def sample() -> Config:
    return Config(
        {
            "model": {"backbone": {"depth": 50, "out": (1, 2)}, "head": {"num": 10}},
            "pipeline": [{"type": "Load"}, {"type": "Resize", "size": 3}],
            "lr": 0.1,
        }
    )


def test_configdict_attribute_and_item_access() -> None:
    d = ConfigDict(model={"backbone": {"depth": 50}}, items=[{"a": 1}])
    assert d.model.backbone.depth == d["model"]["backbone"]["depth"] == 50
    assert isinstance(d["items"][0], ConfigDict)
    assert d["items"][0].a == 1


def test_configdict_missing_attribute_names_path_and_close_match() -> None:
    d = ConfigDict(model={"backbone": {"depth": 50}})
    with pytest.raises(AttributeError) as info:
        _ = d.model.backbone.dpeth
    assert isinstance(info.value, ConfigAttributeError)
    assert str(info.value) == "model.backbone.dpeth: no such key; did you mean 'depth'?"


def test_configdict_missing_item_is_a_key_error() -> None:
    with pytest.raises(KeyError) as info:
        _ = ConfigDict(model={"depth": 1})["model"]["colour"]
    assert isinstance(info.value, ConfigKeyError)
    assert str(info.value) == "model.colour: no such key"


@pytest.mark.parametrize(
    "remove",
    [
        lambda d: d["model"].pop("dpeth"),
        lambda d: d["model"].__delitem__("dpeth"),
        lambda d: delattr(d["model"], "dpeth"),
    ],
    ids=["pop", "del item", "del attribute"],
)
def test_removing_a_missing_key_names_path_and_close_match(
    remove: Callable[[ConfigDict], object],
) -> None:
    d = ConfigDict(model={"depth": 50})
    with pytest.raises(KeyError) as info:
        remove(d)
    assert str(info.value) == "model.dpeth: no such key; did you mean 'depth'?"
    assert d.model.pop("dpeth", None) is None  # with a default, as dict.pop


def test_configdict_setattr_wraps_new_dicts() -> None:
    d = ConfigDict()
    d.model = {"depth": 1}
    assert d.model.depth == 1
    assert isinstance(d.model, ConfigDict)


def test_config_missing_key_suggests() -> None:
    with pytest.raises(AttributeError, match="did you mean 'model'"):
        _ = sample().modle


def test_to_dict_gives_plain_dicts_and_keeps_tuples() -> None:
    data = sample().to_dict()
    assert type(data["model"]) is dict
    assert type(data["pipeline"][0]) is dict
    assert data["model"]["backbone"]["out"] == (1, 2)


@pytest.mark.parametrize(
    ("options", "path", "expected"),
    [
        ({"model.backbone.depth": 101}, ("model", "backbone", "depth"), 101),
        ({"model.neck.type": "FPN"}, ("model", "neck"), {"type": "FPN"}),
        ({"pipeline.1.size": 5}, ("pipeline", 1, "size"), 5),
        ({"pipeline.0": {"type": "Other"}}, ("pipeline", 0, "type"), "Other"),
        ({"model.head": {"loss": "ce"}}, ("model", "head"), {"num": 10, "loss": "ce"}),
        ({"lr": [1, 2]}, ("lr",), [1, 2]),
        ({"model.backbone.out.1": 9}, ("model", "backbone", "out"), (1, 9)),
        ({"new.deep.key": None}, ("new",), {"deep": {"key": None}}),
    ],
)
def test_merge_from_dict(
    options: dict[str, object], path: tuple[object, ...], expected: object
) -> None:
    cfg = sample()
    cfg.merge_from_dict(options)
    value: object = cfg.to_dict()
    for part in path:
        value = value[part]  # type: ignore[index]
    assert value == expected


def test_merge_from_dict_records_options_in_order() -> None:
    cfg = sample()
    cfg.merge_from_dict({"lr": 0.2})
    cfg.merge_from_dict({"model.head.num": 3, "lr": 0.3})
    assert cfg.options == {"lr": 0.3, "model.head.num": 3}


def test_merge_from_dict_without_list_keys_replaces_nothing_in_lists() -> None:
    cfg = sample()
    with pytest.raises(Exception, match="cannot merge a dict into a base value of type list"):
        cfg.merge_from_dict({"pipeline.0.type": "X"}, allow_list_keys=False)


@pytest.mark.parametrize("suffix", [".py", ".json", ".yaml"])
def test_dump_round_trips_the_hash(tmp_path: Path, suffix: str) -> None:
    cfg = Config.fromfile(DATA / "formats" / "plain.py")
    target = tmp_path / f"dumped{suffix}"
    cfg.dump(target)
    assert Config.fromfile(target).hash == cfg.hash


@pytest.mark.parametrize("suffix", [".py", ".json", ".yaml"])
def test_dumped_text_that_looks_like_a_placeholder_reloads_verbatim(
    tmp_path: Path, suffix: str
) -> None:
    # E.g. set by an option: the dump must not turn it into a placeholder.
    data = {
        "work_dir": "{{ fileDirname }}",
        "names": {"{{ x }}": ("a{{{b}}}", "{{}}")},
        "path": Path("out/{{ y }}"),
    }
    target = tmp_path / f"dumped{suffix}"
    Config(data).dump(target)
    reloaded = Config.fromfile(target)
    assert reloaded.to_dict() == data
    assert reloaded.hash == Config(data).hash


def test_dump_without_path_uses_the_file_format() -> None:
    text = Config.fromfile(DATA / "formats" / "plain.yaml").dump()
    assert text is not None and text.startswith("model:")


def test_pretty_text_is_python_that_reloads_to_the_same_config() -> None:
    cfg = Config.fromfile(
        DATA / "openmmlab/det/faster_rcnn/faster-rcnn_x101-64x4d_fpn_ms-3x_coco.py"
    )
    assert Config.fromstring(cfg.pretty_text, ".py").to_dict() == cfg.to_dict()


def test_filename_and_text() -> None:
    path = DATA / "inherit" / "single.py"
    cfg = Config.fromfile(path, root=DATA)
    assert cfg.filename == str(path)
    assert cfg.text.startswith("inherit/base_a.py\na = dict(")
    assert "inherit/single.py\n_base_ = './base_a.py'" in cfg.text


def test_deepcopy_and_pickle_keep_values_and_hash() -> None:
    cfg = Config.fromfile(DATA / "provenance" / "leaf.py")
    for other in (copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg))):
        assert other.to_dict() == cfg.to_dict()
        assert other.hash == cfg.hash
        assert other.provenance("lr") == cfg.provenance("lr")


def test_copy_is_independent_for_merge_from_dict() -> None:
    cfg = sample()
    other = copy.copy(cfg)
    other.merge_from_dict({"lr": 1.0})
    assert (cfg.lr, other.lr) == (0.1, 1.0)


def test_reserved_keys_are_refused() -> None:
    with pytest.raises(KeyError, match="filename: is reserved"):
        Config({"filename": "x"})


def test_attribute_assignment_sets_a_key() -> None:
    cfg = sample()
    cfg.work_dir = "w"
    cfg["seed"] = 1
    assert (cfg.work_dir, cfg.seed, "seed" in cfg) == ("w", 1, True)


def test_merge_from_dict_never_mutates_the_options() -> None:
    options: dict[str, object] = {"model": {"head": {"num": 1}}, "model.head.loss": "ce"}
    sample().merge_from_dict(options)
    assert options == {"model": {"head": {"num": 1}}, "model.head.loss": "ce"}


def test_merge_from_dict_digit_part_finds_an_int_key() -> None:
    cfg = Config({"info": {0: {"id": 0}, 1: {"id": 1}}})
    cfg.merge_from_dict({"info.1.id": 5})
    assert cfg.to_dict() == {"info": {0: {"id": 0}, 1: {"id": 5}}}


def test_load_config_applies_options_as_option_assignments() -> None:
    from trackcfg.config.config import load_config

    cfg = load_config(
        DATA / "custom_imports" / "ok.py",
        ["+a.b=2", "+c='x y'"],  # keys the file does not have: added with `+`
        import_custom_modules=False,
    )
    assert (cfg.to_dict()["a"], cfg.to_dict()["c"]) == ({"b": 2}, "x y")
    assert [(a.kind.value, a.value) for a in cfg.provenance("a.b")] == [("option", 2)]


def test_load_config_hashes_like_fromfile_plus_merge_from_dict() -> None:
    from trackcfg.config.config import load_config

    path = DATA / "custom_imports" / "ok.py"
    by_hand = Config.fromfile(path, import_custom_modules=False)
    by_hand.merge_from_dict({"lr": 0.5})
    assert load_config(path, ["+lr=0.5"], import_custom_modules=False).hash == by_hand.hash
