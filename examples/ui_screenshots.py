"""Screenshots of MLflow's UI showing what trackcfg recorded (headless Chromium).

Makes a scratch workspace (a new git repository with ``configs/`` as your git HEAD
has it, and its own MLflow store), runs the main job twice from a tree with an
uncommitted edit (one config hash, two runs) and the MLP once (another hash),
starts ``trackcfg ui --hash <hash>`` on a free loopback port and takes, with
Debian's Chromium (``apt-get install chromium``)::

    1-runs-of-one-hash.png   the link `trackcfg ui --hash` prints: the classic
                             training view, runs of that hash grouped under it, with
                             the hash, source, dataset, user and metric columns
    2-all-runs-by-hash.png   every run, grouped by config hash (`trackcfg ui`)
    3-run-overview.png       one run: description (hash, lineage, git, commands),
                             source, created by, datasets
    4-patch-preview.png      its artifact git.patch.txt, previewed

Run it from anywhere (about a minute on an idle machine)::

    python examples/ui_screenshots.py --out /tmp/ui-shots [--keep DIR] [--store DIR]

``--store DIR`` skips the runs and uses an existing workspace (a directory with an
``mlflow.db`` holding trackcfg runs). Not part of the test suite, which checks the
same tags, inputs and description through ``MlflowClient``
(``tests/e2e/test_tracked_run.py``): a browser may be missing there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAIN = "configs/digits/cnn_sgd_10e.py"
OTHER = "configs/digits/mlp_sgd_20e.py"
SHORT = ["--cfg-options", "runner.max_epochs=1"]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=2200,1000",
]


def trackcfg(*args: str, cwd: Path, env: dict[str, str]) -> str:
    """Run ``python -m trackcfg ARGS``; returns stdout (exits with its output on failure)."""
    print(f"$ trackcfg {' '.join(args)}", flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "trackcfg", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"trackcfg {args[0]} exited with {proc.returncode}")
    return proc.stdout


def make_workspace(directory: Path) -> None:
    """A git repository with HEAD's ``configs/``, committed, then one uncommitted edit."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-tree", "-r", "-z", "--name-only", "HEAD", "--", "configs"],
        capture_output=True,
        text=True,
    )
    names = [n for n in listed.stdout.split("\0") if n] if listed.returncode == 0 else []
    if not names:
        shutil.copytree(REPO / "configs", directory / "configs")
    for name in names:
        blob = subprocess.run(
            ["git", "-C", str(REPO), "show", f"HEAD:./{name}"], capture_output=True, check=True
        )
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(blob.stdout)
    (directory / ".gitignore").write_text("mlflow.db\nmlruns/\nwork_dirs/\n")
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["-c", "user.name=demo", "-c", "user.email=demo@example.com", "commit", "-qm", "configs"],
    ):
        subprocess.run(["git", *args], cwd=directory, check=True)
    runtime = directory / "configs/_base_/default_runtime.py"
    runtime.write_text(runtime.read_text() + "# tried a change, not committed yet\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, server: subprocess.Popen[str], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"trackcfg ui exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the UI did not answer at {url} within {timeout:.0f} s")


def screenshot(chromium: str, url: str, out: Path, profile: Path) -> None:
    """One page, after its scripts had ``--virtual-time-budget`` to load the data."""
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            f"--screenshot={out}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    print(f"  {out}  <- {url}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the PNG files")
    parser.add_argument("--keep", type=Path, help="workspace to create (kept afterwards)")
    parser.add_argument("--store", type=Path, help="an existing workspace: take no new runs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    if shutil.which(args.chromium) is None:
        parser.error(f"no browser {args.chromium!r}: apt-get install chromium, or --chromium PATH")
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="trackcfg-ui-"))
    ws = args.store or args.keep or scratch / "ws"
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{(ws / 'mlflow.db').resolve()}")
    if args.store is None:
        ws.mkdir(parents=True, exist_ok=True)
        make_workspace(ws)
        for config, work in ((MAIN, "a"), (MAIN, "b"), (OTHER, "c")):
            trackcfg("run", config, "--work-dir", f"work_dirs/{work}", *SHORT, cwd=ws, env=env)
    rows = json.loads(trackcfg("runs", "--json", cwd=ws, env=env))
    if not rows:
        raise SystemExit(f"no trackcfg runs in {ws / 'mlflow.db'}")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["config_hash"]] = counts.get(row["config_hash"], 0) + 1
    config_hash = max(counts, key=lambda h: counts[h])  # the hash with the most runs
    run = next(r for r in rows if r["config_hash"] == config_hash)

    port = free_port()
    address = f"http://127.0.0.1:{port}"
    # The view of every run grouped by hash, which `trackcfg ui` (no --hash) links.
    subprocess.run(
        [sys.executable, "-c", "from trackcfg.session.ui_view import save_ui_view; save_ui_view()"],
        cwd=ws,
        env=env,
        check=True,
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "trackcfg", "ui", "--port", str(port), "--hash", config_hash],
        cwd=ws,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the server's workers go with it
    )
    try:
        assert server.stdout is not None
        printed = [server.stdout.readline() for _ in range(3)]
        print("".join(printed), end="")
        link = next(line.split(": ", 1)[1].strip() for line in printed if "config hash:" in line)
        experiment = link.split("#/experiments/")[1].split("/")[0]
        mode = "workflowType=machine_learning"  # the UI's "Model training" mode
        wait_until_up(address, server)
        pages = [
            ("1-runs-of-one-hash.png", link),
            (
                "2-all-runs-by-hash.png",
                f"{address}/#/experiments/{experiment}/runs?{mode}&viewStateShareKey=trackcfg-all",
            ),
            (
                "3-run-overview.png",
                f"{address}/#/experiments/{experiment}/runs/{run['run_id']}?{mode}",
            ),
            (
                "4-patch-preview.png",
                f"{address}/#/experiments/{experiment}/runs/{run['run_id']}"
                f"/artifacts/git.patch.txt?{mode}",
            ),
        ]
        for name, url in pages:
            screenshot(args.chromium, url, args.out / name, scratch / "profile")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(scratch / "profile", ignore_errors=True)
        if args.store is None and args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
