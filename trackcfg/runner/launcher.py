"""Joining a distributed job: mmcv/mmengine's launchers ``none``, ``pytorch`` and ``slurm``.

`init_dist` initialises torch.distributed's default process group the way the
job was launched, so `trackcfg.runner.train.train` (which expects a group when the
world size is above 1) and the session's rank-0 tracking find one:

- ``pytorch``: ``torchrun`` (torch elastic) set ``RANK``, ``LOCAL_RANK``,
  ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; the group is made from them
  (``env://``).
- ``slurm``: ``srun`` started one task per rank without torchrun; the ranks come
  from ``SLURM_PROCID`` / ``SLURM_LOCALID`` / ``SLURM_NTASKS`` and the master is
  the first host of ``SLURM_NODELIST`` (``MASTER_PORT`` when set, else 29500),
  as mmcv's ``_init_dist_slurm`` does (without calling ``scontrol``).
- ``none``: one process; nothing is initialised.

`detect_launcher` picks one from the environment: ``TRACKCFG_LAUNCHER`` when set
(``slurm`` must be asked for: SLURM variables are also set under torchrun inside
a SLURM allocation), else ``pytorch`` when ``WORLD_SIZE`` is above 1, else ``none``.

The backend is the config's ``dist_params=dict(backend=...)`` when given, else
``nccl`` when CUDA is available, else ``gloo``. Nothing falls back silently: NCCL
asked for without CUDA, or a backend this torch build lacks, is a
`DistributedError`. Under NCCL each process first binds its GPU
(``torch.cuda.set_device(LOCAL_RANK)``). The NCCL path is written but untested
here: this project's CI machines have no GPU; the gloo path is what the e2e tests
run (``tests/e2e/test_cluster.py``).

Settings torchrun users need (see also ``trackcfg.session.cluster``):
``--max-restarts=N`` so that a failed worker or node restarts the job (which then
continues the same MLflow run), ``--rdzv-id=<job id>`` (the job key the restarted
job finds its run by; torchrun's default ``none`` means "no key"), and, in
torch 2.13 with the c10d rendezvous, ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``
in the environment of every node: without it a replacement node hangs at
rendezvous.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import timedelta

from trackcfg.errors import DistributedError

__all__ = [
    "BACKENDS",
    "LAUNCHERS",
    "LaunchInfo",
    "detect_launcher",
    "first_slurm_host",
    "init_dist",
    "launch_info",
    "resolve_backend",
]

#: The launchers `init_dist` knows (mmcv's names, less ``mpi``).
LAUNCHERS = ("none", "pytorch", "slurm")
#: The backends a config may name.
BACKENDS = ("gloo", "nccl", "mpi")
#: The environment variable that picks a launcher explicitly.
LAUNCHER_ENV = "TRACKCFG_LAUNCHER"
#: torch's default rendezvous port, used under SLURM when ``MASTER_PORT`` is unset.
DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True, slots=True)
class LaunchInfo:
    """Where this process stands in its job.

    Attributes:
        launcher: ``none``, ``pytorch`` or ``slurm``.
        rank: Global rank.
        local_rank: Rank on this node (its GPU under NCCL).
        world_size: Number of processes in the job.
        master_addr: Rank 0's host (empty for ``none``).
        master_port: The rendezvous port (0 for ``none``).
    """

    launcher: str
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    master_addr: str = ""
    master_port: int = 0


def detect_launcher(environ: Mapping[str, str] | None = None) -> str:
    """The launcher this process was started by (see the module docstring).

    Example:
        >>> detect_launcher({"WORLD_SIZE": "4", "RANK": "1"})
        'pytorch'
        >>> detect_launcher({})
        'none'
        >>> detect_launcher({"TRACKCFG_LAUNCHER": "slurm", "SLURM_NTASKS": "2"})
        'slurm'

    Raises:
        DistributedError: ``TRACKCFG_LAUNCHER`` names no known launcher.
    """
    env = os.environ if environ is None else environ
    chosen = env.get(LAUNCHER_ENV, "").strip()
    if chosen:
        if chosen not in LAUNCHERS:
            raise DistributedError(
                f"{LAUNCHER_ENV}={chosen!r}: unknown launcher",
                hint=f"use one of {', '.join(LAUNCHERS)}",
            )
        return chosen
    return "pytorch" if _int(env, "WORLD_SIZE", 1) > 1 else "none"


def launch_info(launcher: str, environ: Mapping[str, str] | None = None) -> LaunchInfo:
    """Rank, local rank, world size and master of this process under ``launcher``.

    Example:
        >>> info = launch_info("slurm", {"SLURM_PROCID": "3", "SLURM_LOCALID": "1",
        ...     "SLURM_NTASKS": "4", "SLURM_NODELIST": "gpu[07-08]"})
        >>> info.rank, info.local_rank, info.world_size, info.master_addr, info.master_port
        (3, 1, 4, 'gpu07', 29500)

    Raises:
        DistributedError: a variable the launcher sets is missing or not a number.
    """
    env = os.environ if environ is None else environ
    if launcher == "none":
        return LaunchInfo("none")
    if launcher == "pytorch":
        for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            _require(env, name, "torchrun")
        return LaunchInfo(
            "pytorch",
            rank=_int(env, "RANK", 0),
            local_rank=_int(env, "LOCAL_RANK", 0),
            world_size=_int(env, "WORLD_SIZE", 1),
            master_addr=env["MASTER_ADDR"],
            master_port=_int(env, "MASTER_PORT", DEFAULT_MASTER_PORT),
        )
    if launcher == "slurm":
        for name in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST"):
            _require(env, name, "srun")
        return LaunchInfo(
            "slurm",
            rank=_int(env, "SLURM_PROCID", 0),
            local_rank=_int(env, "SLURM_LOCALID", 0),
            world_size=_int(env, "SLURM_NTASKS", 1),
            master_addr=env.get("MASTER_ADDR") or first_slurm_host(env["SLURM_NODELIST"]),
            master_port=_int(env, "MASTER_PORT", DEFAULT_MASTER_PORT),
        )
    raise DistributedError(
        f"unknown launcher {launcher!r}", hint=f"use one of {', '.join(LAUNCHERS)}"
    )


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list in its compressed form.

    Example:
        >>> first_slurm_host("node[012-015,20],gpu1")
        'node012'
        >>> first_slurm_host("login3")
        'login3'

    Raises:
        DistributedError: the list is empty or malformed.
    """
    match = re.match(r"\s*([^,\[\s]+)(?:\[([^\]]*)\])?", nodelist)
    if match is None:
        raise DistributedError(f"SLURM_NODELIST={nodelist!r}: no host in it")
    prefix, ranges = match.group(1), match.group(2)
    if ranges is None:
        return prefix
    first = ranges.split(",")[0].split("-")[0].strip()
    if not first:
        raise DistributedError(f"SLURM_NODELIST={nodelist!r}: malformed host range")
    return prefix + first


def resolve_backend(requested: str | None, *, cuda: bool | None = None) -> str:
    """The backend to use: ``requested`` (checked), else nccl with CUDA, else gloo.

    Example:
        >>> resolve_backend(None, cuda=False)
        'gloo'
        >>> resolve_backend("gloo", cuda=True)
        'gloo'

    Args:
        requested: The config's ``dist_params.backend``, or None.
        cuda: Whether CUDA is available; default: ask torch.

    Raises:
        DistributedError: an unknown backend, NCCL without CUDA, or a backend this
            torch build does not have.
    """
    import torch
    import torch.distributed as torch_dist

    if cuda is None:
        cuda = torch.cuda.is_available()
    backend = requested if requested is not None else ("nccl" if cuda else "gloo")
    if backend not in BACKENDS:
        raise DistributedError(
            f"dist_params.backend={backend!r}: unknown backend",
            hint=f"use one of {', '.join(BACKENDS)}",
        )
    if backend == "nccl" and not cuda:
        raise DistributedError(
            "dist_params.backend='nccl' needs CUDA, and no CUDA device is available",
            hint="use dist_params=dict(backend='gloo') to train on CPU",
        )
    available = {
        "gloo": torch_dist.is_gloo_available,
        "nccl": torch_dist.is_nccl_available,
        "mpi": torch_dist.is_mpi_available,
    }[backend]
    if not torch_dist.is_available() or not available():
        raise DistributedError(
            f"backend {backend!r} is not available in this torch build ({torch.__version__})",
            hint="install a torch build with it, or choose another in dist_params.backend",
        )
    return backend


def init_dist(
    launcher: str,
    backend: str | None = None,
    *,
    timeout: timedelta | None = None,
    environ: MutableMapping[str, str] | None = None,
) -> LaunchInfo:
    """Initialise the default process group for ``launcher`` (a no-op for ``none``).

    Under ``slurm`` the torchrun variables (``RANK``, ``LOCAL_RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) are set from SLURM's first,
    so code that reads them later sees the same job. A group that is already
    initialised is kept (a user's own launcher came first).

    Args:
        launcher: ``none``, ``pytorch`` or ``slurm`` (`detect_launcher`).
        backend: The config's ``dist_params.backend``; see `resolve_backend`.
        timeout: The collectives' timeout; default torch's.
        environ: The environment to read and complete (default ``os.environ``).

    Returns:
        This process's place in the job.

    Raises:
        DistributedError: a missing variable, an unusable backend, or a group that
            cannot be formed.
    """
    env = os.environ if environ is None else environ
    info = launch_info(launcher, env)
    if launcher == "none":
        return info
    import torch
    import torch.distributed as torch_dist

    if torch_dist.is_available() and torch_dist.is_initialized():
        return info
    chosen = resolve_backend(backend)
    if launcher == "slurm":
        env.update(
            RANK=str(info.rank),
            LOCAL_RANK=str(info.local_rank),
            WORLD_SIZE=str(info.world_size),
            MASTER_ADDR=info.master_addr,
            MASTER_PORT=str(info.master_port),
        )
    if chosen == "nccl":  # untested here (no GPU): one GPU per local rank, as mmcv
        torch.cuda.set_device(info.local_rank % max(torch.cuda.device_count(), 1))
    try:
        if timeout is None:
            torch_dist.init_process_group(
                backend=chosen, init_method="env://", rank=info.rank, world_size=info.world_size
            )
        else:
            torch_dist.init_process_group(
                backend=chosen,
                init_method="env://",
                rank=info.rank,
                world_size=info.world_size,
                timeout=timeout,
            )
    except (RuntimeError, ValueError) as error:
        raise DistributedError(
            f"cannot join the job as rank {info.rank} of {info.world_size} "
            f"({launcher}, {chosen}, master {info.master_addr}:{info.master_port}): {error}"
        ) from error
    return info


def _require(env: Mapping[str, str], name: str, launcher: str) -> None:
    if not env.get(name):
        raise DistributedError(
            f"{name} is not set: this process was not started by {launcher}",
            hint=f"start it with {launcher}, or unset {LAUNCHER_ENV}",
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"{name}={text!r}: expected an integer") from None
