"""Everything the command line prints for people: tables, blame, diffs, run summaries.

Functions here take plain records (from ``trackcfg.session.audit``, ``catalog``,
``reproduction``) and return strings; they never compute answers. Colour is
added only when the output stream is a terminal and ``NO_COLOR`` is unset, so
piped output and files stay plain. Progress messages go to stderr, and only on a
terminal, so scripts reading stdout (``trackcfg hash``) see nothing extra.
"""

from __future__ import annotations

import enum
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from trackcfg.config.config import LineageEntry
    from trackcfg.config.location import Assignment
    from trackcfg.session.audit import BlameReport, Comparison, KeyDifference, SideLocation
    from trackcfg.session.catalog import RunRow
    from trackcfg.session.registration import Registration
    from trackcfg.session.reproduction import Reproduction
    from trackcfg.session.runs import RunResult
    from trackcfg.session.verification import Verification

__all__ = [
    "Colour",
    "format_value",
    "progress",
    "render_blame",
    "render_command",
    "render_comparison",
    "render_comparison_json",
    "render_lineage",
    "render_registration",
    "render_reproduction",
    "render_run_finished",
    "render_runs",
    "render_runs_json",
    "render_table",
    "render_verification",
    "use_colour",
]


class Colour(enum.Enum):
    """ANSI styles used by the renderers."""

    BOLD = "1"
    DIM = "2"
    RED = "31"
    GREEN = "32"
    YELLOW = "33"
    BLUE = "34"
    CYAN = "36"


def use_colour(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default stdout) is a terminal and ``NO_COLOR`` is unset."""
    stream = sys.stdout if stream is None else stream
    return not os.environ.get("NO_COLOR") and _is_terminal(stream)


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _paint(text: str, colour: Colour | None, enabled: bool) -> str:
    if not enabled or colour is None or not text:
        return text
    return f"\x1b[{colour.value}m{text}\x1b[0m"


def format_value(value: object) -> str:
    """A value as written in a Python config (``repr``); classes as ``module:qualname``.

    Classes and functions print like the canonical form names them, so a value read
    from a config file and the same value read from a run's snapshot look alike.
    """
    if isinstance(value, type) or callable(value):
        module = getattr(value, "__module__", "")
        name = getattr(value, "__qualname__", getattr(value, "__name__", repr(value)))
        return f"{module}:{name}" if module else str(name)
    from trackcfg.config.canonical import QualifiedName

    # A class/function read back from canonical bytes (never imported).
    if isinstance(value, QualifiedName):
        return str(value)
    return repr(value)


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    colour: bool = False,
    column_colours: Mapping[int, Colour] | None = None,
) -> str:
    """Left-aligned columns separated by two spaces; the header is bold when colour is on.

    Example:
        >>> print(render_table(["a", "bb"], [["xyz", "1"]]))
        a    bb
        xyz  1
    """
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    column_colours = column_colours or {}

    def line(cells: Sequence[str], header: bool) -> str:
        parts = []
        for i, cell in enumerate(cells):
            pad = cell.ljust(widths[i]) if i < len(cells) - 1 else cell
            style = Colour.BOLD if header else column_colours.get(i)
            parts.append(_paint(pad, style, colour))
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers, True), *(line(r, False) for r in rows)])


def _assignment_row(a: Assignment) -> list[str]:
    kind = a.kind.value
    value = "" if kind == "delete" else format_value(a.value)
    if a.source is not None:
        value += f"  (from {a.source})"
    return [str(a.location), kind, value]


_KIND_COLOURS = {
    "set": Colour.GREEN,
    "override": Colour.YELLOW,
    "delete": Colour.RED,
    "substitution": Colour.CYAN,
    "option": Colour.BLUE,
}


def render_blame(report: BlameReport, *, colour: bool = False) -> str:
    """The resolved value, then each key path's history (file:line, kind, value), oldest first."""
    out = [f"{_paint(report.key_path_text, Colour.BOLD, colour)} = {_value_text(report.value)}"]
    for entry in report.entries:
        if len(report.entries) > 1 or entry.key_path_text != report.key_path_text:
            out.append("")
            out.append(
                f"{_paint(entry.key_path_text, Colour.BOLD, colour)} = {_value_text(entry.value)}"
            )
        rows = [_assignment_row(a) for a in entry.assignments]
        widths = [max((len(r[i]) for r in rows), default=0) for i in range(2)]
        for r, a in zip(rows, entry.assignments, strict=True):
            loc = r[0].ljust(widths[0])
            kind = _paint(r[1].ljust(widths[1]), _KIND_COLOURS.get(a.kind.value), colour)
            out.append(f"  {loc}  {kind}  {r[2]}".rstrip())
    return "\n".join(out)


def _value_text(value: object) -> str:
    from trackcfg.session.audit import MISSING

    return "<deleted>" if value is MISSING else format_value(value)


def _side_text(side: SideLocation | None) -> str:
    if side is None:
        return "-"
    text = str(side.location)
    if side.kind == "delete":
        text = f"deleted at {text}"
    return text


_CHANGE_MARKS = {"added": "+", "removed": "-", "changed": "~", "type_changed": "!"}
_CHANGE_COLOURS = {
    "added": Colour.GREEN,
    "removed": Colour.RED,
    "changed": Colour.YELLOW,
    "type_changed": Colour.YELLOW,
}


def _difference_head(d: KeyDifference) -> str:
    if d.kind == "added":
        return f"{d.key_path_text}: {format_value(d.new)}"
    if d.kind == "removed":
        return f"{d.key_path_text}: {format_value(d.old)}"
    head = f"{d.key_path_text}: {format_value(d.old)} -> {format_value(d.new)}"
    if d.kind == "type_changed":
        head += f"  (type {type(d.old).__name__} -> {type(d.new).__name__})"
    return head


def render_comparison(comparison: Comparison, *, colour: bool = False) -> str:
    """Every differing key with, per side, the file:line that set it (diff(1)-like marks)."""
    a, b = comparison.a, comparison.b
    out = [
        _paint(f"--- a: {a.label}  ({a.config_hash})", Colour.BOLD, colour),
        _paint(f"+++ b: {b.label}  ({b.config_hash})", Colour.BOLD, colour),
    ]
    if not comparison.differences:
        out.append("no differences")
    for d in comparison.differences:
        mark = _CHANGE_MARKS[d.kind]
        out.append(_paint(f"{mark} {_difference_head(d)}", _CHANGE_COLOURS[d.kind], colour))
        out.append(f"    a: {_side_text(d.a)}")
        out.append(f"    b: {_side_text(d.b)}")
    if comparison.files:
        out.append("lineage files that differ:")
        rows = [
            [f.path, (f.a_digest or "-")[:12], "->", (f.b_digest or "-")[:12]]
            for f in comparison.files
        ]
        out.extend("  " + line for line in render_table(["", "a", "", "b"], rows).splitlines()[1:])
    return "\n".join(out)


def _side_json(side: SideLocation | None) -> dict[str, object] | None:
    if side is None:
        return None
    return {"file": side.location.file, "line": side.location.line, "kind": side.kind}


def render_comparison_json(comparison: Comparison) -> str:
    """The comparison as JSON (values in trackcfg's typed canonical encoding)."""
    from trackcfg.config.canonical import encode_value

    def target(view_label: str, config_hash: str) -> dict[str, object]:
        return {"label": view_label, "config_hash": config_hash}

    doc = {
        "a": target(comparison.a.label, comparison.a.config_hash),
        "b": target(comparison.b.label, comparison.b.config_hash),
        "same": not comparison.differences,
        "differences": [
            {
                "key_path": d.key_path_text,
                "kind": d.kind,
                "old": None if d.kind == "added" else encode_value(d.old),
                "new": None if d.kind == "removed" else encode_value(d.new),
                "a": _side_json(d.a),
                "b": _side_json(d.b),
            }
            for d in comparison.differences
        ],
        "files": [
            {"path": f.path, "a_digest": f.a_digest, "b_digest": f.b_digest}
            for f in comparison.files
        ],
    }
    return json.dumps(doc, indent=2, sort_keys=False)


def render_lineage(lineage: Sequence[LineageEntry], *, colour: bool = False) -> str:
    """The files that took part in a config, in load order, with their digests."""
    rows = [
        [str(e.order), e.path, e.digest, e.included_by if e.included_by is not None else "-"]
        for e in lineage
    ]
    return render_table(["#", "file", "digest", "included by"], rows, colour=colour)


def _metric_rank(key: str) -> tuple[int, str]:
    # Validation first (how good was it), then training (loss and the like), then the
    # rest (learning_rate, momentum); timings last, they say little about the run.
    if key.endswith("time"):
        return 3, key
    if key.rpartition("_")[2].isdigit():  # per-class values (val/accuracy_3): after the rest
        return 2, key
    if key.startswith("val"):
        return 0, key
    return (1 if key.startswith("train/") else 2), key


def _short_metrics(metrics: Mapping[str, float], limit: int = 5) -> str:
    keys = sorted(metrics, key=_metric_rank)[:limit]
    return " ".join(f"{k}={metrics[k]:.4g}" for k in keys)


def render_runs(rows: Sequence[RunRow], *, colour: bool = False) -> str:
    """Runs as a table: run id, name, status, start, git commit/dirty, latest metrics."""
    if not rows:
        return "no runs found"
    table_rows = []
    for r in rows:
        start = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.start_time_ms / 1000))
            if r.start_time_ms
            else "-"
        )
        git = (r.git_commit[:10] if r.git_commit else "-") + ("+dirty" if r.git_dirty else "")
        metrics = _short_metrics(r.metrics)
        if r.best is not None:  # the best checkpoint's metric, where it was reached
            value = "?" if r.best.value is None else f"{r.best.value:.4g}"
            metrics = f"best {r.best.metric}={value}@epoch{r.best.epoch} {metrics}"
        table_rows.append([r.run_id, r.name, r.status, start, git, r.verified or "-", metrics])
    return render_table(
        ["run id", "name", "status", "start", "git", "verified", "metrics"],
        table_rows,
        colour=colour,
        column_colours={0: Colour.CYAN},
    )


def render_runs_json(rows: Sequence[RunRow]) -> str:
    """Runs as a JSON list of objects (for scripts), newest first."""
    return json.dumps(
        [
            {
                "run_id": r.run_id,
                "name": r.name,
                "experiment": r.experiment,
                "status": r.status,
                "start_time_ms": r.start_time_ms,
                "config_hash": r.config_hash,
                "git_commit": r.git_commit,
                "git_dirty": r.git_dirty,
                "metrics": dict(r.metrics),
                "verified": r.verified,
                "verifies": r.verifies,
                "best": None
                if r.best is None
                else {
                    "metric": r.best.metric,
                    "value": r.best.value,
                    "epoch": r.best.epoch,
                    "iter": r.best.iter,
                },
            }
            for r in rows
        ],
        indent=2,
    )


def render_command(argv: Sequence[str]) -> str:
    """A command line that a POSIX shell reads back as ``argv``."""
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


def render_run_started(result: RunResult, *, colour: bool = False) -> str:
    """What ``trackcfg run``/``resume`` print (on stderr) before training: how to resume it."""
    return "\n".join(
        [
            f"run id:       {_paint(result.run_id, Colour.CYAN, colour)}  ({result.run_name})",
            f"config hash:  {result.config_hash}",
            f"work dir:     {result.work_dir}",
            f"if it stops:  trackcfg resume {result.run_id}",
        ]
    )


def render_run_finished(result: RunResult, *, colour: bool = False) -> str:
    """What ``trackcfg run``/``resume`` print: run id, hash, status and how to look at the run.

    The store is shown redacted, whoever built ``result``: no credential reaches a
    terminal or a CI log.
    """
    from trackcfg.tracking.redaction import redact_url

    status_colour = Colour.GREEN if result.status == "FINISHED" else Colour.YELLOW
    lines = [
        f"run id:       {_paint(result.run_id, Colour.CYAN, colour)}  ({result.run_name})",
        f"config hash:  {result.config_hash}",
        f"status:       {_paint(result.status, status_colour, colour)}",
        f"store:        {redact_url(result.tracking_uri)}",
        f"open the UI:  trackcfg ui --hash {result.config_hash[:8]}",
    ]
    waiting = [
        f"{count} {what}"
        for count, what in (
            (result.metrics_pending, "metric(s) only in the local journal"),
            (result.checkpoints_pending, "checkpoint(s) not uploaded"),
        )
        if count
    ]
    if waiting:
        lines.append(
            f"pending:      {', '.join(waiting)}; "
            f"deliver them with `trackcfg sync {result.work_dir}`"
        )
    return "\n".join(lines)


def render_reproduction(rep: Reproduction, *, colour: bool = False) -> str:
    """What ``trackcfg reproduce`` did and the command that re-runs the run."""
    ok = _paint("matches", Colour.GREEN, colour)
    lines = [
        f"worktree:     {rep.directory}",
        f"commit:       {rep.commit}" + ("  (+ recorded patch)" if rep.patch_applied else ""),
        f"lineage:      {rep.restored_files} file(s) restored from the snapshot",
        f"config hash:  {rep.config_hash} ({ok} the run's tag)",
        "re-run with:",
        f"  cd {render_command([str(rep.directory)])} && "
        + " ".join(f"{k}={render_command([v])}" for k, v in rep.environment.items())
        + (" " if rep.environment else "")
        + render_command(rep.command),
    ]
    return "\n".join(lines)


def render_registration(reg: Registration, *, colour: bool = False) -> str:
    """What ``trackcfg register`` registered, and the URI that loads it."""
    c = reg.checkpoint
    chosen = f"best {c.best_metric}" if c.best_metric else "chosen"
    where = ", ".join(
        f"{k} {v}" for k, v in (("epoch", c.epoch), ("iter", c.iter)) if v is not None
    )
    lines = [
        f"registered:   {_paint(reg.name, Colour.GREEN, colour)} version {reg.version}",
        f"checkpoint:   {c.artifact} ({chosen}{', ' + where if where else ''})",
        f"run:          {reg.run_id} (config hash {reg.config_hash})",
        f"model:        models:/{reg.model_id} (the run's logged model)",
        f"load with:    mlflow.pytorch.load_model({reg.model_uri!r})",
    ]
    return "\n".join(lines)


def _env_key(key: str) -> str:
    # "packages.torch" reads as "torch"; "determinism.cudnn.benchmark" as "cudnn.benchmark".
    for prefix in ("packages.", "determinism."):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _metric_text(value: float | None) -> str:
    # repr: the shortest text that reads back as this float, so two different
    # values never print alike.
    return "(not logged)" if value is None else repr(value)


def _checkpoint_summary(v: Verification) -> str:
    limit = v.diverged_at
    before = [c for c in v.checkpoints if limit is None or c.iter < limit]
    differing = v.first_checkpoint_difference
    if differing is not None and (limit is None or differing.iter <= limit):
        return f"checkpoint {differing.name} (iter {differing.iter}) differs"
    if not before:
        return "no checkpoint before it" if limit is not None else "no checkpoints"
    unknown = sum(c.same is None for c in before)
    if unknown:
        return f"{unknown} of {len(before)} checkpoint(s) not recorded by the original"
    if limit is None:
        return f"all {len(before)} checkpoint(s) identical"
    return f"all checkpoints up to iter {before[-1].iter} identical"


def render_verification(v: Verification, *, colour: bool = False) -> str:
    """What ``trackcfg verify`` prints: the verdict in one line, then what it rests on.

    The first line reads like the issue's example: ``diverged at iter 137 (train/loss
    0.4127 vs 0.4131); all checkpoints up to iter 100 identical; environment: torch
    2.13.0 vs 2.12.1``; values are the original's first, this run's second.
    """
    parts: list[str] = []
    if v.verdict == "diverged":
        head = f"diverged at iter {v.diverged_at}"
        d = v.difference
        if d is not None and d.step == v.diverged_at:
            head += f" ({d.key} {_metric_text(d.original)} vs {_metric_text(d.verifying)})"
        parts.append(_paint(head, Colour.RED, colour))
    elif v.verdict == "partial":
        parts.append(_paint(f"identical for {v.steps} iterations (partial)", Colour.YELLOW, colour))
    else:
        parts.append(_paint("bitwise identical", Colour.GREEN, colour))
    parts.append(_checkpoint_summary(v))
    if v.environment:
        shown = ", ".join(
            f"{_env_key(e.key)} {e.original} vs {e.verifying}" for e in v.environment[:3]
        )
        more = f" (+{len(v.environment) - 3} more)" if len(v.environment) > 3 else ""
        parts.append(f"environment: {shown}{more}")
    else:
        parts.append("environment: same")
    lines = ["; ".join(parts)]
    lines += [
        f"run:            {_paint(v.run_id, Colour.CYAN, colour)}  (config hash {v.config_hash})",
        f"verifying run:  {v.verifying_run_id}",
        f"compared:       {v.steps} iteration(s), {v.metrics_compared} logged value(s), "
        f"{len(v.checkpoints)} checkpoint(s)",
        f"sources:        commit {v.reproduction.commit[:12]}"
        + (" + recorded patch" if v.reproduction.patch_applied else "")
        + (f", kept in {v.reproduction.directory}" if v.kept else ""),
        "config:         identical (hash checked)",
    ]
    lines += [f"  note: {note}" for note in v.config_notes]
    if v.environment:
        lines.append("environment (original vs now):")
        lines += [f"  {e.key}: {e.original!r} vs {e.verifying!r}" for e in v.environment]
    lines.append(f"stored:         trackcfg.verified={v.tag} on run {v.run_id}")
    return "\n".join(lines)


@contextmanager
def progress(message: str, stream: TextIO | None = None) -> Iterator[None]:
    """Show ``message…`` while a block runs, then its duration (only on a terminal).

    Example:
        >>> with progress("downloading snapshot"):
        ...     pass
    """
    stream = sys.stderr if stream is None else stream
    if not _is_terminal(stream):
        yield
        return
    start = time.perf_counter()
    stream.write(f"{message}…")
    stream.flush()
    try:
        yield
    except BaseException:
        stream.write(" failed\n")
        raise
    stream.write(f" done ({time.perf_counter() - start:.1f} s)\n")
    stream.flush()
