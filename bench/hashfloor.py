"""Hash floor: one hash and one verify with the configured password hasher, in-process, and
how many verifies/s every core manages at once.

Prints one JSON line. Run with the service's environment (bench/run.py does).
"""

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auth_service.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.hashers import check_password, get_hasher, make_password  # noqa: E402

PASSWORD = "bench-passphrase-for-load-7"  # noqa: S105 - a benchmark input
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1000


encoded = make_password(PASSWORD)
hash_ms = [timed(lambda: make_password(PASSWORD)) for _ in range(ROUNDS)]
verify_ms = [timed(lambda: check_password(PASSWORD, encoded)) for _ in range(ROUNDS)]
# The cores hashing at once, as the server's hash threads do under a login burst: on a shared
# VM two cores rarely deliver twice one core's hashes.
CORES = os.cpu_count() or 1
together = threading.Barrier(CORES)


def verifies() -> None:
    together.wait()
    for _ in range(ROUNDS):
        check_password(PASSWORD, encoded)


threads = [threading.Thread(target=verifies) for _ in range(CORES)]
start = time.perf_counter()
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
parallel_rps = CORES * ROUNDS / (time.perf_counter() - start)
hasher = get_hasher()
print(
    json.dumps(
        {
            "hasher": f"{type(hasher).__module__}.{type(hasher).__name__}",
            "params": encoded.split("$")[3] if encoded.startswith("argon2") else "",
            "hash_ms": statistics.median(hash_ms),
            "verify_ms": statistics.median(verify_ms),
            "verify_ms_min": min(verify_ms),
            "parallel_verify_rps": parallel_rps,
            "samples_ms": {"hash": hash_ms, "verify": verify_ms},
        }
    )
)
