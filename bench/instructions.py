"""Instructions per request, counted by valgrind (callgrind): the measure that does not drift.

Timed figures on these shared VMs move by 10-30 % between runs of the same build; an instruction
count moves by well under 1 %. So a change to a hot path is judged here first: the same requests
through Django's WSGI handler, in-process, against the real PostgreSQL and Redis, counted twice
(a short and a long run of the same script) so that start-up cancels out:

    per request = (instructions(warm-up + N) - instructions(warm-up)) / N

The handler runs with the garbage collector's start-up objects frozen, as gunicorn.conf.py
freezes them: otherwise a collection's cost follows how many modules a build imports, and two
builds differ by that instead of by their requests. What this leaves out: gunicorn (the same
for every build), PostgreSQL's and Redis's own CPU, and time spent waiting.

`verify` and `hash` are the configured hasher alone (`check_password`, `make_password`), so
that a login or a registration shows what the service adds to its password hash.

    bench/run instructions                 # every scenario: me, refresh, forgot 400 requests
                                           # each; login, register, verify, hash 20 each
    bench/run instructions --only me --requests 1000
    bench/run instructions --only verify,login

Two builds, one at a time (they share the database): `git worktree add` the other, link this
checkout's `.venv` into it (one interpreter for both), copy this script in if the build predates
it, and run the same command there.
"""

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness as h  # noqa: E402

SCENARIOS = ("me", "refresh", "forgot", "verify", "login", "hash", "register")
# Login and register are mostly their password hash: each is also shown beyond the in-process
# verify or hash of the configured hasher, which is what the service adds to it.
HASH_OF = {"login": "verify", "register": "hash"}
HASHING = {"login", "register", "verify", "hash"}
WARM_UP = 20
HASHING_WARM_UP = 3
EMAIL = "instructions@example.com"
_COLLECTED = re.compile(r"Collected : (\d+)")


# --- Inside valgrind: N requests through the WSGI handler ----------------------------------------


def _environ(method: str, path: str, body: dict | None = None, bearer: str | None = None) -> dict:
    raw = json.dumps(body).encode() if body is not None else b""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        # As behind Render's proxy, the benchmark's requests say so too.
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_X_FORWARDED_FOR": "203.0.113.7",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(raw),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
    }
    if body is not None:
        environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(raw)))
    if bearer:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {bearer}"
    return environ


def _requests(scenario: str, count: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auth_service.settings")
    import django

    django.setup()
    import gc

    from django.contrib.auth.hashers import check_password, make_password
    from django.core.handlers.wsgi import WSGIHandler

    from accounts import services
    from accounts.models import User

    app = WSGIHandler()

    def call(environ: dict, expected: int) -> bytes:
        status = []
        response = app(environ, lambda line, headers, exc_info=None: status.append(line))
        try:
            body = b"".join(response)
        finally:
            response.close()
        if not status[0].startswith(str(expected)):
            raise SystemExit(f"{scenario}: {status[0]} {body[:200]!r}")
        return body

    if not User.objects.filter(email=EMAIL).exists():
        User.objects.create_user(email=EMAIL, password=h.PASSWORD, full_name="Instruction Count")
    tokens = services.user_login(email=EMAIL, password=h.PASSWORD)
    encoded = User.objects.get(email=EMAIL).password
    gc.collect()
    gc.freeze()  # as gunicorn.conf.py does once the app is loaded
    for i in range(count):
        if scenario == "verify":
            check_password(h.PASSWORD, encoded)
        elif scenario == "hash":
            make_password(h.PASSWORD)
        elif scenario == "login":
            body = {"email": EMAIL, "password": h.PASSWORD}
            call(_environ("POST", "/api/v1/auth/login/", body), 200)
        elif scenario == "register":
            # Addresses of one length, new in every run: the same work for each request.
            email = f"r{os.getpid():08d}{i:06d}@example.com"
            body = {"full_name": "Instruction Count", "email": email, "password": h.PASSWORD}
            call(_environ("POST", "/api/v1/auth/register/", body), 201)
        elif scenario == "me":
            call(_environ("GET", "/api/v1/auth/me/", bearer=tokens["access"]), 200)
        elif scenario == "refresh":
            body = {"refresh": tokens["refresh"]}
            tokens = json.loads(call(_environ("POST", "/api/v1/auth/token/refresh/", body), 200))
        else:  # forgot: known and unknown emails in turn, as the load scenario mixes them
            email = EMAIL if i % 2 == 0 else f"nobody-{i}@example.com"
            call(_environ("POST", "/api/v1/auth/password/forgot/", {"email": email}), 202)


# --- Outside: the database, the two counted runs, the report --------------------------------------


def ensure_valgrind() -> str:
    found = shutil.which("valgrind")
    if found:
        return found
    h.say("installing valgrind (apt-get install -y valgrind)")
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]
    if subprocess.run([*apt, "install", "-y", "-qq", "valgrind"], check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run([*apt, "install", "-y", "-qq", "valgrind"], check=True)
    return shutil.which("valgrind") or "valgrind"


def _inside(env: dict, scenario: str, count: int, *valgrind: str) -> str:
    run = subprocess.run(
        [*valgrind, sys.executable, __file__, "--inside", scenario, str(count)],
        cwd=h.ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise SystemExit(f"{scenario} ({count} requests) failed:\n{run.stderr[-2000:]}")
    return run.stderr


def prepared(env: dict, scenario: str) -> None:
    """One uncounted run first: it creates the user (a password hash that only the first run
    would pay) and compiles the modules' bytecode (which only the first run would write)."""
    _inside(env, scenario, 1)


def counted(valgrind: str, env: dict, scenario: str, count: int) -> int:
    """Instructions the whole process ran (start-up, one login, and `count` requests)."""
    with tempfile.TemporaryDirectory() as scratch:
        output = f"--callgrind-out-file={scratch}/callgrind.out"
        found = _COLLECTED.search(
            _inside(env, scenario, count, valgrind, "--tool=callgrind", output)
        )
    if not found:
        raise SystemExit(f"{scenario}: valgrind printed no instruction count")
    return int(found.group(1))


def per_request(short: int, long: int, requests: int) -> float:
    return (long - short) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--hashing-requests", type=int, default=20)
    parser.add_argument("--inside", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        _requests(args.inside[0], int(args.inside[1]))
        return
    requested = {s for s in args.only.split(",") if s}
    unknown = requested - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    scenarios = [s for s in SCENARIOS if s in requested]  # each hash before what reads it
    if args.requests < 2 or args.hashing_requests < 10:
        # Fewer hashes let the hash's own spread swamp the 2 % a login adds to it.
        parser.error("--requests takes 2 or more, --hashing-requests 10 or more")
    args.requests -= args.requests % 2  # forgot: as many known emails as unknown

    valgrind = ensure_valgrind()
    database_url = h.with_database(
        h.bench_database_url(), h.database_name(h.bench_database_url()) + "_instructions"
    )
    redis_url = h.bench_redis_url()
    env = h.service_env(port=8000, smtp_port=25, database_url=database_url, redis_url=redis_url)
    env.update(PYTHONHASHSEED="0", ALLOWED_HOSTS="127.0.0.1")
    h.say(f"a fresh database: {h.database_name(database_url)}")
    h.recreate_database(database_url)
    h.manage(env, "migrate", "--noinput")
    import redis

    queue = redis.Redis.from_url(redis_url)
    queue.flushdb()

    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=h.ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(
        f"Instructions per request at `{commit or 'unknown'}` ({args.requests} requests, "
        f"{args.hashing_requests} for the hashing ones):\n"
    )
    print("| scenario | instructions per request | beyond its hash |")
    print("|---|---|---|")
    counts = {}
    try:
        _count_all(scenarios, args, valgrind, env, counts)
    finally:
        # The forgot runs queue reset emails: no worker on this Redis database may send them.
        queue.flushdb()


def _count_all(scenarios: list, args, valgrind: str, env: dict, counts: dict) -> None:
    for scenario in scenarios:
        warm_up, requests = (
            (HASHING_WARM_UP, args.hashing_requests)
            if scenario in HASHING
            else (WARM_UP, args.requests)
        )
        h.say(f"{scenario}: {warm_up} and {warm_up + requests} requests under callgrind")
        prepared(env, scenario)
        short = counted(valgrind, env, scenario, warm_up)
        long = counted(valgrind, env, scenario, warm_up + requests)
        counts[scenario] = per_request(short, long, requests)
        print(f"| {scenario} | {counts[scenario]:,.0f} | {beyond(counts, scenario)} |", flush=True)


def beyond(counts: dict, scenario: str) -> str:
    """What a login or register adds to its hash, once the hash was counted in the same run."""
    floor = counts.get(HASH_OF.get(scenario, ""))
    if not floor:
        return ""
    extra = counts[scenario] - floor
    return f"{extra:,.0f} ({extra / counts[scenario] * 100:.1f} % of it)"


if __name__ == "__main__":
    main()
