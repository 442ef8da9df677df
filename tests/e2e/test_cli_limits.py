"""Hostile configs through the real CLI: one located message, a non-zero exit, no traceback.

Each case once ran for minutes, took gigabytes or ended in a ``RecursionError``
traceback (issue 10, item 9). The subprocess timeouts are far above what the fixed
code needs (well under a second of work each) and far below what the broken code took.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

Run = Callable[..., subprocess.CompletedProcess[str]]
DATA = Path(__file__).parents[1] / "data" / "configs"

#: Run `python -m trackcfg ARGS` as a grandchild and report its exit code, output and
#: peak RSS: RUSAGE_CHILDREN of this wrapper covers that one process only.
_MEASURE = """
import json, resource, subprocess, sys
done = subprocess.run(
    [sys.executable, "-m", "trackcfg", *sys.argv[1:]], capture_output=True, text=True
)
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": done.returncode, "stderr": done.stderr, "peak_kib": peak_kib}))
"""


def assert_one_clean_error(done: subprocess.CompletedProcess[str], first_line: str) -> None:
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[0] == first_line


def test_hash_refuses_a_yaml_alias_bomb_quickly_in_bounded_memory(tmp_path: Path) -> None:
    # ~460 bytes that expand to ~387 million nodes (it once ran past 300 s at 6.8 GB).
    bomb = tmp_path / "bomb.yaml"
    bomb.write_bytes((DATA / "errors" / "alias_bomb.yaml").read_bytes())
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, "hash", str(bomb)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = json.loads(out.stdout)
    assert result["rc"] == 2 and "Traceback" not in result["stderr"]
    assert result["stderr"].startswith("bomb.yaml:7: f.0: alias *e expands the document too far")
    assert result["peak_kib"] < 500 * 1024


def test_hash_refuses_a_500_file_base_chain(tmp_path: Path, run_trackcfg: Run) -> None:
    for i in range(500):
        base = f"_base_ = './c{i - 1}.py'\n" if i else ""
        (tmp_path / f"c{i}.py").write_text(f"{base}v{i} = {i}\n")
    done = run_trackcfg("hash", "c499.py", env=None, cwd=tmp_path, timeout=120)
    assert_one_clean_error(
        done,
        "c436.py:1: _base_: _base_ chain is more than 64 files deep:"
        " c499.py -> … -> c437.py -> c436.py -> c435.py",
    )


def test_hash_refuses_a_20000_level_option_key(tmp_path: Path, run_trackcfg: Run) -> None:
    (tmp_path / "c.py").write_text("x = 1\n")
    key = ".".join(["a"] * 20_000)
    done = run_trackcfg(
        "hash", "c.py", "--cfg-options", f"{key}=1", env=None, cwd=tmp_path, timeout=120
    )
    assert_one_clean_error(
        done, "<option>: a.a.a.a.a.a.…: key path has 20,000 elements; at most 100 are supported"
    )
    assert len(done.stderr.splitlines()) == 1


def test_hash_refuses_a_20000_level_option_value(tmp_path: Path, run_trackcfg: Run) -> None:
    (tmp_path / "c.py").write_text("x = 1\n")
    value = "[" * 20_000 + "]" * 20_000
    done = run_trackcfg(
        "hash", "c.py", "--cfg-options", f"x={value}", env=None, cwd=tmp_path, timeout=120
    )
    assert_one_clean_error(
        done,
        f"<option>: x: malformed value '{'[' * 60}'…"
        " (40,000 characters): brackets nested more than 100 deep at position 100",
    )


def test_hash_refuses_a_deeply_nested_json_config(tmp_path: Path, run_trackcfg: Run) -> None:
    (tmp_path / "c.json").write_text('{"x": ' + "[" * 20_000 + "]" * 20_000 + "}")
    done = run_trackcfg("hash", "c.json", env=None, cwd=tmp_path, timeout=120)
    assert_one_clean_error(done, "c.json:1: nested more than 100 levels deep")


def test_hash_refuses_a_python_config_that_builds_a_cycle(
    tmp_path: Path, run_trackcfg: Run
) -> None:
    (tmp_path / "c.py").write_text("x = []\nx.append(x)\n")
    done = run_trackcfg("hash", "c.py", env=None, cwd=tmp_path, timeout=120)
    assert_one_clean_error(
        done, "c.py:1: x.0: the value contains itself; a config value must be a finite tree"
    )
