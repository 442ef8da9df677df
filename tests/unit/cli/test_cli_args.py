"""Argument handling of the command line, through click's CliRunner (no training, no store)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from trackcfg.cli.main import cli, expand_cfg_options
from trackcfg.errors import TrackingError
from trackcfg.session.catalog import hash_filter
from trackcfg.session.target import is_run_id


@pytest.mark.parametrize(
    ("args", "expanded"),
    [
        (["c.py"], ["c.py"]),
        (["c.py", "--cfg-options", "a=1"], ["c.py", "--cfg-options", "a=1"]),
        (
            ["c.py", "--cfg-options", "a=1", "b.c=[1,2]", "--lineage"],
            ["c.py", "--cfg-options", "a=1", "--cfg-options", "b.c=[1,2]", "--lineage"],
        ),
        # A word without '=' ends the option list: it is the positional CONFIG.
        (["--cfg-options", "a=1", "c.py"], ["--cfg-options", "a=1", "c.py"]),
        # The first word is the flag's even without '=' (the parser reports it).
        (["c.py", "--cfg-options", "lr"], ["c.py", "--cfg-options", "lr"]),
        (["c.py", "--cfg-options"], ["c.py", "--cfg-options"]),
        (["--cfg-options", "--json"], ["--cfg-options", "--json"]),
    ],
)
def test_cfg_options_takes_several_words_after_one_flag(
    args: list[str], expanded: list[str]
) -> None:
    assert expand_cfg_options(args) == expanded


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("0123456789abcdef0123456789abcdef", True),
        ("0123456789ABCDEF0123456789ABCDEF", False),
        ("0123456789abcdef", False),
        ("configs/digits/cnn_sgd_10e.py", False),
    ],
)
def test_is_run_id_accepts_32_lowercase_hex(target: str, expected: bool) -> None:
    assert is_run_id(target) is expected


def test_is_run_id_prefers_an_existing_file_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "0123456789abcdef0123456789abcdef"
    (tmp_path / name).write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    assert is_run_id(name) is False


@pytest.mark.parametrize(
    ("config_hash", "expected"),
    [
        (None, "tags.`trackcfg.config_hash` LIKE '%'"),
        ("AB12", "tags.`trackcfg.config_hash` LIKE 'ab12%'"),
        ("ab" * 16, f"tags.`trackcfg.config_hash` = '{'ab' * 16}'"),
    ],
)
def test_hash_filter_matches_full_hashes_exactly_and_short_ones_as_prefix(
    config_hash: str | None, expected: str
) -> None:
    assert hash_filter(config_hash) == expected


def test_hash_filter_refuses_non_hex_text() -> None:
    with pytest.raises(TrackingError, match="is not a config hash"):
        hash_filter("x' OR 1=1")


@pytest.mark.parametrize(
    "command",
    ["run", "resume", "sync", "show", "hash", "blame", "diff", "runs", "reproduce", "ui"],
)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output


def test_runs_refuses_hash_and_config_together() -> None:
    result = CliRunner().invoke(cli, ["runs", "--hash", "ab", "--config", "c.py"])
    assert result.exit_code == 2
    assert "give --hash or --config, not both" in result.output


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--preempt-signal", "KILL"], {}, "SIGKILL cannot be a preemption signal"),
        (["--preempt-signal", "USR9"], {}, "unknown signal 'USR9'"),
        ([], {"TRACKCFG_PREEMPT_SIGNALS": "USR1 STOP"}, "SIGSTOP cannot be a preemption signal"),
        (["--requeue-exit-code", "0"], {}, "0 is not in the range 1<=x<=255"),
        ([], {"TRACKCFG_REQUEUE_EXIT_CODE": "x"}, "'x' is not a valid integer"),
    ],
)
@pytest.mark.parametrize("command", [["run", "c.py"], ["resume", "0" * 32]])
def test_bad_preemption_options_are_usage_errors(
    command: list[str], args: list[str], env: dict[str, str], message: str
) -> None:
    done = CliRunner().invoke(cli, [*command, *args], env=env)
    assert done.exit_code == 2
    assert message in done.output
