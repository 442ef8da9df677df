"""A load with the loader's caches gives what a load without them gives, edits included.

Three-file chains in any mix of formats (bases shared between two leaves, so a kept
base is reused under another includer), loaded with ``TRACKCFG_CACHE=off`` and then
with the caches cold, warm, and from the disk store alone; then one file is rewritten
and everything is compared again.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.property.strategies_config import overlapping_configs, with_deletes
from trackcfg.config.config import Config
from trackcfg.config.inherit import clear_caches

FORMATS = (".py", ".json", ".yaml")


@contextmanager
def cache_env(mode: str, store: Path) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("TRACKCFG_CACHE", "TRACKCFG_CACHE_DIR")}
    os.environ["TRACKCFG_CACHE"] = mode
    os.environ["TRACKCFG_CACHE_DIR"] = str(store)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def text_of(data: dict[str, Any], base: str | None, suffix: str) -> str:
    full = {"_base_": base, **data} if base else data
    if suffix == ".py":
        return "".join(f"{k} = {v!r}\n" for k, v in full.items())
    if suffix == ".json":
        return json.dumps(full, indent=1)
    return yaml.safe_dump(full, sort_keys=False)


def outcome(path: Path, root: Path) -> object:
    try:
        cfg = Config.fromfile(path, root=root)
        seen: object = (
            repr(cfg.to_dict()),
            cfg.hash,
            cfg.lineage,
            cfg.lineage_hash,
            repr(sorted(cfg.provenance_map().items(), key=lambda kv: str(kv[0]))),
            cfg.text,
        )
    except Exception as exc:  # merge errors are outcomes too
        seen = (type(exc).__name__, str(exc))
    return re.sub(r" at 0x[0-9a-f]+", "", repr(seen))


configs = st.builds(with_deletes, overlapping_configs, st.lists(st.booleans(), max_size=4))


@given(
    st.lists(configs, min_size=4, max_size=4),
    st.lists(st.sampled_from(FORMATS), min_size=4, max_size=4),
    st.integers(0, 3),
    configs,
)
def test_cached_loads_equal_uncached_loads_before_and_after_an_edit(
    datas: list[dict[str, Any]], suffixes: list[str], edited: int, new_data: dict[str, Any]
) -> None:
    # base <- mid <- leaf_a, and base <- leaf_b: `base` is reused under two includers.
    names = [f"{n}{s}" for n, s in zip(("base", "mid", "leaf_a", "leaf_b"), suffixes, strict=True)]
    includes = [None, names[0], names[1], names[0]]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = root / ".cache"
        for name, data, base, suffix in zip(names, datas, includes, suffixes, strict=True):
            (root / name).write_text(text_of(data, base, suffix), encoding="utf-8")
        leaves = [root / names[2], root / names[3]]
        clear_caches()
        for round_ in range(2):
            with cache_env("off", store):
                expected = [outcome(leaf, root) for leaf in leaves]
            with cache_env("disk", store):
                # Round 0: cold, then warm. Round 1: the caches hold the files before
                # the edit.
                for step in ("first", "again"):
                    assert [outcome(leaf, root) for leaf in leaves] == expected, (round_, step)
                clear_caches()
                assert [outcome(leaf, root) for leaf in leaves] == expected, (round_, "disk")
            name = names[edited]
            (root / name).write_text(
                text_of(new_data, includes[edited], suffixes[edited]), encoding="utf-8"
            )
    clear_caches()
