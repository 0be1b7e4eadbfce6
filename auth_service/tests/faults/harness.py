"""Private PostgreSQL, Redis and service processes that fault tests may stop, freeze and restart.

Also the small tools fault tests share: polling with a deadline, running calls concurrently.

Every instance here lives in a temporary directory on a free port and belongs to the test run
alone; the shared servers on the standard ports are never touched.
"""

import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, suppress
from pathlib import Path

import psycopg2
import redis
import requests
from aiosmtpd.controller import Controller

from testing.smtp import SmtpSink, _Collector, text_part

ROOT = Path(__file__).resolve().parents[3]


def _postgres_bin() -> Path:
    """PG_BIN if set, else the newest Debian-installed PostgreSQL (15 on these machines)."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    return installed[-1] if installed else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _postgres_bin()
VENV_BIN = Path(sys.executable).parent
PASSWORD = "correct horse battery staple"
UNAVAILABLE = {
    "detail": "The service is temporarily unavailable. Try again shortly.",
    "code": "service_unavailable",
}


class Gone(Exception):
    """Raised by a check when waiting longer is pointless (the process died)."""


def wait_for(check: Callable[[], object], *, timeout: float, what: str, every: float = 0.05):
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Gone:
            raise
        except Exception as error:  # noqa: BLE001 - any other failure means "not yet"
            last_error = error
        else:
            if result:
                return result
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last_error!r})")


def free_port(start: int = 0, end: int = 0) -> int:
    """A TCP port nobody listens on: a free one in [start, end], tried in random order (two
    test runs on one machine would otherwise both pick the first), or any ephemeral one."""
    candidates = random.sample(range(start, end + 1), end + 1 - start) if start else [0]
    for port in candidates:
        with closing(socket.socket()) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError(f"no free port in {start}-{end}")


def _as_postgres_user() -> dict:
    """initdb and postgres refuse to run as root; drop to the postgres OS user when we are root."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


class PrivatePostgres:
    """A throw-away PostgreSQL cluster: trust auth, loopback only.

    fsync is off (the OS keeps what a killed server wrote), but commits stay synchronous: a
    transaction the service saw committed must survive an immediate stop.
    """

    def __init__(self, *, host: str = "127.0.0.1", netns: "NetworkNamespace | None" = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="auth-faults-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.host = host
        self.netns = netns
        self.port = free_port() if netns is None else 5432
        self.database_url = ""
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            PG_BIN / "initdb",
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        if netns is not None:
            # initdb trusts loopback only; this server is reached from outside its namespace.
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {netns.outside}/32 trust\n")

    def _run(self, *args) -> None:
        command = [str(arg) for arg in args]
        as_user = _as_postgres_user()
        if self.netns is not None:
            # Entering a namespace needs root; drop to the postgres user inside it.
            command = self.netns.exec_prefix() + ["runuser", "-u", "postgres", "--", *command]
            as_user = {}
        done = subprocess.run(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.dir, **as_user
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stderr.decode()}\n{log[-2000:]}")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@{self.host}:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={self.host} "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "start")

    def stop(self) -> None:
        """Stop at once, like a crash or a lost host: clients' connections just die."""
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def freeze(self) -> None:
        """Every process of the server stops running, as on a stalled disk or a paused host;
        its kernel still accepts connections and acknowledges what clients send."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGSTOP)  # first: a stopped postmaster starts no backend
        self._frozen = [postmaster, *_children(postmaster)]
        for pid in self._frozen[1:]:
            with suppress(ProcessLookupError):  # a backend that was just ending
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in getattr(self, "_frozen", []):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._frozen = []

    def create_database(self, name: str) -> None:
        """Create the service's database; its URL is then ``database_url``."""
        with closing(psycopg2.connect(self.url())) as conn:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        self.database_url = self.url(name)

    def destroy(self) -> None:
        if self.is_running():
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            # "pid (name) state ppid ...": the name may hold spaces, so split after its ")".
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return children


class PrivateRedis:
    """A throw-away redis-server that keeps nothing on disk."""

    def __init__(self, *, host: str = "127.0.0.1", netns: "NetworkNamespace | None" = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="auth-faults-redis-"))
        # Redis's working folder (where a snapshot would go), apart from its log.
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir()
        self.host = host
        self.netns = netns
        self.port = free_port() if netns is None else 6379
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(db), socket_timeout=2)

    def start(self, *, wait: bool = True) -> None:
        prefix = self.netns.exec_prefix() if self.netns is not None else []
        self.process = subprocess.Popen(
            [*prefix, "redis-server", "--port", str(self.port), "--bind", self.host]
            + ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
            + ["--dir", str(self.data_dir), "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if wait:
            wait_for(lambda: self.client().ping(), timeout=10, what="private Redis")

    def stop(self) -> None:
        """Kill the server: every connection drops and every key is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def fail_snapshots(self) -> None:
        """Redis refuses writes with MISCONF, as when a snapshot could not be saved (a full or
        broken disk, under `stop-writes-on-bgsave-error`, Redis's default)."""
        client = self.client()
        client.config_set("save", "3600 1")
        shutil.rmtree(self.data_dir)  # the snapshot has nowhere to go
        client.bgsave()
        wait_for(
            lambda: client.info("persistence")["rdb_last_bgsave_status"] == "err",
            timeout=10,
            what="a failed snapshot",
        )

    def mend_snapshots(self) -> None:
        """Writes again: no snapshots configured, none to fail."""
        self.client().config_set("save", "")
        self.data_dir.mkdir(exist_ok=True)  # for a restart

    def run_busy_script(self) -> None:
        """Redis answers every command with BUSY: a Lua script runs past its time limit."""
        client = self.client()
        client.config_set("busy-reply-threshold", 10)
        spinner = redis.Redis.from_url(self.url())
        threading.Thread(
            target=lambda: _ignore_errors(spinner.eval, "while true do end", 0), daemon=True
        ).start()
        wait_for(lambda: _is_busy(client), timeout=10, what="a busy Redis")

    def end_busy_script(self) -> None:
        client = self.client()
        try:
            client.script_kill()
        except redis.ResponseError as error:
            if not str(error).startswith("NOTBUSY"):
                raise

    def freeze(self) -> None:
        """The server stops answering but keeps its sockets open, like a host that hangs."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def destroy(self) -> None:
        if self.process is not None:
            self.thaw()
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _ignore_errors(call, *args) -> None:
    with suppress(redis.RedisError):  # the script is killed: that is its end
        call(*args)


def _is_busy(client: redis.Redis) -> bool:
    try:
        client.ping()
    except redis.ResponseError as error:
        return str(error).startswith("BUSY")
    return False


class NetworkNamespace:
    """A network of its own joined to ours by a veth pair; its firewall can cut it off.

    Dropping packets (rather than closing sockets) is what a lost network path looks like: no
    reset, no reply, sent data never acknowledged. Needs root and iproute2/iptables.
    """

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.name = f"authf-{suffix}"
        subnet = int(suffix[:2], 16)
        self.outside, self.inside = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
        outer, inner = f"afo{suffix}", f"afi{suffix}"
        self._ip("netns", "add", self.name)
        self._ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        self._ip("link", "set", inner, "netns", self.name)
        self._ip("addr", "add", f"{self.outside}/30", "dev", outer)
        self._ip("link", "set", outer, "up")
        self._inside("ip", "addr", "add", f"{self.inside}/30", "dev", inner)
        self._inside("ip", "link", "set", inner, "up")
        self._inside("ip", "link", "set", "lo", "up")

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0 and bool(shutil.which("ip")) and bool(shutil.which("iptables"))

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def use_nameserver(self, address: str) -> None:
        """Processes started inside from now on ask `address` for names (`ip netns exec`
        mounts this file over /etc/resolv.conf)."""
        folder = Path("/etc/netns") / self.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "resolv.conf").write_text(f"nameserver {address}\n")

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def _inside(self, *args: str) -> None:
        subprocess.run([*self.exec_prefix(), *args], check=True, capture_output=True)

    def cut(self) -> None:
        """Drop every packet in and out, silently."""
        self._inside("iptables", "-A", "INPUT", "-j", "DROP")
        self._inside("iptables", "-A", "OUTPUT", "-j", "DROP")

    def mend(self) -> None:
        self._inside("iptables", "-F")

    def destroy(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        shutil.rmtree(Path("/etc/netns") / self.name, ignore_errors=True)


class Blackhole:
    """A listener that accepts TCP connections and never answers: a host that hangs."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)

    def close(self) -> None:
        self.sock.close()


def prepare(env: dict[str, str]) -> None:
    """What the build and the pre-deploy step do before the service starts: create the tables
    in the database ``env`` points at, and gather the static files (pages that link a
    stylesheet fail without its manifest entry)."""
    for command in ("migrate", "collectstatic"):
        subprocess.run(
            [sys.executable, "manage.py", command, "--noinput"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )


class Process:
    """A service process (gunicorn or a Celery worker) with its output kept in a log file."""

    def __init__(self, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            # A session of its own, so the process and its children can be killed together.
            self.process = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise Gone(f"{self.args[0]} exited with {self.process.returncode}:\n{self.output()}")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class WebServer(Process):
    """The real service under gunicorn, as production runs it, on a port of its own."""

    def __init__(self, *, env: dict[str, str], log: Path, workers: int = 3) -> None:
        self.workers = workers
        self.port = free_port(8300, 8399)
        self.base = f"http://127.0.0.1:{self.port}"
        # The production command line (Procfile, render.yaml), on a port of the tests' own.
        args = [str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "auth_service.wsgi"]
        args += ["--bind", f"127.0.0.1:{self.port}", "--workers", str(workers)]
        super().__init__(args, env=env, log=log)

    def start(self) -> None:
        super().start()

        def healthy() -> bool:
            self.check_alive()
            # Bound by this gunicorn, not answered by another process that took the port first
            # (gunicorn keeps retrying a port in use before it gives up).
            if f"Listening at: {self.base}" not in self.output():
                return False
            return requests.get(f"{self.base}/healthz", timeout=2).ok

        wait_for(healthy, timeout=30, what=f"gunicorn on :{self.port}")

    def url(self, path: str) -> str:
        return self.base + path


class Client:
    """JSON over HTTP to a running WebServer; every call has a hard client-side timeout."""

    def __init__(self, server: WebServer) -> None:
        self.server = server

    def call(self, method: str, path: str, *, json=None, token: str | None = None, timeout=15):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(
            method, self.server.url(path), json=json, headers=headers, timeout=timeout
        )

    def post(self, path: str, json=None, **kwargs) -> requests.Response:
        return self.call("POST", path, json=json, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.call("GET", path, **kwargs)


def start(call) -> Future:
    """Run one callable in the background; ``.result(timeout)`` collects its outcome."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future


def concurrently(calls, workers: int | None = None) -> list:
    """Run the callables at the same time; results in the same order."""
    with ThreadPoolExecutor(max_workers=workers or len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def backends_waiting_on_lock(conn, count: int, *, timeout: float = 15) -> None:
    """Wait until ``count`` service requests are blocked on a lock the test holds."""

    def waiting() -> bool:
        with closing(psycopg2.connect(conn.dsn)) as probe, probe.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND pid <> %s",
                [conn.get_backend_pid()],
            )
            return cursor.fetchone()[0] >= count

    wait_for(waiting, timeout=timeout, what=f"{count} requests blocked on the lock")


class Worker(Process):
    """The real Celery worker, started with the production command line."""

    def __init__(self, *, env: dict[str, str], log: Path, concurrency: int = 1) -> None:
        args = [str(VENV_BIN / "celery"), "-A", "auth_service", "worker", "--loglevel", "INFO"]
        args += [
            "--concurrency",
            str(concurrency),
            "--hostname",
            f"faults-{uuid.uuid4().hex[:8]}@%h",
        ]
        super().__init__(args, env=env, log=log)

    def start(self, *, wait: bool = True) -> None:
        super().start()
        if wait:
            self.wait_until_ready()

    def wait_until_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            self.check_alive()
            return " ready." in self.output()

        wait_for(ready, timeout=timeout, what="the Celery worker")

    def wait_for_log(self, text: str, *, count: int = 1, timeout: float = 30) -> None:
        wait_for(
            lambda: self.output().count(text) >= count,
            timeout=timeout,
            what=f"{count} x {text!r} in the worker log",
        )

    def pool_processes(self) -> list[int]:
        """The prefork pool's child processes (where tasks run)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def kill_all(self) -> None:
        """SIGKILL the worker and its pool at once, as when its machine or container dies."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


class HoldingSmtpSink(SmtpSink):
    """The shared SMTP sink, plus a hold: while held, sessions stop at RCPT TO and wait.

    A session held there has sent nothing that counts as a message, so killing its sender then
    is killing it mid-task without anything delivered.
    """

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.held = 0
        self._refusal: Callable[[], None] | None = None
        self._controller = Controller(_Holding(self), hostname="127.0.0.1", port=self.port)

    def release(self) -> None:
        self.holding = False

    def refuse_next_message(self, first: Callable[[], None]) -> None:
        """Answer the next message with a transient 451 (the sender should try again later),
        calling `first` just before the sender reads that answer."""
        self._refusal = first

    def client_env(self) -> dict[str, str]:
        """The settings that make the service send its email here."""
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(self.port),
        }


class _Holding(_Collector):
    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook name
        refusal, self.sink._refusal = self.sink._refusal, None
        if refusal is not None:
            refusal()
            return "451 4.3.0 Try again later"
        return await super().handle_DATA(server, session, envelope)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if self.sink.holding:
            self.sink.held += 1
            while self.sink.holding:
                await asyncio.sleep(0.02)
        envelope.rcpt_tos.append(address)
        return "250 OK"


def queued(redis_client) -> tuple[int, int]:
    """Messages waiting in the Celery queue, and messages taken by a worker but not yet acked."""
    return redis_client.llen("celery"), redis_client.hlen("unacked")


def json_lines(output: str) -> list[dict]:
    """The JSON log lines of a process's output, but for the last one if it is still being
    written (no newline yet)."""
    return [json.loads(line) for line in output.split("\n")[:-1] if line.startswith("{")]


def link_token(message) -> str:
    """The reset token in an email's link."""
    return re.search(r"/reset-password/\?token=([0-9a-f]{64})", text_part(message)).group(1)
