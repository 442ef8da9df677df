"""The last assignment of every leaf is its resolved value (bases, `_delete_`, options)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from tests.property.strategies_config import overlapping_configs, with_deletes
from trackcfg.config.config import Config
from trackcfg.errors import ConfigMergeError, ConfigOptionError


def leaves(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in leaves(v, (*prefix, k))]
    return [(prefix, value)]


def py_text(data: dict[str, Any], base: str | None) -> str:
    head = f"_base_ = {base!r}\n" if base else ""
    return head + "".join(f"{k} = {v!r}\n" for k, v in data.items())


@given(
    overlapping_configs,
    overlapping_configs,
    st.lists(st.booleans(), max_size=6),
    st.dictionaries(st.sampled_from(["a", "b.c", "c.a.b", "d"]), st.integers(), max_size=2),
)
def test_last_assignment_of_every_leaf_is_its_value(
    base: dict[str, Any], child: dict[str, Any], flags: list[bool], options: dict[str, Any]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "base.py").write_text(py_text(base, None))
        (root / "child.py").write_text(py_text(with_deletes(child, flags), "./base.py"))
        try:
            cfg = Config.fromfile(root / "child.py", root=root)
            cfg.merge_from_dict(options)
        except (ConfigMergeError, ConfigOptionError):
            assume(False)
            raise
    for path, value in leaves(cfg.to_dict()):
        if not path:
            continue
        history = cfg.provenance_map().history(path)
        assert history, path
        assert history[-1].value == value, path
