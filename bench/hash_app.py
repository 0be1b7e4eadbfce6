"""The hash endpoint: a WSGI app that answers each POST by verifying its password, nothing else.

bench/run.py serves it with the service's own gunicorn.conf.py and settings, so it hashes as
the service does (the configured hasher, the hash threads and their slots, request threads at
their priority) but spends nothing on Django, DRF, PostgreSQL or Redis. Logins held against it
show what the service adds to the hash; it held against the hash ceiling shows what serving
hashes over HTTP on this machine costs.
"""

import json
import os
import sys
import threading
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auth_service.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.hashers import check_password, make_password  # noqa: E402
from harness import PASSWORD  # noqa: E402

from accounts import hash_pool  # noqa: E402
from auth_service.priority import lower_thread_priority  # noqa: E402

# gunicorn imports the app in each worker's main thread, as it loads the service: hash threads
# started now keep that thread's priority (see RequestPriorityMiddleware).
hash_pool.start()
ENCODED = make_password(PASSWORD)
_request_thread = threading.local()


def application(environ, start_response):
    if not getattr(_request_thread, "lowered", False):
        _request_thread.lowered = True
        lower_thread_priority(settings.WEB_REQUEST_NICENESS)
    length = int(environ.get("CONTENT_LENGTH") or 0)
    password = json.loads(environ["wsgi.input"].read(length))["password"]
    body = json.dumps({"valid": check_password(password, ENCODED)}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]
