"""`trackcfg show` / `hash` / `blame` / `diff` on config files, through `python -m trackcfg`.

No tracking store is needed: these commands read config files only (and never
import torch or mlflow, see tests/benchmarks/bench_cli.py for the timing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from trackcfg import Config
from trackcfg.config.canonical import decode_value

Run = Callable[..., subprocess.CompletedProcess[str]]
MAIN = "configs/digits/cnn_sgd_10e.py"
ADAM = "configs/digits/cnn_adam_10e.py"


def test_hash_prints_the_digest_alone(git_repo: Path, run_trackcfg: Run) -> None:
    done = run_trackcfg("hash", MAIN, env=None, cwd=git_repo)
    assert done.returncode == 0, done.stderr
    assert done.stdout == Config.fromfile(git_repo / MAIN).hash + "\n"


def test_hash_applies_cfg_options(git_repo: Path, run_trackcfg: Run) -> None:
    done = run_trackcfg(
        "hash", MAIN, "--cfg-options", "optimizer.lr=0.5", "seed=3", cwd=git_repo, env=None
    )
    cfg = Config.fromfile(git_repo / MAIN)
    cfg.merge_from_dict({"optimizer.lr": 0.5, "seed": 3})
    assert done.stdout.strip() == cfg.hash


def test_hash_lineage_lists_every_file_with_its_includer(git_repo: Path, run_trackcfg: Run) -> None:
    lines = run_trackcfg("hash", ADAM, "--lineage", cwd=git_repo, env=None).stdout.splitlines()
    assert len(lines[0]) == 32
    rows = [line.split() for line in lines[2:]]
    assert [r[1] for r in rows] == [e.path for e in Config.fromfile(git_repo / ADAM).lineage]
    assert rows[-1][1:] == [ADAM, rows[-1][2], "-"]
    assert rows[-2][3] == ADAM  # cnn_sgd_10e.py is included by the Adam config


@pytest.mark.parametrize("fmt", ["py", "yaml"])
def test_show_round_trips_the_resolved_config(git_repo: Path, run_trackcfg: Run, fmt: str) -> None:
    done = run_trackcfg("show", ADAM, "--format", fmt, cwd=git_repo, env=None)
    assert done.returncode == 0, done.stderr
    shown = Config.fromstring(done.stdout, f".{fmt}")
    assert shown.to_dict() == Config.fromfile(git_repo / ADAM).to_dict()


def test_show_json_uses_the_typed_canonical_encoding(git_repo: Path, run_trackcfg: Run) -> None:
    done = run_trackcfg("show", ADAM, "--format", "json", cwd=git_repo, env=None)
    data = json.loads(done.stdout)
    assert data["optimizer"] == {"type": "Adam", "lr": 0.002, "weight_decay": 0.0001}
    assert decode_value(data) == Config.fromfile(git_repo / ADAM).to_dict()


def test_blame_prints_value_and_history_oldest_first(git_repo: Path, run_trackcfg: Run) -> None:
    done = run_trackcfg("blame", ADAM, "optimizer.lr", cwd=git_repo, env=None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "optimizer.lr = 0.002",
        "  configs/_base_/schedules/sgd_10e.py:2  set     0.01",
        "  configs/digits/cnn_adam_10e.py:4       delete",
        "  configs/digits/cnn_adam_10e.py:4       set     0.002",
    ]


def test_blame_a_prefix_blames_the_subtree_including_deleted_keys(
    git_repo: Path, run_trackcfg: Run
) -> None:
    out = run_trackcfg("blame", ADAM, "optimizer", cwd=git_repo, env=None).stdout
    heads = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert heads[0].startswith("optimizer = ")
    assert "optimizer.momentum = <deleted>" in heads
    assert {"optimizer.type = 'Adam'", "optimizer.lr = 0.002"} <= set(heads)


def test_blame_shows_substitutions_with_their_source(git_repo: Path, run_trackcfg: Run) -> None:
    out = run_trackcfg("blame", MAIN, "model.num_classes", cwd=git_repo, env=None).stdout
    assert "substitution  10  (from configs/_base_/datasets/digits.py:4)" in out


def test_diff_of_configs_names_the_line_on_each_side(git_repo: Path, run_trackcfg: Run) -> None:
    done = run_trackcfg("diff", MAIN, ADAM, cwd=git_repo, env=None)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    i = lines.index("~ optimizer.lr: 0.01 -> 0.002")
    assert lines[i + 1 : i + 3] == [
        "    a: configs/_base_/schedules/sgd_10e.py:2",
        "    b: configs/digits/cnn_adam_10e.py:4",
    ]
    j = lines.index("- optimizer.momentum: 0.9")
    assert lines[j + 2] == "    b: deleted at configs/digits/cnn_adam_10e.py:4"


def test_diff_json_lists_every_kind_of_change(git_repo: Path, run_trackcfg: Run) -> None:
    done = run_trackcfg(
        "diff", MAIN, "configs/digits/mlp_sgd_20e.py", "--json", cwd=git_repo, env=None
    )
    doc = json.loads(done.stdout)
    kinds = {d["key_path"]: d["kind"] for d in doc["differences"]}
    assert kinds["model.type"] == "changed"
    assert kinds["model.channels"] == "removed"
    assert kinds["model.hidden_dims"] == "added"
    by_key = {d["key_path"]: d for d in doc["differences"]}
    assert by_key["runner.max_epochs"]["b"] == {
        "file": "configs/_base_/schedules/sgd_20e.py",
        "line": 4,
        "kind": "override",
    }
    assert doc["same"] is False


def test_diff_type_change_is_reported_as_such(git_repo: Path, run_trackcfg: Run) -> None:
    (git_repo / "configs/digits/float_epochs.py").write_text(
        "_base_ = './cnn_sgd_10e.py'\nseed = '0'\n"
    )
    doc = json.loads(
        run_trackcfg(
            "diff", MAIN, "configs/digits/float_epochs.py", "--json", cwd=git_repo, env=None
        ).stdout
    )
    assert [(d["key_path"], d["kind"]) for d in doc["differences"]] == [("seed", "type_changed")]


def test_diff_of_a_config_with_itself_exits_0(git_repo: Path, run_trackcfg: Run) -> None:
    done = run_trackcfg("diff", MAIN, MAIN, cwd=git_repo, env=None)
    assert (done.returncode, done.stdout.splitlines()[-1]) == (0, "no differences")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hash", "configs/missing.py"], "configs/missing.py"),
        (["hash", MAIN, "--cfg-options", "lr"], "<option>: lr: expected key=value"),
        (["show", MAIN, "--cfg-options", "a=[1,"], "<option>: a: malformed value"),
        (["blame", MAIN, "optimzer"], "did you mean 'optimizer'"),
        (["blame", MAIN, "model.nope"], "model.nope: no such key in configs/digits/cnn_sgd_10e.py"),
        (["diff", MAIN, "configs/missing.py"], "configs/missing.py"),
    ],
)
def test_config_errors_are_one_message_on_stderr_exit_2(
    git_repo: Path, run_trackcfg: Run, args: list[str], message: str
) -> None:
    done = run_trackcfg(*args, cwd=git_repo, env=None)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_debug_adds_the_traceback(git_repo: Path, run_trackcfg: Run) -> None:
    done = run_trackcfg("--debug", "hash", "configs/missing.py", cwd=git_repo, env=None)
    assert done.returncode == 2
    assert "Traceback" in done.stderr


@pytest.mark.parametrize("command", ["hash", "show", "blame"])
def test_config_commands_never_import_torch_or_mlflow(git_repo: Path, command: str) -> None:
    # custom_imports names trackcfg.zoo (torch); config tools must not import it.
    args = [MAIN, "optimizer"] if command == "blame" else [MAIN]
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "trackcfg", command, *args],
        cwd=git_repo,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "trackcfg.config.config" in imported
    heavy = ("torch", "mlflow", "sklearn", "trackcfg.zoo")
    assert not [m for m in imported if m.split(".")[0] in heavy or m.startswith(heavy)]


def test_reading_commands_never_create_a_store(tmp_path: Path, run_trackcfg: Run) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    runs = run_trackcfg("runs", cwd=tmp_path, env=env)
    blame = run_trackcfg("blame", "0123456789abcdef0123456789abcdef", "a", cwd=tmp_path, env=env)
    assert (runs.returncode, runs.stdout) == (0, "no runs found\n")
    assert blame.returncode == 2
    assert "there is no tracking store at sqlite:///" in blame.stderr
    assert list(tmp_path.iterdir()) == []


def test_colour_only_on_a_terminal(git_repo: Path) -> None:
    import pty

    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    argv = [sys.executable, "-m", "trackcfg", "blame", ADAM, "optimizer.lr"]
    proc = subprocess.run(argv, cwd=git_repo, env=env, stdout=secondary, stderr=subprocess.PIPE)
    os.close(secondary)
    with os.fdopen(primary, "rb") as terminal:
        shown = terminal.read1(65536).decode()
    piped = subprocess.run(argv, cwd=git_repo, env=env, capture_output=True, text=True)
    assert proc.returncode == piped.returncode == 0
    assert "\x1b[1moptimizer.lr\x1b[0m" in shown  # bold key path, coloured kinds
    assert "\x1b[" not in piped.stdout
