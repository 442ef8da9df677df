"""The loader's caches (``filecache``, ``basecache``) change nothing but speed.

Every load is compared with one made with ``TRACKCFG_CACHE=off``: values with their
types, hash, lineage, provenance, text. The disk store of each test is its own
``tmp_path`` (``TRACKCFG_CACHE_DIR``).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from trackcfg.config.config import Config
from trackcfg.config.filecache import cache_dir
from trackcfg.config.inherit import clear_caches
from trackcfg.config.limits import MAX_BASE_DEPTH
from trackcfg.errors import ConfigBaseError, ConfigWarning

DATA = Path(__file__).parents[2] / "data" / "configs"


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A disk store of this test's own, and no parse or base kept from another test."""
    store = tmp_path / "cache"
    monkeypatch.setenv("TRACKCFG_CACHE_DIR", str(store))
    monkeypatch.delenv("TRACKCFG_CACHE", raising=False)
    clear_caches()
    yield store
    clear_caches()


def outcome(load: Callable[[], Config]) -> object:
    """All a load gives, comparable across loads (object addresses left out)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cfg = load()
            seen = (
                repr(cfg.to_dict()),
                cfg.hash,
                cfg.lineage,
                cfg.lineage_hash,
                repr(sorted(cfg.provenance_map().items(), key=lambda kv: str(kv[0]))),
                cfg.text,
                cfg.root,
                cfg.filename,
            )
    except Exception as exc:  # a config's own code may raise anything
        return ("error", type(exc).__name__, str(exc))
    warned = sorted(f"{w.category.__name__}: {w.message}" for w in caught)
    return re.sub(r" at 0x[0-9a-f]+", "", repr((seen, warned)))


def load_with(mode: str, path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("TRACKCFG_CACHE", mode)
    return outcome(lambda: Config.fromfile(path, import_custom_modules=False))


def test_every_test_config_loads_the_same_with_and_without_caches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = sorted(
        p
        for p in DATA.rglob("*")
        if p.suffix in (".py", ".json", ".yaml", ".yml") and "_base_" not in p.parts
    )
    monkeypatch.chdir(DATA)
    expected = {p: load_with("off", p, monkeypatch) for p in paths}
    # Cold memory and disk, then warm (bases reused under other includers), then the
    # disk store alone.
    for step in ("cold", "warm", "disk only"):
        if step == "disk only":
            clear_caches()
        for path in paths:
            assert load_with("disk", path, monkeypatch) == expected[path], (step, path)
    assert any(cache_dir().rglob("*.parse"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_an_edited_base_is_read_again_even_with_the_same_size_and_time(tmp_path: Path) -> None:
    base = write(tmp_path / "base.py", "lr = 0.1\nmodel = dict(depth=50)\n")
    leaf = write(tmp_path / "leaf.py", "_base_ = './base.py'\nname = 'x'\n")
    assert Config.fromfile(leaf).model.depth == 50
    stat = base.stat()
    base.write_text("lr = 0.1\nmodel = dict(depth=18)\n", encoding="utf-8")
    os.utime(base, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    cfg = Config.fromfile(leaf)
    assert cfg.model.depth == 18
    assert cfg.provenance("model.depth")[-1].value == 18


def test_a_corrupt_or_misplaced_store_entry_is_a_miss(
    tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "base.py", "a = dict(b=[1, 2], name='resnet')\n")
    write(tmp_path / "other.yaml", "c: 3\n")
    leaf = write(tmp_path / "leaf.py", "_base_ = ['./base.py', './other.yaml']\nd = 4\n")
    expected = load_with("off", leaf, monkeypatch)
    assert load_with("disk", leaf, monkeypatch) == expected
    entries = sorted(cache_home.rglob("*.parse"))
    assert len(entries) == 3
    blobs = [e.read_bytes() for e in entries]
    # A flipped byte that still unmarshals (a string in the code); each entry under
    # another's name (a valid entry, for another key); a truncated file; garbage.
    flipped = [b.replace(b"resnet", b"resnes") for b in blobs]
    assert flipped != blobs
    halves = [b[: len(b) // 2] for b in blobs]
    for corrupt in (flipped, [*blobs[1:], blobs[0]], halves, [b"x"] * 3):
        for entry, blob in zip(entries, corrupt, strict=True):
            entry.write_bytes(blob)
        clear_caches()
        assert load_with("disk", leaf, monkeypatch) == expected


def test_the_store_is_under_xdg_cache_home_unless_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRACKCFG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    leaf = write(tmp_path / "conf" / "leaf.py", "a = 1\n")
    for mode in ("off", "memory"):
        clear_caches()
        load_with(mode, leaf, monkeypatch)
        assert not (tmp_path / "xdg").exists(), mode
    clear_caches()
    load_with("", leaf, monkeypatch)
    entries = list((tmp_path / "xdg").rglob("*"))
    store = tmp_path / "xdg" / "trackcfg" / "config"
    # One entry, and no temp file left behind.
    assert sorted(entries) == [store.parent, store, *store.glob("*.parse")]
    assert len(entries) == 3


def test_an_unwritable_store_only_costs_speed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = write(tmp_path / "not-a-dir", "")
    monkeypatch.setenv("TRACKCFG_CACHE_DIR", str(blocker))
    leaf = write(tmp_path / "leaf.py", "_base_ = './base.json'\nb = 2\n")
    write(tmp_path / "base.json", '{"a": 1}')
    assert load_with("disk", leaf, monkeypatch) == load_with("off", leaf, monkeypatch)


def test_a_base_with_other_inputs_than_its_files_is_evaluated_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "base.py", "import os\nuser = os.environ.get('TRACKCFG_TEST_USER')\n")
    leaf = write(tmp_path / "leaf.py", "_base_ = './base.py'\nb = 2\n")
    monkeypatch.setenv("TRACKCFG_TEST_USER", "ada")
    assert Config.fromfile(leaf).user == "ada"
    monkeypatch.setenv("TRACKCFG_TEST_USER", "grace")
    assert Config.fromfile(leaf).user == "grace"


@pytest.mark.parametrize(
    ("base", "category"),
    [
        ("_deprecation_ = dict(expected='new.py')\na = 1\n", DeprecationWarning),
        ("a = 1\n\n\ndef unused(x):\n    return x\n", ConfigWarning),
    ],
)
def test_a_base_that_warns_warns_on_every_load(
    tmp_path: Path, base: str, category: type[Warning]
) -> None:
    write(tmp_path / "base.py", base)
    leaf = write(tmp_path / "leaf.py", "_base_ = './base.py'\nb = 2\n")
    for _ in range(2):
        with pytest.warns(category):
            Config.fromfile(leaf)


def test_changing_a_loaded_config_or_its_provenance_changes_no_later_load(
    tmp_path: Path,
) -> None:
    write(
        tmp_path / "base.py", "pipeline = [dict(type='Load'), dict(type='Resize')]\nx = (1, [2])\n"
    )
    leaf = write(tmp_path / "leaf.py", "_base_ = './base.py'\nb = 2\n")
    for _ in range(2):  # the first load keeps the base, the second reuses it
        loaded = Config.fromfile(leaf)
        loaded.pipeline.append(dict(type="Extra"))
        loaded.pipeline[0]["type"] = "Changed"
        loaded.provenance("pipeline")[-1].value.append("junk")  # type: ignore[attr-defined]
        loaded.provenance("x")[-1].value[1].append(3)  # type: ignore[index]
    again = Config.fromfile(leaf)
    assert again.to_dict()["pipeline"] == [{"type": "Load"}, {"type": "Resize"}]
    assert again.provenance("pipeline")[-1].value == [{"type": "Load"}, {"type": "Resize"}]
    assert again.provenance("x")[-1].value == (1, [2])


def test_changing_what_provenance_says_was_deleted_changes_no_later_load(
    tmp_path: Path,
) -> None:
    write(tmp_path / "base.py", "x = dict(a=[1, 2])\n")
    replacing = write(tmp_path / "a.py", "_base_ = './base.py'\nx = dict(_delete_=True, b=1)\n")
    for _ in range(2):  # the first load keeps the base, the second reuses it
        deleted = Config.fromfile(replacing).provenance("x.a")[-1]
        assert deleted.kind.value == "delete"
        deleted.value.append(3)  # type: ignore[attr-defined]
    including = write(tmp_path / "b.py", "_base_ = './base.py'\n")
    assert Config.fromfile(including).x.a == [1, 2]


def test_a_reused_base_still_counts_toward_the_chain_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(MAX_BASE_DEPTH + 10):
        base = f"_base_ = './c{i - 1}.py'\n" if i else ""
        write(tmp_path / f"c{i}.py", f"{base}v{i} = {i}\n")
    Config.fromfile(tmp_path / "c10.py", root=tmp_path)  # keeps c0 ... c9
    # 60 files from the top down to c10, then c9 and the 9 below it: 70 in all.
    top = tmp_path / f"c{MAX_BASE_DEPTH + 5}.py"
    monkeypatch.setenv("TRACKCFG_CACHE", "off")
    with pytest.raises(ConfigBaseError) as expected:
        Config.fromfile(top, root=tmp_path)
    monkeypatch.delenv("TRACKCFG_CACHE")
    with pytest.raises(ConfigBaseError) as cached:
        Config.fromfile(top, root=tmp_path)
    assert str(cached.value) == str(expected.value)
