"""Random base/child trees resolve exactly as mmengine resolves them (mmengine: test oracle).

Only inputs both engines define are generated: `_delete_` where the base has a dict to
replace (mmengine leaks it elsewhere), whole-value `{{ _base_.x }}` (mmengine cannot
interpolate inside strings), `_base_.x` expressions, `_base_.x.y = v` edits of the
inherited value and changes through a name bound to an inherited dict (issue 16), plus
private `__` keys in every format and YAML dates.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.property.strategies_config import overlapping_configs, with_deletes
from trackcfg.config.config import Config

mmengine_config = pytest.importorskip("mmengine.config")


def dict_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.append((*prefix, key))
            out.extend(dict_paths(item, (*prefix, key)))
    return out


def lookup(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def keep_meaningful_deletes(child: Any, base: Any) -> Any:
    """Keep `_delete_` only where it replaces a base dict (mmengine leaks it elsewhere:
    where the base lacks the key, and anywhere inside a dict that is itself replaced)."""
    if not isinstance(child, dict):
        return child
    replaced = isinstance(base, dict) and child.get("_delete_") is True
    out = {}
    for key, value in child.items():
        if key == "_delete_" and not isinstance(base, dict):
            continue
        sub = base.get(key) if isinstance(base, dict) and not replaced else None
        out[key] = keep_meaningful_deletes(value, sub)
    return out


def resolve_both(path: Path) -> tuple[object, object]:
    def run(load: Any) -> object:
        try:
            return ("ok", load())
        except Exception:  # both engines must fail on the same inputs
            return ("error", None)

    ours = run(lambda: Config.fromfile(path).to_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = run(lambda: mmengine_config.Config.fromfile(str(path)).to_dict())
    return ours, theirs


@pytest.mark.slow
@settings(max_examples=40)
@given(
    overlapping_configs,
    overlapping_configs,
    st.lists(st.booleans(), max_size=6),
    st.sampled_from([".py", ".yaml", ".json"]),
    st.data(),
)
def test_random_trees_resolve_like_mmengine(
    base: dict[str, Any],
    child: dict[str, Any],
    flags: list[bool],
    suffix: str,
    data: st.DataObject,
) -> None:
    child = keep_meaningful_deletes(with_deletes(child, flags), base)
    paths = dict_paths(base)
    refs = data.draw(st.lists(st.sampled_from(paths), max_size=2)) if paths else []
    edits = data.draw(st.lists(st.sampled_from(paths), max_size=2)) if paths else []
    dicts = [p for p in paths if isinstance(lookup(base, p), dict)]
    aliased = data.draw(st.lists(st.sampled_from(dicts), max_size=2)) if dicts else []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base_text = "".join(f"{k} = {v!r}\n" for k, v in base.items()) + "__hidden = 1\n"
        (root / "base.py").write_text(base_text)
        placeholders = [f"{{{{ _base_.{'.'.join(ref)} }}}}" for ref in refs]
        if suffix == ".py":
            text = "_base_ = './base.py'\n__private = 2\n"
            # mmengine's in-place edits of the inherited value (before the file's own keys).
            text += "".join(f"_base_.{'.'.join(e)} = {i + 7}\n" for i, e in enumerate(edits))
            # ... and changes through a name bound to an inherited dict.
            for i, path in enumerate(aliased):
                text += f"alias{i} = _base_.{'.'.join(path)}\nalias{i}['z{i}'] = {i + 30}\n"
            text += "".join(f"{k} = {v!r}\n" for k, v in child.items())
            text += "".join(f"ref{i} = {p}\n" for i, p in enumerate(placeholders))
            text += "".join(f"expr{i} = _base_.{'.'.join(r)}\n" for i, r in enumerate(refs))
        elif suffix == ".yaml":
            text = yaml.safe_dump({"_base_": "./base.py", **child}, sort_keys=False)
            text += "".join(f"ref{i}: {p}\n" for i, p in enumerate(placeholders))
            text += "__private: 2\nday: 2024-01-01\nmoment: 2024-01-01 10:00:00\n"
        else:
            body = json.dumps({"_base_": "./base.py", "__private": 2, **child})[:-1]
            text = body + "".join(f', "ref{i}": {p}' for i, p in enumerate(placeholders)) + "}"
        path = root / f"child{suffix}"
        path.write_text(text)
        ours, theirs = resolve_both(path)
    assert ours == theirs
