"""Store credentials: they work for every request and show up nowhere.

`trackcfg run` talks to the real `mlflow_server` through `BasicAuthProxy`, a
loopback reverse proxy that refuses (401) every request without the right basic
auth, so the run finishing proves the credentials in the URI reached every request
(run creation, params, snapshot upload, metrics, checkpoints, final status). Then
the password is looked for, raw, percent-encoded and base64-encoded, in the
command's output (with ``--debug``: debug and third-party logs too), in the
tracking agent's command line (sampled while it runs), in every file of the work
dir and in everything the server stored.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from mlflow import MlflowClient

from tests.e2e.conftest import E2E_CONFIG_PATH, MlflowServer, run_env, run_id_from

# The modules using the session's `mlflow_server` run on one xdist worker: each worker
# would otherwise start a server of its own (seconds of CPU, ~1 GB).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mlflow_server")]

USER = "alice"
#: Every character that ends a URL part early when a password holds it unescaped.
PASSWORD = "p@ss/w#rd?x@"
#: The store's URI, the password percent-encoded (RFC 3986, what MLflow documents) ...
ENCODED = f"http://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{{port}}"
#: ... and as people also write it (which MLflow alone cannot parse).
RAW = f"http://{USER}:{PASSWORD}@127.0.0.1:{{port}}"
#: The forms a leak could take.
NEEDLES = [
    PASSWORD.encode(),
    quote(PASSWORD, safe="").encode(),
    b"p@ss",
    b"w#rd",
    base64.b64encode(f"{USER}:{PASSWORD}".encode()),
]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host"}


class BasicAuthProxy:
    """A reverse proxy on 127.0.0.1 that forwards only requests with the right basic auth."""

    def __init__(self, upstream_port: int, user: str, password: str) -> None:
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.forwarded = 0
        self.refused = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self._body()
                if self.headers.get("Authorization") != expected:
                    proxy.refused += 1
                    self._reply(401, {"WWW-Authenticate": 'Basic realm="mlflow"'}, b"denied")
                    return
                proxy.forwarded += 1
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                try:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP
                    }
                    headers["Content-Length"] = str(len(body))
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    content = response.read()
                    kept = {
                        k: v
                        for k, v in response.getheaders()
                        if k.lower() not in _HOP_BY_HOP | {"content-length"}
                    }
                    self._reply(response.status, kept, content)
                finally:
                    upstream.close()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, headers: dict[str, str], content: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.uri = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def proxy(mlflow_server: MlflowServer) -> Iterator[BasicAuthProxy]:
    """`BasicAuthProxy` in front of the session's `mlflow_server`; stopped after the test."""
    mlflow_server.start()
    running = BasicAuthProxy(mlflow_server.port, USER, PASSWORD)
    try:
        yield running
    finally:
        running.stop()


def _children_cmdlines(parent: int) -> list[bytes]:
    """The command lines of ``parent``'s child processes right now."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append((entry / "cmdline").read_bytes())
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
    return found


def _leaks(data: bytes) -> list[bytes]:
    return [needle for needle in NEEDLES if needle in data]


def _files_holding_the_password(root: Path) -> list[str]:
    return [
        f"{path}: {_leaks(path.read_bytes())}"
        for path in sorted(root.rglob("*"))
        if path.is_file() and _leaks(path.read_bytes())
    ]


def test_store_credentials_work_and_appear_nowhere(
    git_repo: Path, tmp_path: Path, proxy: BasicAuthProxy, mlflow_server: MlflowServer
) -> None:
    env = run_env(ENCODED.format(port=proxy.port))
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    work = git_repo / "work_dirs" / "secret"
    # --debug: third-party and debug logs too; output to files, which never fill up
    # and block the run the way an unread pipe does.
    argv = [sys.executable, "-m", "trackcfg", "--debug", "run", E2E_CONFIG_PATH]
    argv += ["--cfg-options", "runner.max_epochs=1", "--work-dir", str(work)]
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(argv, cwd=git_repo, env=env, stdout=out, stderr=err)
        # Sample the command lines of the trainer and its tracking agent while they
        # run: what `ps` shows every user on the machine.
        cmdlines: list[bytes] = []
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            cmdlines.append(Path(f"/proc/{proc.pid}/cmdline").read_bytes())
            cmdlines += _children_cmdlines(proc.pid)
            time.sleep(0.05)
        proc.wait(timeout=30)
    stdout, stderr = out_path.read_bytes(), err_path.read_bytes()
    assert proc.returncode == 0, stderr.decode(errors="replace")[-3000:]
    assert any(b"trackcfg.tracking.agent" in c for c in cmdlines), "never saw the agent"

    # The credentials worked: every request the run made carried them.
    assert proxy.forwarded > 0 and proxy.refused == 0
    run_id = run_id_from(stdout.decode())
    run = MlflowClient(mlflow_server.uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert b"store:        http://127.0.0.1:%d\n" % proxy.port in stdout
    # MLflow's own "View run ... at: URL" line, if it prints one, shows the bare store.
    output = (stdout + stderr).decode(errors="replace")
    for line in (line for line in output.splitlines() if "View run" in line):
        assert f" at: http://127.0.0.1:{proxy.port}/#/experiments/" in line, line

    # ... and they appear nowhere.
    assert _leaks(stdout + stderr) == [], (stdout + stderr).decode(errors="replace")
    assert [c for c in cmdlines if _leaks(c) or str(proxy.port).encode() in c] == []
    assert _files_holding_the_password(work) == []
    values = [*run.data.tags.values(), *run.data.params.values()]
    assert [v for v in values if _leaks(v.encode())] == []
    # The server's database, its artifacts (the snapshot's environment and git state,
    # checkpoints) and its request log.
    assert _files_holding_the_password(mlflow_server.directory) == []
    # The journal names the store without credentials and is private to its owner.
    private = work / ".trackcfg"
    assert private.stat().st_mode & 0o777 == 0o700
    assert (private / "journal" / run_id / "meta.json").read_text().count(
        f'"tracking_uri": "http://127.0.0.1:{proxy.port}"'
    ) == 1


def test_sync_takes_the_credentials_from_the_environment_or_says_they_are_missing(
    tmp_path: Path,
    proxy: BasicAuthProxy,
    mlflow_server: MlflowServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from trackcfg.tracking.agent.journal import MetricJournal, journal_dir
    from trackcfg.tracking.sync import sync

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.setenv(name, "0")
    client = MlflowClient(mlflow_server.uri)
    run_id = client.create_run(
        client.create_experiment(f"sync-{os.getpid()}-{time.time()}")
    ).info.run_id
    # A journal left with a metric to deliver, naming the store as a run records it.
    journal = MetricJournal(journal_dir(tmp_path, run_id), run_id, redacted := proxy.uri)
    journal.log("loss", 0.5, step=1)
    journal.close()

    with caplog.at_level(logging.WARNING, logger="trackcfg"):
        missing = sync(tmp_path, timeout=1.0)
    assert missing.pending == 1 and missing.delivered == 0
    assert f"tracking store {redacted}: the server refused the request (HTTP 401)" in caplog.text
    assert "MLFLOW_TRACKING_USERNAME" in caplog.text

    monkeypatch.setenv("MLFLOW_TRACKING_URI", RAW.format(port=proxy.port))
    delivered = sync(tmp_path, timeout=30.0)
    assert (delivered.delivered, delivered.pending) == (1, 0)
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.5]
