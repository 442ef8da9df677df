"""Formatting for people: tables, values, runs, comparisons (plain text off a terminal)."""

from __future__ import annotations

import collections
import io

import pytest

from trackcfg.cli import render
from trackcfg.config.canonical import QualifiedName
from trackcfg.session.catalog import RunRow


def test_render_table_aligns_columns_and_strips_trailing_space() -> None:
    text = render.render_table(["id", "name"], [["1", "a"], ["long-id", "bb"]])
    assert text.splitlines() == ["id       name", "1        a", "long-id  bb"]


def test_render_table_paints_header_bold_only_with_colour() -> None:
    plain = render.render_table(["h"], [["v"]])
    painted = render.render_table(["h"], [["v"]], colour=True)
    assert "\x1b[" not in plain
    assert painted.startswith("\x1b[1mh\x1b[0m")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        ("SGD", "'SGD'"),
        ((16, 32), "(16, 32)"),
        (QualifiedName("torch.nn:ReLU", kind="class"), "torch.nn:ReLU"),
        (collections.OrderedDict, "collections:OrderedDict"),
    ],
)
def test_format_value_writes_values_as_in_a_python_config(value: object, text: str) -> None:
    assert render.format_value(value) == text


def test_use_colour_is_off_for_a_pipe_and_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert render.use_colour(io.StringIO()) is False
    assert render.use_colour(Tty()) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert render.use_colour(Tty()) is False


def _row(**changes: object) -> RunRow:
    """A finished run of `cnn@12345678` without git commit or metrics, changed by ``changes``."""
    defaults: dict[str, object] = dict(
        run_id="a" * 32,
        name="cnn@12345678",
        experiment="Default",
        status="FINISHED",
        start_time_ms=None,
        config_hash="12345678" * 4,
        git_commit=None,
        git_dirty=False,
        metrics={},
    )
    return RunRow(**{**defaults, **changes})  # type: ignore[arg-type]


def test_render_runs_lists_id_status_git_and_validation_metrics_first() -> None:
    row = _row(
        git_commit="0123456789abcdef",
        git_dirty=True,
        metrics={"train/loss": 0.25, "val/accuracy": 0.975},
        verified="diverged@137",
    )
    lines = render.render_runs([row]).splitlines()
    header = ["run", "id", "name", "status", "start", "git", "verified", "metrics"]
    assert lines[0].split() == header
    assert lines[1].split() == [
        "a" * 32,
        "cnn@12345678",
        "FINISHED",
        "-",
        "0123456789+dirty",
        "diverged@137",
        "val/accuracy=0.975",
        "train/loss=0.25",
    ]


def test_render_runs_puts_per_class_values_after_the_training_metrics() -> None:
    """Ten per-class accuracies once crowded train/loss out of the table."""
    per_class = {f"val/accuracy_{i}": 1.0 for i in range(10)}
    row = _row(metrics={**per_class, "train/loss": 0.25, "val/accuracy": 0.975})
    shown = render.render_runs([row]).splitlines()[1].split()[6:]
    assert shown[:2] == ["val/accuracy=0.975", "train/loss=0.25"]


def test_render_runs_shows_the_best_checkpoints_metric_first() -> None:
    from trackcfg.session.catalog import BestCheckpoint

    row = _row(
        run_id="b" * 32,
        metrics={"val/accuracy": 0.9},
        best=BestCheckpoint(metric="val/accuracy", value=0.975, epoch=7, iter=315),
    )
    assert render.render_runs([row]).splitlines()[1].split()[-3:] == [
        "best",
        "val/accuracy=0.975@epoch7",
        "val/accuracy=0.9",
    ]


def test_render_runs_says_so_when_nothing_matches() -> None:
    assert render.render_runs([]) == "no runs found"


def test_render_command_quotes_for_a_posix_shell() -> None:
    argv = ["trackcfg", "run", "c.py", "--cfg-options", "a='x y'"]
    assert render.render_command(argv) == "trackcfg run c.py --cfg-options 'a='\"'\"'x y'\"'\"''"


def test_progress_is_silent_off_a_terminal() -> None:
    stream = io.StringIO()
    with render.progress("working", stream=stream):
        pass
    assert stream.getvalue() == ""


def finished(**fields: object) -> str:
    """``render_run_finished`` of a FINISHED run, with ``fields`` changed."""
    from dataclasses import replace
    from pathlib import Path

    from trackcfg.session.runs import RunResult

    result = RunResult(
        run_id="b" * 32,
        run_name="cnn@12345678",
        experiment_id="1",
        config_hash="12345678" * 4,
        tracking_uri="sqlite:////tmp/mlflow.db",
        work_dir=Path("work_dirs/cnn"),
        status="FINISHED",
    )
    return render.render_run_finished(replace(result, **fields))  # type: ignore[arg-type]


def test_render_run_finished_points_to_sync_when_metrics_are_pending() -> None:
    lines = finished(metrics_pending=3).splitlines()
    assert lines[0] == f"run id:       {'b' * 32}  (cnn@12345678)"
    assert lines[-2] == "open the UI:  trackcfg ui --hash 12345678"
    assert lines[-1].endswith("deliver them with `trackcfg sync work_dirs/cnn`")


def test_render_run_finished_counts_checkpoints_left_for_sync() -> None:
    assert finished(metrics_pending=3, checkpoints_pending=2).splitlines()[-1] == (
        "pending:      3 metric(s) only in the local journal, 2 checkpoint(s) not uploaded; "
        "deliver them with `trackcfg sync work_dirs/cnn`"
    )


def test_render_run_finished_shows_the_store_without_credentials() -> None:
    text = finished(tracking_uri="https://alice:p@ss/w#rd@mlflow.example:443/?access_token=t0k")
    assert "store:        https://mlflow.example:443/\n" in text
    assert "alice" not in text and "p@ss" not in text and "t0k" not in text


def verification(**fields: object) -> str:
    """The first line of ``render_verification`` of a bitwise verification, ``fields`` changed."""
    from dataclasses import replace
    from pathlib import Path

    from trackcfg.session.reproduction import Reproduction
    from trackcfg.session.verification import CheckpointMatch, Verification

    rep = Reproduction("a" * 32, Path("/w"), "c" * 40, True, 3, "x.py", "h" * 32, ())
    result = Verification(
        run_id="a" * 32,
        verifying_run_id="b" * 32,
        verdict="bitwise",
        tag="bitwise",
        steps=200,
        metrics_compared=120,
        difference=None,
        diverged_at=None,
        checkpoints=(CheckpointMatch("epoch_1.pth", 100, True),),
        environment=(),
        config_notes=(),
        config_hash="h" * 32,
        reproduction=rep,
        kept=False,
        time_ms=1,
    )
    return render.render_verification(replace(result, **fields)).splitlines()[0]


def test_render_verification_says_where_it_diverged_and_what_differs() -> None:
    from trackcfg.session.verification import (
        CheckpointMatch,
        EnvironmentDifference,
        MetricDifference,
    )

    line = verification(
        verdict="diverged",
        diverged_at=137,
        difference=MetricDifference(137, "train/loss", 0.4127, 0.4131),
        checkpoints=(CheckpointMatch("epoch_1.pth", 100, True),),
        environment=(
            EnvironmentDifference("packages.torch", "2.13.0", "2.12.1"),
            EnvironmentDifference("determinism.torch.deterministic_algorithms", True, False),
        ),
    )
    assert line == (
        "diverged at iter 137 (train/loss 0.4127 vs 0.4131); all checkpoints up to iter 100 "
        "identical; environment: torch 2.13.0 vs 2.12.1, torch.deterministic_algorithms "
        "True vs False"
    )


@pytest.mark.parametrize(
    ("fields", "first_line"),
    [
        ({}, "bitwise identical; all 1 checkpoint(s) identical; environment: same"),
        (
            {"verdict": "partial", "steps": 50, "checkpoints": ()},
            "identical for 50 iterations (partial); no checkpoints; environment: same",
        ),
        (
            {"checkpoints": ()},
            "bitwise identical; no checkpoints; environment: same",
        ),
    ],
)
def test_render_verification_first_line(fields: dict[str, object], first_line: str) -> None:
    assert verification(**fields) == first_line


def test_render_verification_names_a_checkpoint_that_differs_before_any_metric() -> None:
    from trackcfg.session.verification import CheckpointMatch

    line = verification(
        verdict="diverged",
        diverged_at=100,
        checkpoints=(CheckpointMatch("epoch_1.pth", 100, False),),
    )
    assert line == (
        "diverged at iter 100; checkpoint epoch_1.pth (iter 100) differs; environment: same"
    )
