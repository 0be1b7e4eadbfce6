"""What the benchmark and the reliability run share: the service under gunicorn and Celery as
production starts them, a JSON client for seeding, wrk runs, and CPU/RSS meters from /proc.

Everything talks to 127.0.0.1 only and every load run is bounded by wrk's own duration.
"""

import contextlib
import http.client
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from testing.postgres import database_name, with_database

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent
CORES = os.cpu_count() or 1
TICK = os.sysconf("SC_CLK_TCK")

PASSWORD = "bench-passphrase-for-load-7"  # noqa: S105 - the seeded users' password
# Rates high enough that no benchmark request is throttled; the throttle code still runs.
NO_THROTTLE = "1000000/second"


def say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


# --- Configuration ------------------------------------------------------------------------------


def bench_database_url() -> str:
    """The benchmark's own database: DATABASE_URL's name with a `_bench` suffix."""
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/auth_service")
    return with_database(base, database_name(base) + "_bench")


def bench_redis_url() -> str:
    """REDIS_URL's database, emptied at the start like the test suite empties it."""
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")


def service_env(*, port: int, smtp_port: int, database_url: str, redis_url: str) -> dict:
    """Production settings, pointed at the benchmark's database, Redis DB and SMTP sink."""
    env = dict(os.environ)
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": "bench-only-secret-key-not-for-production-use-0000000000",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PORT": str(port),
            # Requests carry X-Forwarded-Proto: https like behind Render's proxy; health checks
            # and seeding may not, so no redirect either way.
            "SECURE_SSL_REDIRECT": "false",
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp_port),
            "THROTTLE_LOGIN_IP": NO_THROTTLE,
            "THROTTLE_LOGIN_EMAIL": NO_THROTTLE,
            "THROTTLE_RESET_IP": NO_THROTTLE,
            "THROTTLE_RESET_EMAIL": NO_THROTTLE,
            "THROTTLE_PASSWORD_CHANGE": NO_THROTTLE,
            "THROTTLE_REGISTER_IP": NO_THROTTLE,
        }
    )
    return env


def recreate_database(url: str) -> None:
    import psycopg2
    from psycopg2 import sql

    name = database_name(url)
    # The maintenance database through the same URL: libpq lets the keyword win.
    conn = psycopg2.connect(url, dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn.close()


def database_backends(url: str) -> list[int]:
    """PIDs of the PostgreSQL backends serving the benchmark's database."""
    import psycopg2

    conn = psycopg2.connect(url, dbname="postgres")
    with conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [database_name(url)])
        pids = [row[0] for row in cur.fetchall()]
    conn.close()
    return pids


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    say("installing wrk (apt-get install -y wrk)")
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]
    if subprocess.run([*apt, "install", "-y", "-qq", "wrk"], check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run([*apt, "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or "wrk"


# --- Processes ----------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


class CpuQuota:
    """A cgroup that holds its processes to `cpus` CPUs, as a container on a 0.5-CPU plan is.

    cgroup v1's cpu controller where it is mounted, else cgroup v2 (needs root either way).
    Processes join it before they exec, so a gunicorn master's workers and threads are in it
    from their first instruction.
    """

    PERIOD_US = 100_000

    def __init__(self, cpus: float, root: Path = Path("/sys/fs/cgroup"), name: str = "bench-web"):
        quota = round(cpus * self.PERIOD_US)
        if (root / "cpu" / "cpu.cfs_quota_us").exists():
            self.path = root / "cpu" / name
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (root / "cgroup.subtree_control").write_text("+cpu")
            self.path = root / name
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.max").write_text(f"{quota} {self.PERIOD_US}")
        self.procs = self.path / "cgroup.procs"

    def join(self) -> None:
        """Move the calling process in (run in the child between fork and exec)."""
        self.procs.write_text(str(os.getpid()))

    def remove(self) -> None:
        with contextlib.suppress(OSError):  # it is busy until its processes have exited
            self.path.rmdir()


class Managed:
    """A child process in its own session, logging to a file, stopped by its own pid only."""

    def __init__(
        self, name: str, argv: list[str], env: dict, log: Path, quota: CpuQuota | None = None
    ):
        self.name, self.argv, self.env, self.log_path = name, argv, env, log
        self.quota = quota
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=self.quota.join if self.quota else None,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def pids(self) -> list[int]:
        return [self.pid, *children(self.pid)] if self.alive() else []

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def gunicorn(
    env: dict,
    port: int,
    log: Path,
    app: str = "auth_service.wsgi",
    quota: CpuQuota | None = None,
) -> Managed:
    """The web process as production starts it (gunicorn.conf.py), bound to loopback only."""
    argv = [
        str(VENV_BIN / "gunicorn"),
        "--config",
        "gunicorn.conf.py",
        app,
        "--bind",
        f"127.0.0.1:{port}",
    ]
    return Managed("web", argv, env, log, quota)


def celery_worker(env: dict, log: Path) -> Managed:
    """The worker process with the Procfile's command."""
    argv = [str(VENV_BIN / "celery"), "-A", "auth_service", "worker", "--loglevel", "INFO"]
    return Managed("worker", argv, env, log)


def answers(url: str) -> bool:
    """Whether a web process at `url` accepts a connection and answers a request at all."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("POST", "/", body=json.dumps({"password": PASSWORD}))
        return connection.getresponse().status < 500
    except OSError:
        return False
    finally:
        connection.close()


def manage(env: dict, *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True
    )


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(0.1)


# --- HTTP client for seeding and probes ---------------------------------------------------------


class Api:
    """JSON over keep-alive connections to the service, one per calling thread."""

    def __init__(self, port: int):
        self.port = port
        self._local = threading.local()

    def _conn(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self._local.conn = conn
        return conn

    def call(
        self, method: str, path: str, body: dict | None = None, token: str | None = None
    ) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json", "X-Forwarded-Proto": "https"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = json.dumps(body) if body is not None else None
        for attempt in (0, 1):
            conn = self._conn(fresh=attempt == 1)
            try:
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, OSError):
                # The server closed an idle keep-alive connection: reconnect once.
                if attempt == 1:
                    raise
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"raw": raw[:200].decode(errors="replace")}
        return response.status, data

    def ready(self) -> bool:
        try:
            return self.call("GET", "/readyz")[0] == 200
        except OSError:
            return False

    def register(self, email: str) -> None:
        status, body = self.call(
            "POST",
            "/api/v1/auth/register/",
            {"full_name": "Bench User", "email": email, "password": PASSWORD},
        )
        if status != 201:
            raise RuntimeError(f"seeding {email} failed: {status} {body}")

    def login(self, email: str) -> dict:
        status, body = self.call(
            "POST", "/api/v1/auth/login/", {"email": email, "password": PASSWORD}
        )
        if status != 200:
            raise RuntimeError(f"login of {email} failed: {status} {body}")
        return body


def in_parallel(function: Callable, items: list, workers: int = 8) -> list:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, items))


def lua_data(path: Path, **fields) -> Path:
    """Write the data a wrk script loads with dofile(): strings and lists of strings."""
    lines = ["return {"]
    for key, value in fields.items():
        if isinstance(value, list):
            lines.append(f"  {key} = {{" + ", ".join(json.dumps(v) for v in value) + "},")
        else:
            lines.append(f"  {key} = {json.dumps(value)},")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
    return path


# --- Meters -------------------------------------------------------------------------------------


class CpuMeter:
    """CPU shares over an interval: the machine, and named groups of our own processes."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups

    def start(self) -> "CpuMeter":
        self.t0 = time.monotonic()
        self.machine0 = machine_ticks()
        self.proc0 = {name: {p: cpu_ticks(p) for p in pids()} for name, pids in self.groups.items()}
        return self

    def stop(self, extra_cpu_seconds: dict[str, float] | None = None) -> dict:
        """Shares of the machine's capacity (1.0 = every core busy) plus our CPU seconds."""
        wall = time.monotonic() - self.t0
        busy1, total1 = machine_ticks()
        busy0, total0 = self.machine0
        capacity = wall * CORES
        seconds = {}
        for name, pids in self.groups.items():
            before = self.proc0[name]
            seconds[name] = sum(cpu_ticks(p) - before.get(p, 0) for p in pids()) / TICK
        seconds.update(extra_cpu_seconds or {})
        shares = {"machine": (busy1 - busy0) / max(1, total1 - total0)}
        shares.update({name: value / capacity for name, value in seconds.items()})
        shares["others"] = max(0.0, shares["machine"] - sum(seconds.values()) / capacity)
        result = {k: round(v, 3) for k, v in shares.items()}
        result["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
        return result


class RssSampler:
    """Samples RSS of groups of processes in the background; keeps each group's peak."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], interval: float = 0.25):
        self.groups, self.interval = groups, interval
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._active = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def snapshot(self) -> dict[str, list[float]]:
        return {name: [round(rss_mib(p), 1) for p in pids()] for name, pids in self.groups.items()}

    def measuring(self, on: bool) -> None:
        (self._active.set if on else self._active.clear)()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._active.is_set():
                continue
            for name, values in self.snapshot().items():
                if values:
                    self.peaks[name] = max(self.peaks.get(name, 0.0), max(values))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# --- wrk ----------------------------------------------------------------------------------------


_runs = itertools.count(1)


def wrk(
    mode: str,
    *,
    url: str,
    data_file: Path,
    connections: int,
    duration: float,
    threads: int | None = None,
    think_ms: int = 0,
    histogram: bool = False,
) -> dict:
    """One bounded wrk run of bench/load.lua; its figures plus the CPU wrk itself used, and
    with `histogram` every distinct latency with its count (to pool short runs). With a thread
    per connection, also each request's own latency (`own_latency_histogram_us`)."""
    threads = threads or min(connections, CORES)
    tag = f"{next(_runs)}-{mode}"
    argv = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{round(duration)}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "load.lua"),
        url,
        "--",
        mode,
        str(data_file),
        str(threads),
        tag,
    ]
    if threads == connections:
        # One connection per thread: load.lua can time each request as its client saw it.
        argv.append("timed")
    env = dict(os.environ, BENCH_THINK_MS=str(think_ms), BENCH_HISTOGRAM=str(int(histogram)))
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    output = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    line = next((x for x in output.splitlines() if x.startswith("BENCH_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk {mode} failed ({process.returncode}):\n{output[-2000:]}")
    result = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = result["duration_us"] / 1e6
    result.update(
        mode=mode,
        connections=connections,
        rps_2xx=result["ok"] / seconds,
        socket_error_count=sum(result["socket_errors"].values()),
        wrk_cpu_seconds=usage.ru_utime + usage.ru_stime,
        **{f"{k}_ms": v / 1000 for k, v in result.pop("latency_us").items()},
    )
    return result
