"""A run's lease: one trainer at a time, across processes and machines.

The lease lives in the tracking store, as the run tag ``trackcfg.lease`` (JSON:
a random token, the holder's host and process ids, when it was last renewed and
for how long it holds), so two machines resuming one run see each other. The
tracking agent of the training process renews it every `RENEW_INTERVAL` seconds
and removes it when the run ends; a holder that stops renewing (its machine is
gone) loses it after `LEASE_TTL` seconds. On the holder's own host a lease whose
trainer process is dead is free at once.

MLflow's store has no compare-and-swap, so `acquire_lease` writes its token,
waits `SETTLE` seconds and reads the tag back: of two trainers that claim the
lease at the same moment, only the last writer finds its own token and goes on;
the other is refused. The settle time must exceed the spread of two writes that
both saw the lease free, which on a store answering in milliseconds it does by
far (a claim delayed by more than a second is the one case this cannot order).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trackcfg.errors import RunLeaseError

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "LEASE_TTL",
    "RENEW_INTERVAL",
    "SETTLE",
    "TAG_LEASE",
    "Lease",
    "acquire_lease",
    "new_lease",
    "read_lease",
    "release_dead_lease",
    "release_lease",
    "renew_lease",
]

#: The run tag holding the lease.
TAG_LEASE = "trackcfg.lease"
#: Seconds a lease holds without renewal (generous: the machines' clocks may differ).
LEASE_TTL = 120.0
#: Seconds between renewals by the holder's tracking agent.
RENEW_INTERVAL = 20.0
#: Seconds between writing a claim and reading it back.
SETTLE = 1.0


@dataclass(frozen=True, slots=True)
class Lease:
    """One holder's claim on a run.

    Attributes:
        token: Random, unique per claim: how a holder recognises its own lease.
        host: The holder's host name.
        pids: The holder's process ids on ``host``: the trainer first, then its agent.
        renewed: When it was last written, in milliseconds since the epoch.
        ttl: Seconds it holds after ``renewed``.
    """

    token: str
    host: str
    pids: tuple[int, ...]
    renewed: int
    ttl: float = LEASE_TTL

    def to_tag(self) -> str:
        """The tag value (JSON)."""
        return json.dumps(
            {
                "token": self.token,
                "host": self.host,
                "pids": list(self.pids),
                "renewed": self.renewed,
                "ttl": self.ttl,
            },
            sort_keys=True,
        )

    @classmethod
    def from_tag(cls, text: str) -> Lease | None:
        """The lease a tag value holds; None for an empty or malformed value (no lease)."""
        try:
            obj = json.loads(text)
            return cls(
                token=str(obj["token"]),
                host=str(obj["host"]),
                pids=tuple(int(p) for p in obj["pids"]),
                renewed=int(obj["renewed"]),
                ttl=float(obj["ttl"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def renewed_now(self) -> Lease:
        """The same claim, renewed now."""
        return Lease(self.token, self.host, self.pids, _now_ms(), self.ttl)

    def with_pid(self, pid: int) -> Lease:
        """The same claim with one more holder process (the agent that renews it)."""
        return Lease(self.token, self.host, (*self.pids, pid), self.renewed, self.ttl)

    def is_live(self, now_ms: int | None = None) -> bool:
        """Whether it still holds: renewed within ``ttl`` and, on this host, its trainer alive.

        On the holder's host a dead trainer frees the run at once, even while its
        agent still delivers what it left: the next trainer waits for that delivery
        (`trackcfg.tracking.sync.sync`) under its own lease.
        """
        now = _now_ms() if now_ms is None else now_ms
        if now - self.renewed > self.ttl * 1000:
            return False
        if self.host == socket.gethostname():
            return bool(self.pids) and _pid_alive(self.pids[0])
        return True

    def describe(self, now_ms: int | None = None) -> str:
        """``host pid P`` and how long ago it was renewed, for messages."""
        now = _now_ms() if now_ms is None else now_ms
        ago = max(0.0, (now - self.renewed) / 1000)
        pids = ", ".join(str(p) for p in self.pids)
        return f"{self.host} (pid {pids}), lease renewed {ago:.0f} s ago"


def new_lease(pid: int | None = None) -> Lease:
    """A fresh claim for process ``pid`` (default: this one) on this host."""
    return Lease(
        token=secrets.token_hex(16),
        host=socket.gethostname(),
        pids=(os.getpid() if pid is None else pid,),
        renewed=_now_ms(),
    )


def read_lease(client: MlflowClient, run_id: str) -> Lease | None:
    """The run's current lease tag (live or not); None when there is none."""
    text = client.get_run(run_id).data.tags.get(TAG_LEASE, "")
    return Lease.from_tag(text) if text else None


def acquire_lease(
    client: MlflowClient, run_id: str, claim: Lease, *, settle: float = SETTLE
) -> Lease:
    """Take the run's lease for ``claim``, or refuse because another trainer holds it.

    Args:
        client: A client of the run's store.
        run_id: The run.
        claim: A fresh claim (`new_lease`).
        settle: Seconds between the write and the read-back (see the module docstring).

    Returns:
        The lease as written.

    Raises:
        RunLeaseError: a live lease of another claim holds the run, before or after
            the claim was written.
    """
    held = read_lease(client, run_id)
    if held is not None and held.token != claim.token and held.is_live():
        raise _held_error(run_id, held)
    lease = claim.renewed_now()
    client.set_tag(run_id, TAG_LEASE, lease.to_tag())
    time.sleep(settle)
    now = read_lease(client, run_id)
    if now is None or now.token != lease.token:
        if now is not None:
            raise _held_error(run_id, now)
        raise RunLeaseError(
            f"run {run_id}: another trainer claimed the run at the same moment and removed "
            "the claim; a run has one trainer at a time",
            hint="try again in a few seconds",
        )
    return lease


def renew_lease(client: MlflowClient, run_id: str, lease: Lease) -> Lease | None:
    """Renew ``lease``; None (nothing written) when another claim took the run meanwhile."""
    current = read_lease(client, run_id)
    if current is not None and current.token != lease.token:
        return None
    renewed = lease.renewed_now()
    client.set_tag(run_id, TAG_LEASE, renewed.to_tag())
    return renewed


def release_lease(client: MlflowClient, run_id: str, lease: Lease) -> None:
    """Remove the run's lease tag if it is still ``lease``'s (another claim's stays)."""
    current = read_lease(client, run_id)
    if current is not None and current.token == lease.token:
        client.delete_tag(run_id, TAG_LEASE)


def release_dead_lease(client: MlflowClient, run_id: str) -> bool:
    """Remove the run's lease if it no longer holds (its trainer is gone); True if removed.

    For `sync`, which sets the status a trainer left when its agent died before it
    could remove the lease itself.
    """
    current = read_lease(client, run_id)
    if current is None or current.is_live():
        return False
    client.delete_tag(run_id, TAG_LEASE)
    return True


def _held_error(run_id: str, held: Lease) -> RunLeaseError:
    expires = max(0.0, held.renewed / 1000 + held.ttl - time.time())
    return RunLeaseError(
        f"run {run_id} is being trained by {held.describe()}; a run has one trainer at a time",
        hint=(
            "wait until that trainer ends; if its machine is gone, its lease expires in "
            f"{expires:.0f} s"
        ),
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    # A zombie (dead, not yet reaped by its parent) counts as dead.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b")")[-1].split()[0] != b"Z"
    except OSError:
        return True


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
