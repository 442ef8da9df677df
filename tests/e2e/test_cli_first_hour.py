"""What a new user meets first, through `python -m trackcfg`: typos, build errors, a busy port.

Every `run` here fails before training (the config is refused or cannot be built),
so the module stays cheap; each checks that no run is left in the store and no
work dir on disk.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from trackcfg import Config

Run = Callable[..., subprocess.CompletedProcess[str]]
MAIN = "configs/digits/cnn_sgd_10e.py"
HINT = "  hint: to add a key the config does not have, write +{}=..."


def no_runs_left(uri: str, repo: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
    assert list((repo / "work_dirs").glob("*/*")) == []  # no run's work dir either


def one_message(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert [x for x in lines if not x.startswith("  ")] == lines[:1], done.stderr
    return lines


@pytest.mark.parametrize(
    ("option", "first_line"),
    [
        (
            "optimzer.lr=0.05",
            "<option>: optimzer.lr: unknown key 'optimzer': the config has no such key; "
            "did you mean 'optimizer' or 'optimizer_config'?",
        ),
        (
            "data.sample_per_gpu=8",
            "<option>: data.sample_per_gpu: unknown key 'sample_per_gpu': data has no such "
            "key; did you mean 'samples_per_gpu' or 'workers_per_gpu'?",
        ),
        (
            "lr_config.gama=0.5",
            "<option>: lr_config.gama: unknown key 'gama': lr_config has no such key; "
            "did you mean 'gamma'?",
        ),
    ],
)
def test_an_option_typo_is_an_error_naming_the_option(
    git_repo: Path, run_trackcfg: Run, option: str, first_line: str
) -> None:
    done = run_trackcfg("hash", MAIN, "--cfg-options", option, env=None, cwd=git_repo)
    assert one_message(done) == [first_line, HINT.format(option.split("=")[0])]


def test_constructor_parameters_and_plus_keys_are_accepted(
    git_repo: Path, run_trackcfg: Run
) -> None:
    options = ["optimizer.nesterov=True", "lr_config.warmup=linear", "+note=x"]
    done = run_trackcfg("hash", MAIN, "--cfg-options", *options, env=None, cwd=git_repo)
    assert done.returncode == 0, done.stderr
    cfg = Config.fromfile(git_repo / MAIN)
    cfg.merge_from_dict({"optimizer.nesterov": True, "lr_config.warmup": "linear", "note": "x"})
    assert done.stdout.strip() == cfg.hash


@pytest.mark.parametrize(
    ("option", "first_line"),
    [
        (
            "optimizer.lrr=0.05",
            "<option>: optimizer.lrr: unknown key 'lrr': optimizer (type='SGD') has no such "
            "key and its constructor no such parameter; did you mean 'lr'?",
        ),
        (
            "runner.max_epoch=3",
            "<option>: runner.max_epoch: unknown key 'max_epoch': runner "
            "(type='EpochBasedRunner') has no such key and its constructor no such "
            "parameter; did you mean 'max_epochs'?",
        ),
    ],
)
def test_run_refuses_an_option_typo_and_creates_no_run(
    git_repo: Path,
    tracking_env: dict[str, str],
    tracking_uri: str,
    run_trackcfg: Run,
    option: str,
    first_line: str,
) -> None:
    done = run_trackcfg("run", MAIN, "--cfg-options", option, env=tracking_env, cwd=git_repo)
    assert one_message(done) == [first_line, HINT.format(option.split("=")[0])]
    no_runs_left(tracking_uri, git_repo)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "optimizer.lr=-1",
            [
                "configs/_base_/schedules/sgd_10e.py:2: optimizer: cannot build 'SGD': "
                "ValueError: Invalid learning rate: -1",
                "  set by --cfg-options: optimizer.lr=-1",
            ],
        ),
        ("optimizer.type=NoSuchOptimizer", ["<option>: optimizer: unknown type 'NoSuchOptimizer'"]),
    ],
)
def test_a_config_that_cannot_be_built_is_one_message_and_leaves_no_run(
    git_repo: Path,
    tracking_env: dict[str, str],
    tracking_uri: str,
    run_trackcfg: Run,
    option: str,
    message: list[str],
) -> None:
    done = run_trackcfg("run", MAIN, "--cfg-options", option, env=tracking_env, cwd=git_repo)
    lines = one_message(done)
    assert lines[0].startswith(message[0]) and lines[1 : len(message)] == message[1:]
    # No FAILED run (whose end, taken before the agent created it, preceded its start).
    no_runs_left(tracking_uri, git_repo)


def test_ui_on_a_busy_port_fails_before_printing_its_url(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "trackcfg", "ui", "--port", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""  # no URL that would show another server
    assert done.stderr.startswith(
        f"error: cannot serve the MLflow UI on 127.0.0.1:{port}: Address already in use\n"
    )
