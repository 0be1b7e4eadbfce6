"""The reference endpoint starts under the service's own gunicorn.conf.py, as `bench/run`
starts it (gunicorn reads the file from the working directory): its start-up hooks must
serve a plain Django project that has no static files or database."""

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str) -> tuple[int, bytes] | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return None
    finally:
        connection.close()


def test_the_reference_endpoint_answers_under_the_service_config(tmp_path):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "PORT": str(port), "WEB_CONCURRENCY": "1"}
    server = subprocess.Popen(  # noqa: S603 - fixed argv
        [BIN / "gunicorn", f"--bind=127.0.0.1:{port}", "bench.reference_app:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "gunicorn.log").open("w"),
    )
    try:
        deadline = time.monotonic() + 30
        answer = None
        while answer is None and server.poll() is None and time.monotonic() < deadline:
            answer = get(port, "/healthz")
            time.sleep(0.1)

        assert answer == (200, b'{"status": "ok"}'), (tmp_path / "gunicorn.log").read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)
