"""Benchmark: trackcfg on the team stack (PostgreSQL + S3 + ``mlflow server`` with basic auth).

1. Stack start: PostgreSQL init + start, moto, ``mlflow server`` until ``/health``.
2. Delivery lag under load: ``--runs`` concurrent short ``trackcfg run``s (two
   config hashes); a poller reads each journal's ``delivered`` file every 20 ms
   and notes when each record's sequence number first appears there (the server
   acknowledged it: committed, visible to every client). Lag = that moment minus
   the record's log timestamp (``t``, taken on the training thread); median and p99.
3. Finding runs at team scale: ``--seed`` runs (default 10,000) seeded in bulk
   (one run made by MLflow's client, copied by SQL; see `seed_runs`), each with a
   ``trackcfg.config_hash`` tag from a pool of ``--seed // 5`` hashes.
   Then, median of ``--repeat`` through the server: `find_runs` with an 8-digit
   prefix (what ``trackcfg runs --hash`` runs), with a full hash, and MLflow's own
   ``search_runs`` with the same filter; and the wall time of the
   ``trackcfg runs --hash`` / ``runs --config`` processes (interpreter and imports
   included). PostgreSQL's plan for the prefix filter is printed.

Target (issue 13): ``runs --hash PREFIX`` and ``runs --config`` under 1 s at 10,000 runs.

Usage: ``python tests/benchmarks/bench_team_server.py [--runs 8] [--seed 10000] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from examples.team_server.teamstack import TeamStack  # noqa: E402
from tests.e2e.conftest import E2E_CONFIG_PATH, make_project, run_env  # noqa: E402

ADMIN = ("admin", secrets.token_urlsafe(12))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _seqs(path: Path) -> set[int]:
    found: set[int] = set()
    try:
        text = path.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            found.update(range(int(parts[0]), int(parts[1]) + 1))
    return found


def bench_delivery_lag(stack: TeamStack, runs: int, work: Path) -> list[float]:
    """Lags (ms) of every record of ``runs`` concurrent short runs."""
    import json

    repo = make_project(work / "project")
    env = run_env(stack.uri, **dict(list(stack.client_env().items())[1:]))
    procs = []
    for i in range(runs):
        options = ["runner.max_epochs=1"] + (["optimizer.lr=0.02"] if i % 2 else [])
        argv = [sys.executable, "-m", "trackcfg", "run", E2E_CONFIG_PATH]
        argv += ["--work-dir", str(repo / "work_dirs" / f"r{i}"), "--cfg-options", *options]
        procs.append(
            subprocess.Popen(
                argv, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        )
    seen: dict[tuple[str, int], float] = {}
    while any(p.poll() is None for p in procs):
        now = time.time() * 1000
        for path in (repo / "work_dirs").glob("r*/.trackcfg/journal/*/delivered"):
            for seq in _seqs(path):
                seen.setdefault((str(path.parent), seq), now)
        time.sleep(0.02)
    for p in procs:
        _, err = p.communicate()
        assert p.returncode == 0, err.decode()[-2000:]
    lags: list[float] = []
    for journal in (repo / "work_dirs").glob("r*/.trackcfg/journal/*"):
        for line in (journal / "metrics.jsonl").read_text().splitlines():
            record = json.loads(line)
            at = seen.get((str(journal), int(record["s"])))
            if at is not None:  # delivered while we polled (not by the final flush)
                lags.append(at - float(record["t"]))
    return lags


def seed_runs(stack: TeamStack, count: int) -> tuple[list[str], float]:
    """``count`` runs with config-hash tags and params, in bulk: a few SQL statements.

    One run is made through MLflow's client (so every column holds what MLflow
    writes); PostgreSQL copies it ``count`` times with new ids, hash tags (``count
    // 5`` distinct hashes, five runs each) and two params. Per-run client calls
    (create_run, log_batch, set_terminated) managed ~2.5 runs/s on a loaded
    2-core machine: over an hour for 10,000.
    """
    from mlflow import MlflowClient

    assert stack.postgres is not None
    client = MlflowClient(stack.postgres.uri("mlflow"))
    experiment = client.create_experiment("seeded", artifact_location="s3://unused/")
    template = client.create_run(experiment, run_name="template").info.run_id
    client.set_terminated(template)
    groups = max(1, count // 5)
    hashes = [hashlib.md5(f"hash{i}".encode()).hexdigest() for i in range(groups)]
    run = "md5('seed' || g)"
    began = time.monotonic()
    psql(
        stack,
        f"""
        INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id,
                          status, start_time, end_time, source_version, lifecycle_stage,
                          artifact_uri, experiment_id, deleted_time)
        SELECT {run}, 'seed@' || left(md5('hash' || (g % {groups})), 8), source_type,
               source_name, entry_point_name, user_id, status, start_time + g, end_time + g,
               source_version, lifecycle_stage, artifact_uri || '/' || g, experiment_id,
               deleted_time
        FROM runs, generate_series(1, {count}) AS g WHERE run_uuid = '{template}';
        INSERT INTO tags (key, value, run_uuid)
        SELECT 'trackcfg.config_hash', md5('hash' || (g % {groups})), {run}
        FROM generate_series(1, {count}) AS g;
        INSERT INTO params (key, value, run_uuid)
        SELECT k, v, {run} FROM generate_series(1, {count}) AS g,
        LATERAL (VALUES ('optimizer.lr', (0.01 * (g % 7))::text), ('seed', g::text)) AS p(k, v);
        ANALYZE;
        """,
    )
    return hashes, time.monotonic() - began


def timed(fn: object, repeat: int) -> float:
    assert callable(fn)
    costs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        costs.append(time.perf_counter() - t0)
    return statistics.median(costs)


def bench_find(stack: TeamStack, hashes: list[str], repeat: int, work: Path) -> None:
    from mlflow import MlflowClient

    from trackcfg.session.catalog import find_runs, hash_filter

    os.environ.update(stack.client_env())
    client = MlflowClient(stack.uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    prefix, full = hashes[0][:8], hashes[1]
    found = len(find_runs(prefix))
    print(f"find_runs('{prefix}'): {found} runs")
    rows = {
        "find_runs(8-digit prefix)": lambda: find_runs(prefix),
        "find_runs(full hash)": lambda: find_runs(full),
        "MLflow search_runs(prefix filter)": lambda: client.search_runs(
            ids, filter_string=hash_filter(prefix), order_by=["attributes.start_time DESC"]
        ),
        "MLflow search_runs(full-hash filter)": lambda: client.search_runs(
            ids, filter_string=hash_filter(full)
        ),
    }
    for name, fn in rows.items():
        print(f"  {name:<40} {timed(fn, repeat) * 1000:8.1f} ms (median of {repeat})")
    repo = make_project(work / "find-project")
    env = run_env(stack.uri, **dict(list(stack.client_env().items())[1:]))
    for args in (["runs", "--hash", prefix], ["runs", "--config", E2E_CONFIG_PATH]):
        argv = [sys.executable, "-m", "trackcfg", *args]

        def cli(argv: list[str] = argv) -> None:
            subprocess.run(argv, cwd=repo, env=env, check=True, capture_output=True)

        print(f"  {'trackcfg ' + ' '.join(args[:2]):<40} {timed(cli, repeat) * 1000:8.1f} ms wall")
    print("PostgreSQL plan of the tag filter:\n" + explain(stack, prefix))


def psql(stack: TeamStack, sql: str) -> str:
    assert stack.postgres is not None
    done = subprocess.run(
        [str(stack.postgres.bin / "psql"), "-h", "127.0.0.1", "-p", str(stack.postgres.port),
         "-U", "postgres", "mlflow", "-c", sql],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


def explain(stack: TeamStack, prefix: str) -> str:
    return psql(
        stack,
        "EXPLAIN ANALYZE SELECT run_uuid FROM tags WHERE key = 'trackcfg.config_hash' "
        f"AND value LIKE '{prefix}%'",
    )


#: An index a team's database admin may add for stores far beyond 10,000 runs: MLflow's
#: own tag index leads with (key, run_uuid), so a hash filter reads every hash tag.
HASH_INDEX = (
    "CREATE INDEX IF NOT EXISTS tags_trackcfg_config_hash ON tags (value text_pattern_ops) "
    "WHERE key = 'trackcfg.config_hash'"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        stack = TeamStack(work / "stack", auth=ADMIN)
        stack.start()
        try:
            print(f"stack start: {stack.start_seconds:.1f} s")
            if args.runs:
                lags = bench_delivery_lag(stack, args.runs, work)
                print(
                    f"delivery lag over {args.runs} concurrent runs ({len(lags)} records): "
                    f"median {statistics.median(lags):.0f} ms, p99 {percentile(lags, 0.99):.0f} ms"
                )
            if args.seed:
                hashes, seconds = seed_runs(stack, args.seed)
                print(f"seeded {args.seed} runs in {seconds:.1f} s ({args.seed / seconds:.0f}/s)")
                bench_find(stack, hashes, args.repeat, work)
                psql(stack, HASH_INDEX + "; ANALYZE tags")
                print("with the partial index on the hash tag:")
                bench_find(stack, hashes, args.repeat, work / "indexed")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
