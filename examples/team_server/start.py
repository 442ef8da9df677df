"""Start a throwaway team tracking stack on loopback and print what clients set.

PostgreSQL (runs), moto's S3 endpoint (artifacts, proxied by the server) and
``mlflow server`` with MLflow's basic-auth app, each on a free 127.0.0.1 port.
Ctrl-C (or SIGTERM) stops all of them and deletes their data.

    python examples/team_server/start.py [--no-auth] [--dir DIR]
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from teamstack import StackError, TeamStack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-auth", action="store_true", help="serve without basic auth")
    parser.add_argument("--dir", type=Path, help="logs and auth config (default: a temp dir)")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="trackcfg-team-"))
    auth = None if args.no_auth else ("admin", secrets.token_urlsafe(16))
    stack = TeamStack(directory, auth)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    print("starting PostgreSQL, S3 (moto) and mlflow server ...", flush=True)
    try:
        stack.start()
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        assert stack.server is not None and stack.postgres is not None
        print(f"up in {stack.start_seconds:.1f} s; the server runs as:")
        print("  " + " ".join(stack.server.argv()))
        print(
            f"  (runs in PostgreSQL on 127.0.0.1:{stack.postgres.port}, artifacts in "
            f"s3://{'trackcfg-team'}/ via the server, logs in {directory})"
        )
        print("clients set:")
        for key, value in stack.client_env().items():
            print(f"  export {key}={value}")
        print("Ctrl-C stops everything.", flush=True)
        stopping.wait()
    finally:
        stack.stop()
        print("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
