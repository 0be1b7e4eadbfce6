"""bench/load.lua under wrk against a stand-in server: what a refresh chain does when an answer
is lost, and which sessions `me` and the refresh chains take."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

import harness as h  # noqa: E402
import run  # noqa: E402

# CI installs wrk (.ci/run): there a skip would hide a lost test.
pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None and not os.environ.get("CI"), reason="needs wrk"
)


class RotatingService(BaseHTTPRequestHandler):
    """Refresh with rotation and reuse detection as the service does it: a spent token comes
    back, its family is revoked. The answer to refresh number `drop_at` is lost (the connection
    closes after the rotation), as when a connection drops mid-request."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server hook name
        state = self.server
        state.bearers.add(self.headers["Authorization"])
        with self.lock:
            state.gets += 1
            slow = state.slow_every and state.gets % state.slow_every == 0
        if slow:
            time.sleep(0.1)
        self.answer(200, {"email": "u@bench.example"})
        if slow:
            with self.lock:
                state.slow_answered += 1

    def do_POST(self):  # noqa: N802 - http.server hook name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        state = self.server
        if self.path.endswith("/forgot/"):
            with self.lock:
                state.forgot.append(body["email"])
            self.answer(202, {"detail": "sent"})
            return
        with self.lock:
            if self.path.endswith("/login/"):
                state.logins += 1
                family = f"login{state.logins}"
                state.live[f"{family}.0"] = family
                self.answer(200, {"access": "a", "refresh": f"{family}.0"})
                return
            family = state.live.pop(body["refresh"], None)
            if family is None or family in state.revoked:
                state.revoked.add(body["refresh"].split(".")[0])
                self.answer(401, {"detail": "Token is blacklisted"})
                return
            state.refreshes += 1
            token = f"{family}.{state.refreshes}"
            state.live[token] = family
            if state.refreshes == state.drop_at:
                self.close_connection = True
                return
        self.answer(200, {"access": "a", "refresh": token})

    def answer(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # wrk closes its connections when its time is up, some mid-answer: not a failure of
        # the stand-in, and its traceback would only clutter the test output.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture
def service():
    server = StandInServer(("127.0.0.1", 0), RotatingService)
    server.live = {"session0.0": "session0", "session1.0": "session1"}
    server.revoked, server.bearers = set(), set()
    server.logins = server.refreshes = 0
    server.drop_at = 0
    server.gets = server.slow_every = server.slow_answered = 0
    server.forgot = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def wrk(
    server,
    mode: str,
    tmp_path: Path,
    *,
    connections: int = 1,
    histogram: bool = False,
    timed: bool = False,
) -> dict:
    data = tmp_path / "data.lua"
    data.write_text(
        'return {run = "t", password = "p", users = {"u0@bench.example", "u1@bench.example"},\n'
        '  access = {"access0", "access1", "access2"}, refresh = {"session0.0", "session1.0"},\n'
        '  distinct = {"d1@bench.example", "d2@bench.example", "d3@bench.example"}}\n'
    )
    output = subprocess.run(  # noqa: S603 - fixed argv
        [
            "wrk",
            f"-t{connections}",
            f"-c{connections}",
            "-d1s",
            "-s",
            str(BENCH / "load.lua"),
            f"http://127.0.0.1:{server.server_address[1]}",
            "--",
            mode,
            str(data),
            str(connections),
            "1",
            *(["timed"] if timed else []),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={**os.environ, "BENCH_HISTOGRAM": str(int(histogram))},
    ).stdout
    line = next(x for x in output.splitlines() if x.startswith("BENCH_JSON "))
    return json.loads(line.removeprefix("BENCH_JSON "))


def test_a_refresh_chain_whose_answer_was_lost_starts_again_with_a_login(service, tmp_path):
    service.drop_at = 5

    result = wrk(service, "refresh", tmp_path, timed=True)

    # wrk resent the spent token on a new connection: one refusal, one new chain, and the
    # rest of the run rotating again rather than thousands of 401s.
    assert result["socket_errors"]["read"] == 1
    assert result["non2xx"] == 1
    assert result["chain_restarts"] == service.logins == 1
    # Every rotation answered but the lost one (and the last, in flight when wrk stopped).
    assert service.refreshes - 2 <= result["ok"] <= service.refreshes - 1
    assert result["ok"] > 10
    # The refresh chain's own latencies are its refreshes' and the refusal's, not the login's.
    timed = sum(count for _, count in result["own_latency_histogram_us"])
    assert timed == result["ok"] + result["non2xx"]


def test_me_clients_hold_sessions_the_refresh_chains_do_not(service, tmp_path):
    wrk(service, "me", tmp_path, connections=2)

    # Refresh chain k takes session k; me thread k takes the k-th from the end.
    assert service.bearers == {"Bearer access2", "Bearer access1"}


def test_the_histogram_gives_wrks_own_percentiles(service, tmp_path):
    result = wrk(service, "me", tmp_path, connections=2, histogram=True)

    histogram = dict(result["latency_histogram_us"])
    # wrk's coordinated-omission correction adds samples for every slow response: its
    # histogram holds more than the responses (bench/README.md, Columns).
    assert sum(histogram.values()) >= result["requests"]
    pooled = run.histogram_percentiles(histogram)
    for p in (50, 90, 95, 99):
        assert pooled[f"p{p}_ms"] * 1000 == result["latency_us"][f"p{p}"]


def test_a_timed_run_times_each_request_once_as_its_client_saw_it(service, tmp_path):
    service.slow_every = 5  # every fifth answer after 100 ms

    result = wrk(service, "me", tmp_path, connections=2, histogram=True, timed=True)

    own = dict(result["own_latency_histogram_us"])
    # One latency per answer, and the slow ones are the answers that were slow; wrk's own
    # histogram adds made-up samples after each (its coordinated-omission correction).
    assert sum(own.values()) == result["ok"] > 20
    slow = sum(count for took, count in own.items() if took >= 100_000)
    assert service.slow_answered - 2 <= slow <= service.slow_answered
    assert sum(count for _, count in result["latency_histogram_us"]) > result["ok"]
    assert max(own) < 150_000


def test_an_untimed_run_reports_no_own_latencies(service, tmp_path):
    assert "own_latency_histogram_us" not in wrk(service, "me", tmp_path, connections=2)


def test_the_harness_times_runs_with_a_thread_per_connection(service, tmp_path):
    data = tmp_path / "data.lua"
    data.write_text('return {run = "t", password = "p", users = {}, access = {"a0", "a1"}}\n')
    url = f"http://127.0.0.1:{service.server_address[1]}"
    spec = {"url": url, "data_file": data, "connections": 2, "duration": 1}

    assert "own_latency_histogram_us" in h.wrk("me", threads=2, **spec)
    assert "own_latency_histogram_us" not in h.wrk("me", threads=1, **spec)


def test_distinct_forgot_emails_are_each_sent_once_from_the_first(service, tmp_path):
    result = wrk(service, "forgot_distinct", tmp_path)

    # The request wrk builds to check the script is never sent: it uses up no email, and the
    # known requests counted as sent are the ones the service received.
    known = [email for email in service.forgot if email.startswith("d")]
    assert known == ["d1@bench.example", "d2@bench.example", "d3@bench.example"]
    assert result["known_sent"] == 3
    assert len(service.forgot) > 3  # unknown emails once the list ran out
