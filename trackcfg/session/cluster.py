"""Tracked runs on a cluster: one MLflow run per job, continued after a restart.

**Joining the job.** `join_job` (what ``trackcfg run`` / ``resume`` call first)
initialises torch.distributed's process group when the process was started by
``torchrun`` (``WORLD_SIZE`` > 1) or, with ``TRACKCFG_LAUNCHER=slurm``, by ``srun``
alone (`trackcfg.runner.launcher`). The backend is the config's
``dist_params=dict(backend=...)``, else NCCL with CUDA, else gloo; a missing
backend is a `DistributedError`, never a silent fallback.

**One run per job.** Rank 0 owns the MLflow run, its snapshot and its tracking
agent; metrics are rank 0's runner log (mmcv's convention). What the other ranks
need, rank 0 sends them through the process group (`Handoff`): the resolved
config (its canonical bytes, re-hashed on arrival), the work dir, the run id and,
on resume, the checkpoint's bytes. Sending the checkpoint through the group,
rather than letting each node download it, means one download and one
verification against the store per job, no store credentials on any node but
rank 0's, and work dirs that may be node-local: every receiver verifies the
bytes' digest again before it loads them.

**Automatic continuation.** A restarted job continues its run without a run id.
The job's key (`job_identity`) is ``torchelastic:<rdzv-id>`` under torchrun
(``TORCHELASTIC_RUN_ID``, i.e. ``--rdzv-id``; torchrun's default ``none`` is no
key) or ``slurm:<SLURM_JOB_ID>`` under SLURM (which keeps the id across a
requeue, and takes precedence when both are set). A new run records it as the
tag ``trackcfg.job_key``. When a restarted job starts (the largest restart count
over all ranks is above 0: a replacement node's workers count 0, the surviving
nodes' count on, and rank 0 may be on either), rank 0 looks for an unfinished run
with the job's key and config hash and resumes it; with none (the job was killed
before its run existed) it starts a new one. A first start always makes a new
run, even in a SLURM allocation that ran the same config before. ``trackcfg run
CONFIG --resume auto`` continues the newest unfinished run by config hash alone.

What torchrun users need: ``--rdzv-id=<unique job id>`` (the key), and
``--max-restarts=N`` (a dead worker or node restarts the job, which continues the
run); on several nodes with the c10d rendezvous in torch 2.13,
``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` on every node (a replacement node hangs
at rendezvous without it). A run's lease (`trackcfg.tracking.agent.lease`) is
free at once when its trainer died on the same host; when rank 0's whole host is
gone, the restarted job waits for the lease's TTL (120 s) to run out
(`acquire_lease_waiting`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trackcfg.errors import DistributedError, RunLeaseError
from trackcfg.runner.dist import (
    all_gather_object,
    broadcast_bytes,
    broadcast_object,
    get_dist_info,
    share_from_rank_zero,
)
from trackcfg.session.catalog import TAG_JOB_KEY

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from trackcfg.config.config import Config
    from trackcfg.tracking.agent.lease import Lease

__all__ = [
    "LEASE_WAIT",
    "TAG_JOB_KEY",
    "Continuation",
    "Handoff",
    "JobIdentity",
    "acquire_lease_waiting",
    "check_backend",
    "config_from_handoff",
    "continuation",
    "is_rank_zero",
    "job_identity",
    "join_job",
    "receive_checkpoint",
    "receive_handoff",
    "send_failure",
    "send_handoff",
]

_logger = logging.getLogger(__name__)

#: Seconds a restarted job waits for its run's lease: a little more than a lease's
#: TTL (`trackcfg.tracking.agent.lease.LEASE_TTL`), for a predecessor whose host is gone.
LEASE_WAIT = 150.0
#: Seconds between two tries.
LEASE_RETRY = 5.0


@dataclass(frozen=True, slots=True)
class JobIdentity:
    """Which job this process belongs to, and how often it was restarted.

    Attributes:
        key: ``torchelastic:<rdzv id>``, ``slurm:<job id>``, or None (no key).
        restarts: ``TORCHELASTIC_RESTART_COUNT`` plus ``SLURM_RESTART_COUNT``.
    """

    key: str | None
    restarts: int = 0


def job_identity(environ: Mapping[str, str] | None = None) -> JobIdentity:
    """The job's key and restart count from the launcher's environment.

    Example:
        >>> job_identity({"TORCHELASTIC_RUN_ID": "exp7", "TORCHELASTIC_RESTART_COUNT": "2"})
        JobIdentity(key='torchelastic:exp7', restarts=2)
        >>> job_identity({"TORCHELASTIC_RUN_ID": "none"})
        JobIdentity(key=None, restarts=0)
        >>> job_identity({"SLURM_JOB_ID": "4242", "SLURM_RESTART_COUNT": "1",
        ...     "TORCHELASTIC_RUN_ID": "4242"})
        JobIdentity(key='slurm:4242', restarts=1)
    """
    env = os.environ if environ is None else environ
    restarts = _count(env, "TORCHELASTIC_RESTART_COUNT") + _count(env, "SLURM_RESTART_COUNT")
    slurm = env.get("SLURM_JOB_ID", "").strip()
    if slurm:
        return JobIdentity(f"slurm:{slurm}", restarts)
    elastic = env.get("TORCHELASTIC_RUN_ID", "").strip()
    if elastic and elastic != "none":  # torchrun's default --rdzv-id names no job
        return JobIdentity(f"torchelastic:{elastic}", restarts)
    return JobIdentity(None, restarts)


def join_job(
    config_path: str | Path | Config | None = None,
    options: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> int:
    """Initialise the process group when the job has several processes; its world size.

    A no-op for one process and for a group that already exists. The backend comes
    from ``config_path``'s (a file or a loaded `Config`) ``dist_params.backend``
    (every rank reads its own copy of the config file: the code is on every node);
    without a config (``trackcfg
    resume RUN_ID``) NCCL with CUDA, else gloo.

    Raises:
        DistributedError: the launcher's variables are missing, or the backend
            cannot be used (`trackcfg.runner.launcher.resolve_backend`).
        ConfigError: ``config_path`` does not load.
    """
    from trackcfg.runner.launcher import detect_launcher, init_dist

    env = os.environ if environ is None else environ
    launcher = detect_launcher(env)
    if launcher == "none":
        return 1
    import torch.distributed as torch_dist

    if torch_dist.is_available() and torch_dist.is_initialized():
        return get_dist_info()[1]
    backend: str | None = None
    if isinstance(config_path, (str, Path)):
        from trackcfg.session.config_keys import load_config

        loaded = load_config(config_path, options, import_custom_modules=False)
        backend = _backend_of(loaded.to_dict())
    elif config_path is not None:
        backend = _backend_of(config_path.to_dict())
    init_dist(launcher, backend)
    return get_dist_info()[1]


def world_size() -> int:
    """This job's world size: the process group's, else ``WORLD_SIZE`` (default 1)."""
    if get_dist_info()[1] > 1:
        return get_dist_info()[1]
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_rank_zero() -> bool:
    """True unless this process is a rank other than 0 of a process group (or of torchrun)."""
    if get_dist_info()[1] > 1:
        return get_dist_info()[0] == 0
    return int(os.environ.get("RANK", "0")) == 0


@dataclass(frozen=True, slots=True)
class Continuation:
    """What ``trackcfg run`` continues: a run id (None: a new run), and why, for people.

    ``lease_wait``: how long to wait for the run's lease (`acquire_lease_waiting`):
    `LEASE_WAIT` for a restarted job, whose dead predecessor may still hold it.
    """

    run_id: str | None
    reason: str
    lease_wait: float = 0.0


def continuation(
    config_path: str | Path, options: Sequence[str], experiment: str | None, resume: str | None
) -> Continuation:
    """Decide on rank 0, for every rank, which run ``trackcfg run CONFIG`` continues.

    ``resume`` is ``--resume``: a run id, ``auto`` (the newest unfinished run with
    this config hash), or None: a restarted job with a key (`job_identity`)
    continues its own unfinished run with this config hash, if there is one. Every
    rank must call it (the restart counts of all ranks are gathered).

    Raises:
        DistributedError: on ranks other than 0, when rank 0 failed to decide.
        TrackingError: on rank 0, the store cannot be searched.
    """

    job = job_identity()
    restarts = max(int(str(count)) for count in all_gather_object(job.restarts))

    def decide() -> Continuation:
        from trackcfg.session.catalog import find_resumable
        from trackcfg.session.config_keys import load_config

        if resume is not None and resume != "auto":
            return Continuation(resume, f"resuming run {resume}")
        if resume is None and (job.key is None or restarts == 0):
            return Continuation(None, "")
        config_hash = load_config(config_path, options, import_custom_modules=False).hash
        if resume == "auto":
            found = find_resumable(config_hash, experiment)
            if found is None:
                return Continuation(
                    None, "no unfinished run with this config hash: starting a new run"
                )
            return Continuation(found, f"resuming run {found}")
        found = find_resumable(config_hash, experiment, job_key=job.key)
        if found is None:
            return Continuation(
                None, f"job {job.key} (restart {restarts}) has no run: starting one"
            )
        return Continuation(
            found, f"job {job.key} (restart {restarts}): continuing its run {found}", LEASE_WAIT
        )

    return share_from_rank_zero(decide)


@dataclass(frozen=True, slots=True)
class Handoff:
    """What rank 0 sends the other ranks before training.

    Attributes:
        canonical: The resolved config's canonical bytes (what its hash covers).
        config_hash: Their hash, checked on arrival.
        filename: The config's file name (for logs and meta).
        work_dir: Rank 0's work dir; every rank uses the same path on its own node.
        run_id: The run (empty for a new run: it is created when training starts).
        run_name: The run's name.
        experiment_id: The run's experiment (empty for a new run).
        tracking_uri: The store, redacted.
        checkpoint: The name of the checkpoint to resume from (its bytes follow), or None.
        allow_world_size_change: The resume was forced past a world-size change.
    """

    canonical: bytes
    config_hash: str
    filename: str
    work_dir: str
    run_id: str = ""
    run_name: str = ""
    experiment_id: str = ""
    tracking_uri: str = ""
    checkpoint: str | None = None
    allow_world_size_change: bool = False


def send_handoff(handoff: Handoff, checkpoint: Path | None = None) -> None:
    """On rank 0: send ``handoff`` and the checkpoint's bytes (a no-op for one process)."""
    if get_dist_info()[1] == 1:
        return
    broadcast_object(("ok", handoff))
    if checkpoint is not None:
        broadcast_bytes(checkpoint.read_bytes())


def send_failure(error: BaseException) -> None:
    """On rank 0: tell the waiting ranks that no handoff comes (they raise)."""
    if get_dist_info()[1] == 1:
        return
    try:
        broadcast_object(("error", f"{type(error).__name__}: {error}"))
    except Exception as failed:  # the group itself is broken: the launcher ends the job
        _logger.warning("trackcfg: cannot tell the other ranks that rank 0 failed: %s", failed)


def receive_handoff() -> Handoff:
    """On ranks other than 0: what rank 0 sent with `send_handoff`.

    Raises:
        DistributedError: rank 0 failed before it could send it.
    """
    received: tuple[str, object] = broadcast_object(("", None))
    kind, value = received
    if kind == "error":
        raise DistributedError(f"rank 0 failed: {value}")
    if kind != "ok" or not isinstance(value, Handoff):
        raise DistributedError(f"rank 0 sent {kind!r} where a handoff was expected")
    return value


def receive_checkpoint(handoff: Handoff, directory: Path) -> Path | None:
    """On ranks other than 0: receive the handoff's checkpoint into ``directory``, verified.

    Raises:
        CheckpointCorruptError: the received bytes do not match their digest.
    """
    from trackcfg.runner.checkpoint import verify_checkpoint_file

    if handoff.checkpoint is None:
        return None
    data = broadcast_bytes(None)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / Path(handoff.checkpoint).name
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(temp, path)
    verify_checkpoint_file(path)
    return path


def config_from_handoff(handoff: Handoff, resume_from: Path | None = None) -> Config:
    """The config rank 0 resolved, rebuilt here (custom imports imported), hash checked.

    ``resume_from`` becomes the config's ``resume_from`` (the received checkpoint):
    the config's hash is checked before, and only rank 0 writes checkpoints (whose
    meta records the hash).

    Raises:
        DistributedError: the rebuilt config hashes differently from rank 0's.
        ConfigImportError: a module of ``custom_imports`` fails to import here.
    """
    from trackcfg.config import imports
    from trackcfg.config.canonical import from_canonical_bytes
    from trackcfg.config.config import Config

    plain = from_canonical_bytes(handoff.canonical)
    if imports.CUSTOM_IMPORTS_KEY in plain:
        imports.import_custom_modules(plain[imports.CUSTOM_IMPORTS_KEY])
    data = from_canonical_bytes(handoff.canonical, resolve=True)
    rebuilt = Config(data, filename=handoff.filename).hash
    if rebuilt != handoff.config_hash:
        raise DistributedError(
            f"rank {get_dist_info()[0]}: rank 0's config rebuilt here hashes to {rebuilt}, "
            f"not {handoff.config_hash}",
            hint="every node needs the same trackcfg and the same custom_imports modules",
        )
    if resume_from is not None:
        data["resume_from"] = str(resume_from)
    return Config(data, filename=handoff.filename)


def check_backend(cfg: Config) -> None:
    """Refuse a config whose ``dist_params.backend`` is not the group's.

    ``trackcfg resume RUN_ID`` initialises the group before the config is known
    (it comes from the store), with the default backend.

    Raises:
        DistributedError: they differ.
    """
    import torch.distributed as torch_dist

    wanted = _backend_of(cfg.to_dict())
    if wanted is None or get_dist_info()[1] == 1:
        return
    actual = str(torch_dist.get_backend())
    if wanted != actual:
        raise DistributedError(
            f"the run's config asks for dist_params.backend={wanted!r}, the process group "
            f"uses {actual!r}",
            hint="resume with the config: `trackcfg run CONFIG --resume RUN_ID`",
        )


def acquire_lease_waiting(client: MlflowClient, run_id: str, wait: float) -> Lease:
    """Take the run's lease for this process, retrying for up to ``wait`` seconds.

    A restarted job's run may still be leased by its predecessor on a host that is
    gone (nobody there sees that its trainer died): the lease frees once its TTL
    ran out. Every try makes a fresh claim (a claim's age counts against it).

    Raises:
        RunLeaseError: another trainer still holds it after ``wait`` seconds.
    """
    from trackcfg.tracking.agent.lease import acquire_lease, new_lease

    until = time.monotonic() + wait
    while True:
        try:
            return acquire_lease(client, run_id, new_lease())
        except RunLeaseError as error:
            left = until - time.monotonic()
            if left <= 0:
                raise
            _logger.warning("trackcfg: waiting for the run's lease: %s", error)
            time.sleep(min(LEASE_RETRY, left))


def _backend_of(data: Mapping[str, object]) -> str | None:
    params = data.get("dist_params")
    if isinstance(params, Mapping) and params.get("backend") is not None:
        return str(params["backend"])
    return None


def _count(env: Mapping[str, str], name: str) -> int:
    text = env.get(name, "").strip()
    return int(text) if text.isdigit() else 0
