"""The ``trackcfg`` command line: a click group of thin commands over the library.

Each command parses its arguments, calls one library function and hands the
result to ``trackcfg.cli.render``. Heavy modules (torch, mlflow) are imported
inside the commands that need them, so ``trackcfg hash``/``show`` start fast.

``main()`` is the only place errors become text: a `TrackcfgError` prints as
one message on stderr and exits with the class's ``exit_code`` (2); the
traceback only with ``--debug``. ``run`` and ``resume`` exit with the requeue
exit code (``--requeue-exit-code``, default 75) when a preemption signal stopped
the run after its checkpoint was saved; a signal that stopped it at once exits
128 + its number. ``diff`` exits like diff(1): 0 same, 1
different, 2 trouble. ``--cfg-options`` takes several ``k=v`` words after one
flag, as in mmcv's tools (``--cfg-options a=1 b.c=2``).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from trackcfg.cli import render

if TYPE_CHECKING:
    from trackcfg.errors import PreemptedError
    from trackcfg.session.cluster import Continuation
    from trackcfg.session.runs import RunResult
    from trackcfg.session.ui_view import UiView

__all__ = ["cli", "expand_cfg_options", "main"]

_CFG_OPTIONS = "--cfg-options"


def expand_cfg_options(args: Sequence[str]) -> list[str]:
    """Rewrite ``--cfg-options a=1 b=2`` as ``--cfg-options a=1 --cfg-options b=2``.

    The first word after the flag belongs to it; later words while they contain
    ``=`` and do not start with ``-`` (argparse's ``nargs='+'`` in mmcv's tools).

    Example:
        >>> expand_cfg_options(["x.py", "--cfg-options", "a=1", "b=2", "--json"])
        ['x.py', '--cfg-options', 'a=1', '--cfg-options', 'b=2', '--json']
    """
    out: list[str] = []
    taken = -1  # words taken by the current --cfg-options; -1: not in one
    for word in args:
        if word == _CFG_OPTIONS:
            taken = 0
            continue
        # The first word always belongs to the flag (a malformed `lr` is reported by
        # the option parser, not as a stray argument); later ones need a '='.
        if taken >= 0 and not word.startswith("-") and (taken == 0 or "=" in word):
            out += [_CFG_OPTIONS, word]
            taken += 1
            continue
        if taken == 0:
            out.append(_CFG_OPTIONS)  # let click report the missing value
        taken = -1
        out.append(word)
    if taken == 0:
        out.append(_CFG_OPTIONS)
    return out


class _Command(click.Command):
    """A command whose ``--cfg-options`` takes several words (see `expand_cfg_options`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_cfg_options(args))


#: The ``--cfg-options`` parameter shared by run, show and hash.
_cfg_options = click.option(
    _CFG_OPTIONS,
    "cfg_options",
    multiple=True,
    metavar="KEY=VALUE ...",
    help="Override config values, e.g. `optimizer.lr=0.1 data.samples_per_gpu=8`.",
)


#: Exit status of a run stopped by a preemption signal once its checkpoint is saved.
#: sysexits.h's EX_TEMPFAIL ("temporary failure; the user is invited to retry"):
#: exactly "requeue me", and distinct from every other status trackcfg exits with
#: (0 done, 1 `diff` differs, 2 an error, 128+N killed by signal N without a
#: checkpoint), so a batch script, SLURM's RequeueExit or a Kubernetes
#: podFailurePolicy can requeue on it alone.
DEFAULT_REQUEUE_EXIT_CODE = 75
REQUEUE_EXIT_CODE_ENV = "TRACKCFG_REQUEUE_EXIT_CODE"


class _SignalNames(click.ParamType[tuple[str, ...]]):
    """``USR1``, ``SIGUSR2``, ``10`` or several, comma separated: a tuple of signal names."""

    name = "SIGNAL"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        from trackcfg.errors import ArgumentValueError
        from trackcfg.session.runs import parse_preempt_signals

        try:
            return tuple(s.name for s in parse_preempt_signals(str(value)))
        except ArgumentValueError as error:
            self.fail(str(error).replace("\n  hint: ", "; "), param, ctx)


def _preemption_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--requeue-exit-code``, ``--preempt-signal`` and ``--force-world-size`` (run, resume)."""
    command = click.option(
        "--preempt-signal",
        "preempt_signals",
        multiple=True,
        type=_SignalNames(),
        envvar="TRACKCFG_PREEMPT_SIGNALS",
        show_envvar=True,
        help="Also treat SIGNAL (e.g. USR1) like SIGTERM: checkpoint at the next iteration, "
        "then exit with the requeue code. Repeatable.",
    )(command)
    command = click.option(
        "--force-world-size",
        is_flag=True,
        help="Resume a checkpoint saved by another number of ranks: reproducible, no "
        "longer bit-identical (recorded on the run).",
    )(command)
    return click.option(
        "--requeue-exit-code",
        type=click.IntRange(1, 255),
        default=DEFAULT_REQUEUE_EXIT_CODE,
        envvar=REQUEUE_EXIT_CODE_ENV,
        show_envvar=True,
        show_default=True,
        help="Exit status after a preemption signal once the checkpoint is saved "
        "(SIGTERM; a second one stops at once with 143).",
    )(command)


def _use_preempt_signals(names: Sequence[tuple[str, ...]]) -> None:
    # The session reads the signals from its environment variable: set it to what the
    # command line said (torchrun's other ranks parse the same command line).
    from trackcfg.session.runs import PREEMPT_SIGNALS_ENV

    if names:
        os.environ[PREEMPT_SIGNALS_ENV] = ",".join(n for group in names for n in group)


def _exit_preempted(error: PreemptedError, code: int, run_id: str | None) -> NoReturn:
    """Say the run was preempted (and how to continue it), then exit with ``code``."""
    from trackcfg.session import cluster

    if cluster.is_rank_zero():  # one message per job
        click.echo(f"{error}; exit {code} (requeue)", err=True)
        if run_id:
            click.echo(f"continue it with: trackcfg resume {run_id}", err=True)
    raise click.exceptions.Exit(code)


def _out(text: str) -> None:
    click.echo(text)


def _colour() -> bool:
    return render.use_colour(sys.stdout)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and third-party logs.")
@click.version_option(package_name="trackcfg", prog_name="trackcfg")
def cli(debug: bool) -> None:
    """trackcfg: mmcv-style configs and runners, every run accountable on MLflow."""


# --------------------------------------------------------------------------- run


@cli.command(cls=_Command)
@click.argument("config", type=click.Path(dir_okay=False))
@_cfg_options
@click.option("--work-dir", type=click.Path(file_okay=False), help="Checkpoints and logs.")
@click.option("--experiment", help="MLflow experiment name (created when missing).")
@click.option(
    "--resume",
    "resume",
    metavar="RUN_ID|auto",
    help="Continue RUN_ID, or (auto) the newest unfinished run with this config hash.",
)
@click.option("--force", is_flag=True, help="With --resume: even if CONFIG hashes differently.")
@_preemption_options
def run(
    config: str,
    cfg_options: tuple[str, ...],
    work_dir: str | None,
    experiment: str | None,
    resume: str | None,
    force: bool,
    requeue_exit_code: int,
    preempt_signals: tuple[tuple[str, ...], ...],
    force_world_size: bool,
) -> None:
    """Train CONFIG and track the run on MLflow (prints run id and config hash).

    SIGTERM (and any --preempt-signal) saves a checkpoint at the next iteration and
    exits with the requeue exit code; `trackcfg resume RUN_ID` continues from it.
    Under torchrun/srun the whole job makes one run; a restarted job continues it.
    """
    from trackcfg import session
    from trackcfg.errors import PreemptedError
    from trackcfg.session import cluster

    _use_preempt_signals(preempt_signals)
    # Under torchrun/srun: one process group, then one run for the whole job.
    cluster.join_job(config, list(cfg_options))
    decided = _resume_target(config, cfg_options, experiment, resume)
    announce = _Announcer()
    try:
        if decided.run_id is not None:
            # CONFIG (with its options) must still hash like the run: resume_run checks.
            result = session.resume_run(
                decided.run_id,
                work_dir=_path(work_dir),
                force=force,
                config_path=config,
                options=list(cfg_options),
                on_start=announce,
                lease_wait=decided.lease_wait,
                allow_world_size_change=force_world_size,
            )
        else:
            result = session.start_run(
                config,
                options=list(cfg_options),
                work_dir=_path(work_dir),
                experiment=experiment,
                on_start=announce,
            )
    except PreemptedError as error:
        _exit_preempted(error, requeue_exit_code, announce.run_id or decided.run_id)
    if cluster.is_rank_zero():  # one report per job
        _out(render.render_run_finished(result, colour=_colour()))


class _Announcer:
    """``on_start``: print the run (before training, on stderr) and remember its id."""

    def __init__(self) -> None:
        self.run_id: str | None = None

    def __call__(self, started: RunResult) -> None:
        self.run_id = started.run_id
        _announce(started)


def _announce(started: RunResult) -> None:
    # Before training, on stderr: a run killed at any moment can be resumed by this id.
    click.echo(render.render_run_started(started, colour=render.use_colour(sys.stderr)), err=True)


def _resume_target(
    config: str, options: Sequence[str], experiment: str | None, resume: str | None
) -> Continuation:
    """The run ``run`` continues: ``--resume``'s, or the restarted job's own (None: new)."""
    from trackcfg.session import cluster

    decided = cluster.continuation(config, options, experiment, resume)
    if decided.reason and cluster.is_rank_zero():
        click.echo(decided.reason, err=True)
    return decided


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)


@cli.command()
@click.argument("run_id")
@click.option("--work-dir", type=click.Path(file_okay=False), help="Where to continue.")
@click.option("--force", is_flag=True, help="Resume even if the config hashes differently.")
@click.option(
    "--checkpoint",
    metavar="NAME",
    help="Resume from this stored checkpoint (e.g. epoch_3.pth) instead of the newest.",
)
@_preemption_options
def resume(
    run_id: str,
    work_dir: str | None,
    force: bool,
    checkpoint: str | None,
    requeue_exit_code: int,
    preempt_signals: tuple[tuple[str, ...], ...],
    force_world_size: bool,
) -> None:
    """Continue RUN_ID from its newest complete checkpoint (same MLflow run).

    When the newest stored checkpoint does not verify, the newest older one that
    does is used (with a warning). Refused while another trainer holds the run.
    A preemption signal stops it as it stops `trackcfg run`.
    """
    from trackcfg import session
    from trackcfg.errors import PreemptedError
    from trackcfg.session import cluster

    _use_preempt_signals(preempt_signals)
    cluster.join_job()  # under torchrun/srun: the backend's default (see cluster)
    try:
        result = session.resume_run(
            run_id,
            work_dir=_path(work_dir),
            force=force,
            on_start=_announce,
            checkpoint=checkpoint,
            allow_world_size_change=force_world_size,
        )
    except PreemptedError as error:
        _exit_preempted(error, requeue_exit_code, run_id)
    if cluster.is_rank_zero():
        _out(render.render_run_finished(result, colour=_colour()))


@cli.command()
@click.argument("work_dir", required=False, type=click.Path(file_okay=False))
def sync(work_dir: str | None) -> None:
    """Deliver metrics journaled in WORK_DIR that never reached MLflow.

    Without WORK_DIR: every work dir under ./work_dirs (the default location).
    A journal a killed run's tracking agent is still delivering is waited for.
    """
    from trackcfg import session

    if work_dir is not None:
        directories = [Path(work_dir)]
    else:
        base = Path("work_dirs")
        directories = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    for directory in directories:
        with render.progress(f"syncing {directory}"):
            report = session.sync(directory)
        _out(f"{directory}: {report}")
    if not directories:
        _out("no work dirs found under ./work_dirs")


# --------------------------------------------------------------------------- config tools


@cli.command(cls=_Command)
@click.argument("config", type=click.Path(dir_okay=False))
@_cfg_options
@click.option(
    "--format", "fmt", type=click.Choice(["py", "yaml", "json"]), default="py", show_default=True
)
def show(config: str, cfg_options: tuple[str, ...], fmt: str) -> None:
    """Print the resolved CONFIG."""
    from trackcfg.config import dump
    from trackcfg.session.config_keys import load_config

    click.echo(
        dump.to_text(
            load_config(config, cfg_options, import_custom_modules=False).to_dict(), f".{fmt}"
        ),
        nl=False,
    )


@cli.command("hash", cls=_Command)
@click.argument("config", type=click.Path(dir_okay=False))
@_cfg_options
@click.option("--lineage", is_flag=True, help="Also list every file that took part.")
def hash_(config: str, cfg_options: tuple[str, ...], lineage: bool) -> None:
    """Print the content hash of the resolved CONFIG (digest alone, for scripts)."""
    from trackcfg.session.config_keys import load_config

    cfg = load_config(config, cfg_options, import_custom_modules=False)
    _out(cfg.hash)
    if lineage:
        _out(render.render_lineage(cfg.lineage, colour=_colour()))


@cli.command()
@click.argument("target")
@click.argument("key")
def blame(target: str, key: str) -> None:
    """Show where KEY (or every key under it) was set in TARGET (config file or run id)."""
    from trackcfg.session import audit
    from trackcfg.session.target import load_view

    with render.progress(f"reading {target}"):
        view = load_view(target)
    _out(render.render_blame(audit.blame(view, key), colour=_colour()))


@cli.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def diff(a: str, b: str, as_json: bool) -> None:
    """Compare A and B (config files and/or run ids); exit 0 same, 1 different, 2 trouble."""
    from trackcfg.session import audit
    from trackcfg.session.target import load_view

    with render.progress("reading both sides"):
        comparison = audit.compare(load_view(a), load_view(b))
    if as_json:
        _out(render.render_comparison_json(comparison))
    else:
        _out(render.render_comparison(comparison, colour=_colour()))
    if comparison.differences:
        sys.exit(1)


# --------------------------------------------------------------------------- runs


@cli.command()
@click.option("--hash", "config_hash", metavar="H", help="Config hash (or a prefix of it).")
@click.option("--config", type=click.Path(dir_okay=False), help="Runs of this config's hash.")
@click.option("--experiment", help="Only this MLflow experiment.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--verified", is_flag=True, help="Only runs `trackcfg verify` found bitwise.")
def runs(
    config_hash: str | None,
    config: str | None,
    experiment: str | None,
    as_json: bool,
    verified: bool,
) -> None:
    """List tracked runs, newest first (id, name, status, start, git, latest metrics)."""
    from trackcfg.session.catalog import find_runs
    from trackcfg.session.config_keys import load_config

    if config_hash and config:
        raise click.UsageError("give --hash or --config, not both")
    if config:
        config_hash = load_config(config, import_custom_modules=False).hash
    rows = find_runs(config_hash, experiment, verified=verified)
    _out(render.render_runs_json(rows) if as_json else render.render_runs(rows, colour=_colour()))


@cli.command()
@click.argument("run_id")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="New or empty.")
@click.option("--run", "do_run", is_flag=True, help="Then run the printed command there.")
def reproduce(run_id: str, directory: str | None, do_run: bool) -> None:
    """Re-create RUN_ID's sources in a new git worktree and verify the config hash."""
    from trackcfg.session import reproduction
    from trackcfg.session.catalog import tracking_uri

    with render.progress(f"reproducing run {run_id}"):
        rep = reproduction.reproduce(run_id, _path(directory))
    _out(render.render_reproduction(rep, colour=_colour()))
    if do_run:
        env = dict(os.environ, MLFLOW_TRACKING_URI=_absolute_uri(tracking_uri()))
        sys.exit(reproduction.rerun(rep, env))


@cli.command()
@click.argument("run_id")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="New or empty.")
@click.option("--steps", type=click.IntRange(min=1), help="Stop after N iterations.")
@click.option("--keep", is_flag=True, help="Keep the worktree and the verifying work dir.")
def verify(run_id: str, directory: str | None, steps: int | None, keep: bool) -> None:
    """Re-run RUN_ID from its recorded sources; exit 0 bitwise, 1 diverged, 2 could not run."""
    from trackcfg.session.verification import verify_run

    def started(run: RunResult) -> None:
        click.echo(f"verifying run {run.run_id} re-trains {run_id}", err=True)

    result = verify_run(run_id, _path(directory), steps=steps, keep=keep, on_start=started)
    _out(render.render_verification(result, colour=_colour()))
    sys.exit(result.exit_code)


@cli.command()
@click.argument("run_id")
@click.option("--name", required=True, help="Registered model name (created when missing).")
@click.option("--checkpoint", metavar="NAME", help="A stored checkpoint (default: the run's best).")
def register(run_id: str, name: str, checkpoint: str | None) -> None:
    """Register RUN_ID's best checkpoint as a new version of MLflow model NAME."""
    from trackcfg.session.registration import register_run

    with render.progress(f"registering run {run_id}"):
        reg = register_run(run_id, name, checkpoint=checkpoint)
    _out(render.render_registration(reg, colour=_colour()))


def _absolute_uri(uri: str) -> str:
    # The worktree is another directory: a relative sqlite path would open a new store.
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).absolute())
    return uri


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option(
    "--hash", "config_hash", metavar="H", help="Link the runs of config hash H (a prefix works)."
)
def ui(host: str, port: int, config_hash: str | None) -> None:
    """Start the MLflow UI on the store `trackcfg run` writes to.

    Prints a link that opens the runs grouped by config hash (only those of H with
    --hash), with the hash, source, dataset and metrics as columns.
    """
    from trackcfg.session.catalog import check_port_free, hash_filter, tracking_uri
    from trackcfg.session.ui_view import save_ui_view
    from trackcfg.tracking.redaction import redact_url

    uri = tracking_uri()
    remote = uri.startswith(("http://", "https://"))
    if not remote:
        # Before anything is printed or stored: a busy port's URL would show another store.
        check_port_free(host, port)
    search = hash_filter(config_hash) if config_hash else None
    view = save_ui_view(config_hash)
    if remote:
        _out(f"the store is an MLflow server already: open {redact_url(uri)}")
        _out_view(redact_url(uri).rstrip("/"), view, search)
        return
    _out(f"MLflow UI:    http://{host}:{port}  (store {redact_url(uri)})")
    _out_view(f"http://{host}:{port}", view, search)
    argv = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port)]
    # One user on one machine: one worker (mlflow's default of 4 costs seconds and RAM).
    argv += ["--workers", "1"]
    # The store (a database URI may hold a password) goes by environment, not argv,
    # which every user can read (`ps`).
    env = dict(os.environ, MLFLOW_BACKEND_STORE_URI=_absolute_uri(uri))
    # MLflow 3.x spawns several job-runner processes for GenAI jobs (scorers); browsing
    # runs needs none of them. A user who wants them sets the variable to true.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if not click.get_current_context().find_root().params.get("debug"):
        # Access logs and import warnings are noise here; startup errors still show.
        argv += ["--uvicorn-opts", "--log-level warning"]
        env.setdefault("PYTHONWARNINGS", "ignore")
    sys.stdout.flush()
    sys.stderr.flush()
    # Become the server: Ctrl-C and SIGTERM reach it directly, and no orphan is left.
    os.execve(sys.executable, argv, env)


def _out_view(address: str, view: UiView | None, search: str | None) -> None:
    if view is not None:
        what = "runs of this config hash" if search else "runs by config hash"
        _out(f"{what}: {address}/{view.route}")
        if view.elsewhere:
            _out(
                f"  (more in experiments {', '.join(view.elsewhere)}: search there with the filter)"
            )
    if search:
        _out(f"search runs:  {search}")


# --------------------------------------------------------------------------- entry point


def _quiet_third_party() -> None:
    # Read at mlflow import time; users' explicit settings win.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import logging
    import warnings

    for name in ("mlflow", "alembic", "urllib3", "git", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for module in ("mlflow", "pydantic", "sqlalchemy", "alembic", "torch", "google", "sklearn"):
        warnings.filterwarnings("ignore", module=module)


def _show_progress_logs(debug: bool) -> None:
    # The library logs to the "trackcfg" logger and leaves handlers to applications:
    # training progress (the text logger hook's lines) goes to stderr, stdout stays
    # for results. Lines are redacted: a warning may quote a library's error, and
    # that may quote a URL with credentials.
    import logging

    from trackcfg.tracking.redaction import RedactingFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("trackcfg")
    logger.addHandler(handler)
    level = logging.DEBUG if debug else logging.INFO
    if not debug and int(os.environ.get("RANK", "0")) != 0:
        # Under torchrun/srun, progress is rank 0's to show (mmcv's rule); the other
        # ranks still say what goes wrong.
        level = logging.WARNING
    logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line (``trackcfg`` and ``python -m trackcfg``) and exit."""
    from trackcfg.errors import TrackcfgError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    # MLflow's usage telemetry thread raced ours on its own environment variable
    # (`_MLFLOW_TELEMETRY_SESSION_ID`) and failed a run's start; a user's setting wins.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if not debug:
        _quiet_third_party()
    _show_progress_logs(debug)
    try:
        status = cli.main(args=args, prog_name="trackcfg", standalone_mode=False)
    except TrackcfgError as exc:
        if debug:
            _print_traceback()
        # Located errors start like a compiler's (`file:line: key: ...`) already.
        text = str(exc) if exc.location is not None else f"error: {exc}"
        click.echo(_redacted(text), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt) as exc:
        # Ctrl-C, or a repeated SIGTERM turned into RunTerminatedError by the tracking
        # session (which has marked the run KILLED; a first SIGTERM is a preemption,
        # which `run`/`resume` turn into the requeue exit code); click wraps both in
        # Abort. Exit like a shell reports the signal: 130 for SIGINT, 143 for SIGTERM.
        cause = exc.__cause__ if isinstance(exc, click.Abort) else exc
        signum = int(getattr(cause, "signum", signal.SIGINT))
        click.echo(f"interrupted by {signal.Signals(signum).name}", err=True)
        sys.exit(128 + signum)
    except Exception:
        # Not ours (user code, a library): keep the traceback, but exit 2, not 1,
        # which `diff` uses for "different".
        _print_traceback()
        sys.exit(2)
    sys.exit(status if isinstance(status, int) else 0)


def _redacted(text: str) -> str:
    # Errors may quote a store's URI or a library's message holding one.
    from trackcfg.tracking.redaction import redact_text

    return redact_text(text)


def _print_traceback() -> None:
    import traceback

    sys.stderr.write(_redacted(traceback.format_exc()))
