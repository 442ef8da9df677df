"""Issue 16, items 1, 3 and 4: private `__` keys, a config's own functions, YAML dates.

Plus the guard for all of issue 16: no config that uses none of its features hashes
differently (tests/data/configs/hash/golden.json holds the hashes computed before).
"""

from __future__ import annotations

import datetime
import json
import warnings
from pathlib import Path

import pytest

from trackcfg.config.canonical import encode_value
from trackcfg.config.config import Config
from trackcfg.config.location import AssignmentKind
from trackcfg.errors import ConfigWarning

DATA = Path(__file__).parents[2] / "data" / "configs"
K = AssignmentKind


def load(relative: str) -> Config:
    return Config.fromfile(DATA / relative, root=DATA)


# ------------------------------------------------------------------ private `__` keys


@pytest.mark.parametrize("name", ["child.yaml", "child.json", "child.py"])
def test_top_level_private_keys_are_dropped_in_every_format(name: str) -> None:
    assert load(f"private/{name}").to_dict() == {"keep": 2, "nested": {"__inner": 4}}


@pytest.mark.parametrize(
    ("name", "own_line"), [("child.yaml", 2), ("child.json", 3), ("child.py", 2)]
)
def test_private_keys_are_recorded_as_private(name: str, own_line: int) -> None:
    cfg = load(f"private/{name}")
    recorded = {
        str(key): [(a.kind, str(a.location), a.value) for a in assignments]
        for key, assignments in cfg.provenance_map().items()
        if str(key).startswith("__")
    }
    assert recorded == {
        "__hidden": [(K.PRIVATE, "private/base.yaml:2", 1)],
        "__own": [(K.PRIVATE, f"private/{name}:{own_line}", 3)],
    }


def test_a_private_value_the_hash_cannot_encode_is_recorded_by_its_repr(tmp_path: Path) -> None:
    (tmp_path / "c.py").write_text("__part = slice(1, 2)\nx = 1\n")
    (entry,) = Config.fromfile(tmp_path / "c.py", root=tmp_path).provenance("__part")
    assert (entry.kind, entry.value) == (K.PRIVATE, "slice(1, 2, None)")


# ------------------------------------------------------------------ functions


def test_functions_the_config_uses_are_dropped_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = load("functions/helpers.py")
    assert list(cfg) == ["lr", "model"]
    assert cfg.lr == 0.2
    # Kept inside a value, as in mmengine.
    assert cfg.model.act.__name__ == "act"


def test_a_function_the_config_never_uses_is_warned_about_at_its_line() -> None:
    with pytest.warns(ConfigWarning) as record:
        cfg = load("functions/unused.py")
    assert list(cfg) == ["lr"]
    assert [(Path(w.filename).name, w.lineno) for w in record] == [
        ("unused.py", 4),
        ("unused.py", 8),
    ]
    assert str(record[0].message) == (
        "schedule: a function defined in a config is not a config value; it is dropped, as"
        " mmengine drops it (hint: use it in a value, e.g. dict(fn=schedule), or import it"
        " from a module)"
    )


# ------------------------------------------------------------------ dates


DAY = datetime.date(2024, 1, 1)
MOMENT = datetime.datetime(2024, 3, 1, 10, 0, 0, 250, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (DAY, {"!date": "2024-01-01"}),
        (MOMENT, {"!datetime": "2024-03-01T10:00:00.000250+00:00"}),
        (datetime.datetime(2024, 3, 1), {"!datetime": "2024-03-01T00:00:00"}),
    ],
)
def test_dates_encode_typed(value: object, encoded: object) -> None:
    assert encode_value(value) == encoded


@pytest.mark.parametrize("name", ["base.yaml", "child.yaml", "child.json", "child.py"])
def test_configs_with_yaml_dates_hash(name: str) -> None:
    cfg = load(f"dates/{name}")
    assert len(cfg.hash) == 32
    assert cfg.schedule.start == datetime.datetime(2024, 3, 1, 10, 0)


def test_a_date_hashes_unlike_its_text() -> None:
    assert Config({"d": DAY}).hash != Config({"d": "2024-01-01"}).hash
    assert Config({"d": DAY}).hash != Config({"d": datetime.datetime(2024, 1, 1)}).hash


@pytest.mark.parametrize("suffix", [".py", ".json", ".yaml"])
def test_dates_dump_and_reload_to_the_same_hash(tmp_path: Path, suffix: str) -> None:
    cfg = Config({"day": DAY, "moment": MOMENT, "stops": [DAY, (DAY,)]})
    cfg.dump(tmp_path / f"dumped{suffix}")
    again = Config.fromfile(tmp_path / f"dumped{suffix}")
    assert again.to_dict() == cfg.to_dict()
    assert again.hash == cfg.hash


# ------------------------------------------------------------------ nothing else changes


GOLDEN = json.loads((DATA / "hash" / "golden.json").read_text())


@pytest.mark.parametrize("relative", sorted(GOLDEN))
def test_configs_without_the_new_features_hash_as_before(relative: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecation/old.py
        cfg = Config.fromfile(DATA / relative, root=DATA, import_custom_modules=False)
    assert cfg.hash == GOLDEN[relative]
