"""The run lease against a real SQLite store: one trainer at a time."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest
from mlflow import MlflowClient

from trackcfg.errors import RunLeaseError
from trackcfg.tracking.agent.lease import (
    TAG_LEASE,
    Lease,
    acquire_lease,
    new_lease,
    read_lease,
    release_dead_lease,
    release_lease,
    renew_lease,
)


def dead_pid() -> int:
    """The id of a process that has exited (and was reaped)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def test_acquire_on_a_free_run_writes_the_lease_tag(store_run: tuple[str, str]) -> None:
    uri, run_id = store_run
    client = MlflowClient(uri)
    lease = acquire_lease(client, run_id, new_lease(), settle=0.0)
    assert read_lease(client, run_id) == lease


def test_acquire_is_refused_while_a_live_trainer_on_this_host_holds_the_run(
    store_run: tuple[str, str],
) -> None:
    uri, run_id = store_run
    client = MlflowClient(uri)
    holder = acquire_lease(client, run_id, new_lease(), settle=0.0)  # this process: alive
    with pytest.raises(RunLeaseError, match="one trainer at a time") as caught:
        acquire_lease(client, run_id, new_lease(), settle=0.0)
    assert f"pid {holder.pids[0]}" in str(caught.value)
    assert read_lease(client, run_id) == holder


def test_a_dead_trainer_on_this_host_frees_the_run_at_once(store_run: tuple[str, str]) -> None:
    uri, run_id = store_run
    client = MlflowClient(uri)
    # The dead trainer's agent (this process here) may still be alive: it does not hold.
    acquire_lease(client, run_id, new_lease(dead_pid()).with_pid(0), settle=0.0)
    taken = acquire_lease(client, run_id, new_lease(), settle=0.0)
    assert read_lease(client, run_id) == taken


@pytest.mark.parametrize(
    ("age_s", "refused"),
    [(5.0, True), (10_000.0, False)],
    ids=["renewed-recently", "expired"],
)
def test_a_lease_from_another_host_holds_until_it_expires(
    store_run: tuple[str, str], age_s: float, refused: bool
) -> None:
    uri, run_id = store_run
    client = MlflowClient(uri)
    other = replace(
        new_lease(), host="elsewhere.invalid", renewed=int((time.time() - age_s) * 1000)
    )
    client.set_tag(run_id, TAG_LEASE, other.to_tag())
    if refused:
        with pytest.raises(RunLeaseError, match=r"elsewhere\.invalid .*renewed 5 s ago"):
            acquire_lease(client, run_id, new_lease(), settle=0.0)
    else:
        assert acquire_lease(client, run_id, new_lease(), settle=0.0).host != other.host


def test_of_two_simultaneous_claims_only_the_last_writer_goes_on(
    store_run: tuple[str, str],
) -> None:
    uri, run_id = store_run
    client = MlflowClient(uri)
    rival = new_lease()
    mine = new_lease()

    def claim_during_settle() -> None:
        # After our write (waited for, not guessed: a loaded machine once delayed it past
        # a fixed sleep), before our read-back.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            held = read_lease(client, run_id)
            if held is not None and held.token == mine.token:
                break
            time.sleep(0.01)
        client.set_tag(run_id, TAG_LEASE, rival.to_tag())

    thread = threading.Thread(target=claim_during_settle)
    thread.start()
    with pytest.raises(RunLeaseError, match="one trainer at a time"):
        acquire_lease(client, run_id, mine, settle=3.0)
    thread.join()
    assert read_lease(client, run_id) == rival


def test_renew_and_release_leave_another_claims_lease_alone(store_run: tuple[str, str]) -> None:
    uri, run_id = store_run
    client = MlflowClient(uri)
    mine = acquire_lease(client, run_id, new_lease(), settle=0.0)
    renewed = renew_lease(client, run_id, mine)
    assert renewed is not None and renewed.token == mine.token
    theirs = new_lease()
    client.set_tag(run_id, TAG_LEASE, theirs.to_tag())
    assert renew_lease(client, run_id, mine) is None
    release_lease(client, run_id, mine)
    assert read_lease(client, run_id) == theirs
    release_lease(client, run_id, theirs)
    assert read_lease(client, run_id) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"token": "t"}',
        '{"token":"t","host":"h","pids":"x","renewed":1,"ttl":1}',
    ],
)
def test_a_malformed_lease_tag_reads_as_no_lease(text: str) -> None:
    assert Lease.from_tag(text) is None


def test_a_lease_round_trips_through_its_tag() -> None:
    lease = new_lease().with_pid(12345)
    assert Lease.from_tag(lease.to_tag()) == lease


def test_a_dead_trainers_lease_is_removed_and_a_live_ones_kept(store_run: tuple[str, str]) -> None:
    uri, run_id = store_run
    client = MlflowClient(uri)
    live = acquire_lease(client, run_id, new_lease(), settle=0.0)
    assert not release_dead_lease(client, run_id)
    assert read_lease(client, run_id) == live
    client.set_tag(run_id, TAG_LEASE, new_lease(dead_pid()).to_tag())
    assert release_dead_lease(client, run_id)
    assert read_lease(client, run_id) is None
