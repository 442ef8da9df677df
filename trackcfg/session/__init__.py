"""The application layer: tracked runs and the audit features, callable from Python.

The only package that imports both `trackcfg.runner` and `trackcfg.tracking`; the
command line (`trackcfg.cli`) is thin commands over it. `runs` starts and resumes
tracked runs (`start_run`, `resume_run`; `trackcfg.run`/`trackcfg.resume` are the
same functions), `checkpoints` picks the stored checkpoint a resume starts from,
`hooks` connects the runner's logger and checkpoint hooks to the metric journal,
`verification` re-runs a run and compares it bit for bit (``trackcfg.verify``),
`registration` registers a run's best checkpoint as an MLflow model (``trackcfg.register``),
and `audit`, `catalog`, `reproduction` and `target` are what ``blame``/``diff``,
``runs``, ``reproduce`` and their run-or-file arguments do.

Names are re-exported lazily: the audit commands import `audit` and `target` from
here and must not import torch (which `runs` does, through the runner).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = [
    "Registration",
    "RunResult",
    "SyncReport",
    "Verification",
    "register_run",
    "resume_run",
    "start_run",
    "sync",
    "verify_run",
]

_EXPORTS = {
    "Registration": "trackcfg.session.registration",
    "register_run": "trackcfg.session.registration",
    "RunResult": "trackcfg.session.runs",
    "resume_run": "trackcfg.session.runs",
    "start_run": "trackcfg.session.runs",
    "SyncReport": "trackcfg.tracking.sync",
    "sync": "trackcfg.tracking.sync",
    "Verification": "trackcfg.session.verification",
    "verify_run": "trackcfg.session.verification",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trackcfg.session' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from trackcfg.session.registration import Registration, register_run
    from trackcfg.session.runs import RunResult, resume_run, start_run
    from trackcfg.session.verification import Verification, verify_run
    from trackcfg.tracking.sync import SyncReport, sync
