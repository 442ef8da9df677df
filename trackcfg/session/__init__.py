"""The application layer: tracked runs and the audit features, callable from Python.

The only package that imports both `trackcfg.runner` and `trackcfg.tracking`; the
command line (`trackcfg.cli`) is thin commands over it. `runs` starts and resumes
tracked runs (`start_run`, `resume_run`; `trackcfg.run`/`trackcfg.resume` are the
same functions), `checkpoints` picks the stored checkpoint a resume starts from,
`hooks` connects the runner's logger and checkpoint hooks to the metric journal,
and `audit`, `catalog`, `reproduction` and `target` are what ``blame``/``diff``,
``runs``, ``reproduce`` and their run-or-file arguments do.
"""

from trackcfg.session.runs import RunResult, resume_run, start_run
from trackcfg.tracking.sync import SyncReport, sync

__all__ = ["RunResult", "SyncReport", "resume_run", "start_run", "sync"]
