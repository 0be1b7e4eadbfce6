"""A slow DNS answer while the service opens a PostgreSQL connection.

Under the deadline's wait callback libpq connects without blocking, and it would look up every
host name after the first while holding Python's interpreter lock: each slow answer would stop
every thread of the process (the other requests of a gunicorn worker, its health check). The
service looks the names up itself (auth_service/postgresql/hosts.py). Here the service's own
settings and backend connect, inside a network namespace whose DNS server takes a second per
answer, while another thread of the process counts.
"""

import json
import subprocess
import sys

from auth_service.tests.faults.harness import ROOT

DELAY = 1.0  # seconds per DNS answer

# Connects through the service's backend while a second thread ticks every 5 ms; prints how
# long the connect took and the longest pause the ticking thread saw.
PROBE = """
import json, threading, time
import django
django.setup()
from django.db import OperationalError, connection

pauses, done = [0.0], threading.Event()

def tick():
    last = time.monotonic()
    while not done.is_set():
        time.sleep(0.005)
        now = time.monotonic()
        pauses.append(now - last)
        last = now

ticker = threading.Thread(target=tick)
ticker.start()
started = time.monotonic()
try:
    connection.ensure_connection()
    error = None
except OperationalError as failure:
    error = str(failure)
took = time.monotonic() - started
done.set()
ticker.join()
print(json.dumps({"took": took, "longest_pause": max(pauses), "error": error}))
"""


def test_slow_host_name_lookups_leave_the_processs_other_threads_running(netns, service_env):
    netns.use_nameserver("127.0.0.1")
    dns = subprocess.Popen(
        [*netns.exec_prefix(), sys.executable, "-m", "testing.dns", "--address", "127.0.0.1"]
        + ["--delay", str(DELAY)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert dns.stdout.readline().strip() == "ready"
        # Two hosts, both answered by the slow DNS server; nothing listens there, so each
        # connection attempt is refused at once after its lookup.
        env = {
            **service_env,
            "DJANGO_SETTINGS_MODULE": "auth_service.settings",
            "DATABASE_URL": "postgres://postgres@first.test,second.test/auth_service",
        }
        probe = subprocess.run(
            [*netns.exec_prefix(), sys.executable, "-c", PROBE],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        dns.terminate()
        dns.wait(timeout=10)
    result = json.loads(probe.stdout.strip().splitlines()[-1])

    assert "refused" in result["error"]
    assert result["took"] >= 2 * DELAY * 0.9  # both names were looked up, slowly
    assert result["longest_pause"] < DELAY / 2
