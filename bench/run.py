"""Load benchmark of auth_service, measured the way clients feel it (see bench/README.md).

Starts the service as production does (gunicorn with gunicorn.conf.py, DEBUG off, persistent
database connections, the real Celery worker) on its own database and Redis DB, seeds users
through the API and drives it with wrk from separate processes. Prints a markdown table and
writes bench/results/<timestamp>.json and .md.
"""

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness as h  # noqa: E402
import redis  # noqa: E402

from auth_service.cpus import cpus_for_quota  # noqa: E402
from testing.smtp import SmtpSink, free_port  # noqa: E402

FORGOT = "/api/v1/auth/password/forgot/"

# The mixed load: 32 clients at once. Forgot clients pause between requests (people ask for a
# reset rarely); every other client sends its next request as soon as the last one answered.
# me and refresh, whose latency the target is about, run a wrk thread per connection, so each
# request is also timed as its client saw it (bench/load.lua, `timed`).
MIX = [
    # (mode, connections, wrk threads, think ms)
    ("me", 10, 10, 0),
    ("refresh", 8, 8, 0),
    ("login", 6, 2, 0),
    ("register", 4, 2, 0),
    ("forgot_mixed", 4, 2, 100),
]

TARGETS = {
    "login_vs_hash_ceiling": 0.80,
    "register_vs_hash_ceiling": 0.80,
    "login_p50_c2_vs_verify": 1.5,
    "me_rps": 2500,
    "me_vs_ceiling": 0.40,
    "refresh_rps": 900,
    "forgot_p95_ms": 5.0,
    "forgot_median_ratio": (0.9, 1.1),
    "email_p95_ms": 1000.0,
    "mixed_p95_ms": 100.0,
    # The same targets at the speed of the machine they were set on (see REFERENCE_RPS).
    "me_rps_at_reference": 2500,
    "refresh_rps_at_reference": 900,
    "forgot_p95_at_reference_ms": 5.0,
    # The cheap requests wait behind CPU work (hashing, each other): their latency scales with
    # the machine's speed as forgot's does.
    "mixed_p95_at_reference_ms": 100.0,
    # The same latencies timed per request from sending to answer, without wrk's correction for
    # coordinated omission (bench/README.md, Columns).
    "forgot_sent_p95_ms": 5.0,
    "forgot_sent_p95_at_reference_ms": 5.0,
    "mixed_sent_p95_ms": 100.0,
    "mixed_sent_p95_at_reference_ms": 100.0,
}

# What a plain Django endpoint under two sync gunicorn workers served on the machine where the
# targets were set; bench/reference_app.py served the same way measures this machine's speed.
REFERENCE_RPS = 6000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s scenarios, 15 s mixed load")
    parser.add_argument("--port", type=int, default=0, help="web port (default: a free one)")
    parser.add_argument("--smtp-port", type=int, default=0, help="SMTP sink port (default: free)")
    parser.add_argument("--connections", type=int, default=16, help="clients per scenario")
    parser.add_argument("--label", default="", help="a note stored with the results")
    parser.add_argument(
        "--web-cpus",
        type=float,
        default=None,
        help="hold the web processes to this many CPUs (a cgroup CPU quota, as a 0.5-CPU plan "
        "does; needs root); PASSWORD_HASH_SLOTS follows it unless set",
    )
    parser.add_argument(
        "--only",
        type=lambda value: set(value.split(",")),
        default=set(),
        help="comma-separated subset: ceiling,me,refresh,login,register,forgot,email,mixed",
    )
    return parser.parse_args(argv)


# Counts add up over a scenario's rounds; CPU seconds too, and the CPU per answered request
# and the capacity come from those sums. Rates are each round's own: their median is reported.
# Percentiles are those of every round's requests together, from wrk's histograms (the median
# of the rounds' p95s is not the p95 of the scenario's requests: a slow round's tail would be
# voted away); without histograms, the median of the rounds' own.
ROUND_COUNTS = ("requests", "duration_us", "ok", "known_ok", "unknown_ok", "known_sent")
ROUND_COUNTS += ("non2xx", "s5xx", "socket_error_count", "wrk_cpu_seconds")
ROUND_MEDIANS = ("rps_2xx", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms")


def merge_rounds(results: list[dict]) -> dict:
    merged = dict(results[0])
    for key in ROUND_COUNTS:
        merged[key] = sum(r[key] for r in results)
    for key in ROUND_MEDIANS:
        merged[key] = statistics.median(r[key] for r in results)
    merged["max_ms"] = max(r["max_ms"] for r in results)
    for prefix in ("", "own_"):
        key = f"{prefix}latency_histogram_us"
        merged.pop(key, None)
        if all(key in r for r in results):
            pooled = pool_histograms(r[key] for r in results)
            merged.update(
                {f"{prefix}{name}": v for name, v in histogram_percentiles(pooled).items()}
            )
    parts = results[0]["cpu"]["seconds"]
    seconds = {part: sum(r["cpu"]["seconds"][part] for r in results) for part in parts}
    shares = {
        part: statistics.median(r["cpu"][part] for r in results)
        for part in results[0]["cpu"]
        if part != "seconds"
    }
    merged["cpu"] = {**shares, "seconds": seconds}
    service = sum(seconds.get(part, 0.0) for part in ("server", "postgres", "worker"))
    if merged["ok"] and service:
        merged["service_cpu_ms"] = service / merged["ok"] * 1000
        merged["capacity_rps"] = h.CORES / (service / merged["ok"])
    return merged


def pool_histograms(histograms: Iterable[list[list[int]]]) -> dict[int, int]:
    """One histogram of several runs' `[[µs, count], ...]` lists."""
    pooled: dict[int, int] = {}
    for histogram in histograms:
        for value, count in histogram:
            pooled[value] = pooled.get(value, 0) + count
    return pooled


def add_own_percentiles(result: dict) -> None:
    """own_p50_ms ... own_p99_ms of a timed run: each request from sending to answer."""
    if result.get("own_latency_histogram_us"):
        pooled = pool_histograms([result["own_latency_histogram_us"]])
        result.update({f"own_{k}": v for k, v in histogram_percentiles(pooled).items()})


def without_histograms(value):
    """The report without the histograms kept for pooling (thousands of pairs each)."""
    if isinstance(value, dict):
        return {
            k: without_histograms(v) for k, v in value.items() if not k.endswith("histogram_us")
        }
    if isinstance(value, list):
        return [without_histograms(v) for v in value]
    return value


def histogram_percentiles(histogram: dict[int, int]) -> dict:
    """p50/p90/p95/p99 and the mean in ms of a latency histogram in µs, ranked as wrk ranks."""
    total = sum(histogram.values())
    found = {"mean_ms": sum(v * c for v, c in histogram.items()) / total / 1000}
    for p in (50, 90, 95, 99):
        rank = math.floor(p / 100 * total + 1)  # wrk's round(p / 100 * n + 0.5)
        seen = 0
        for value in sorted(histogram):
            seen += histogram[value]
            if seen >= rank:
                found[f"p{p}_ms"] = value / 1000
                break
    return found


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.duration = 5 if args.quick else 15
        self.mixed_duration = 15 if args.quick else 60
        self.port = args.port or free_port()
        self.smtp_port = args.smtp_port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.logs = h.RESULTS / f"{self.stamp}-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.database_url = h.bench_database_url()
        self.redis_url = h.bench_redis_url()
        self.env = h.service_env(
            port=self.port,
            smtp_port=self.smtp_port,
            database_url=self.database_url,
            redis_url=self.redis_url,
        )
        self.redis = redis.Redis.from_url(self.redis_url)
        self.sink = SmtpSink(self.smtp_port)
        # In a container the service reads its quota from its own cgroup; this one is nested,
        # so it is told the slot count the quota would give it.
        self.quota = h.CpuQuota(args.web_cpus) if args.web_cpus else None
        if self.quota and not os.environ.get("PASSWORD_HASH_SLOTS"):
            self.env["PASSWORD_HASH_SLOTS"] = str(cpus_for_quota(args.web_cpus))
        self.web = h.gunicorn(self.env, self.port, self.logs / "web.log", quota=self.quota)
        self.reference_port = free_port()
        self.reference_web = h.Managed(
            "reference",
            [
                str(h.VENV_BIN / "gunicorn"),
                "--workers=2",
                "--worker-class=sync",
                f"--bind=127.0.0.1:{self.reference_port}",
                "bench.reference_app:application",
            ],
            self.env,
            self.logs / "reference-web.log",
        )
        self.hash_port = free_port()
        self.hash_web = h.gunicorn(
            self.env,
            self.hash_port,
            self.logs / "hash-web.log",
            app="bench.hash_app:application",
            quota=self.quota,
        )
        self.worker = h.celery_worker(self.env, self.logs / "worker.log")
        self.api = h.Api(self.port)
        self.report: dict = {
            "date": self.stamp,
            "label": args.label,
            "quick": args.quick,
            "only": sorted(args.only),
            "cores": h.CORES,
            "loadavg_before": os.getloadavg(),
            "server": {
                "command": " ".join(self.web.argv),
                "WEB_CONCURRENCY": self.env.get("WEB_CONCURRENCY", "(config default)"),
                "GUNICORN_WORKER_CLASS": self.env.get("GUNICORN_WORKER_CLASS", "(default)"),
                "GUNICORN_THREADS": self.env.get("GUNICORN_THREADS", "(config default)"),
                "PASSWORD_HASH_SLOTS": self.env.get("PASSWORD_HASH_SLOTS", "(the CPUs)"),
                "web_cpus": args.web_cpus,
            },
            "scenarios": {},
        }
        self.cpu_groups = {
            "server": self.web.pids,
            "worker": self.worker.pids,
            "postgres": lambda: h.database_backends(self.database_url),
        }
        self.rss = h.RssSampler({"web worker": self.web_workers, "celery": self.worker.pids})

    def web_workers(self) -> list[int]:
        return h.children(self.web.pid) if self.web.alive() else []

    # --- set-up ---------------------------------------------------------------------------------

    def start(self) -> None:
        h.ensure_wrk()
        h.say(f"fresh database {self.database_url.rsplit('/', 1)[1]}, Redis {self.redis_url}")
        h.recreate_database(self.database_url)
        h.manage(self.env, "migrate", "--noinput")
        h.manage(self.env, "collectstatic", "--noinput")
        self.redis.flushdb()
        self.sink.start()
        h.say(f"starting gunicorn on {self.url}: {' '.join(self.web.argv[1:])}")
        self.web.start()
        h.wait_until(self.api.ready, "the service answering /readyz")

    def stop(self) -> None:
        self.worker.stop()
        self.web.stop()
        self.hash_web.stop()
        self.reference_web.stop()
        self.sink.stop()
        self.rss.close()
        if self.quota:
            self.quota.remove()

    def seed(self) -> None:
        count = 32 if self.args.quick else 64
        mail_count = 15 if self.args.quick else 40
        h.say(f"seeding {count + mail_count} users through the API")
        self.users = [f"user{i}-{self.stamp.lower()}@bench.example" for i in range(count)]
        self.mail_users = [f"mail{i}-{self.stamp.lower()}@bench.example" for i in range(mail_count)]
        h.in_parallel(self.api.register, self.users + self.mail_users)

    def data_file(self, name: str, *, sessions: int = 0) -> Path:
        """Seed data for wrk; `sessions` fresh logins give access and refresh tokens."""
        pairs = h.in_parallel(
            self.api.login, [self.users[i % len(self.users)] for i in range(sessions)]
        )
        return h.lua_data(
            self.logs / f"{name}.lua",
            run=self.stamp.lower(),
            password=h.PASSWORD,
            users=self.users,
            access=[p["access"] for p in pairs],
            refresh=[p["refresh"] for p in pairs],
        )

    # --- measuring ------------------------------------------------------------------------------

    def settle(self, timeout: float = 60) -> None:
        """Wait until the server finished the requests a stopped wrk left queued."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            meter = h.CpuMeter({"server": self.web.pids}).start()
            time.sleep(0.5)
            if meter.stop()["server"] < 0.05:
                return

    def load(self, name: str, runs: list[dict], *, web: h.Managed | None = None) -> list[dict]:
        """Run wrk processes side by side against the service (or another web process);
        CPU shares over the whole interval."""
        web = web or self.web
        url = self.url_of(web)
        self.settle()
        results: list[dict | None] = [None] * len(runs)
        errors: list[Exception] = []

        def one(index: int, spec: dict) -> None:
            try:
                results[index] = h.wrk(url=url, **spec)
            except Exception as error:  # noqa: BLE001 - reported after the join
                errors.append(error)

        meter = h.CpuMeter({**self.cpu_groups, "server": web.pids}).start()
        self.rss.measuring(True)
        threads = [threading.Thread(target=one, args=(i, spec)) for i, spec in enumerate(runs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.rss.measuring(False)
        if errors:
            raise errors[0]
        cpu = meter.stop({"load generator": sum(r["wrk_cpu_seconds"] for r in results)})
        for result in results:
            add_own_percentiles(result)
        # What the service spent per answered request: web processes and their PostgreSQL
        # backends (and the worker, which only works for forgot). Unlike req/s, this hardly
        # moves when other processes compete for the cores.
        service = sum(cpu["seconds"][k] for k in ("server", "postgres", "worker"))
        answered = sum(r["ok"] for r in results)
        for result in results:
            result["cpu"] = cpu
            if len(results) == 1 and answered:
                result["service_cpu_ms"] = service / answered * 1000
                result["capacity_rps"] = h.CORES / (service / answered)
        h.say(
            f"{name}: "
            + "; ".join(
                f"{r['mode']} {r['rps_2xx']:.0f} 2xx/s p50 {r['p50_ms']:.1f} "
                f"p95 {r['p95_ms']:.1f} ms"
                + (f" (sent→answer {r['own_p95_ms']:.1f})" if "own_p95_ms" in r else "")
                + f", non-2xx {r['non2xx']}, socket errors "
                f"{r['socket_error_count']}"
                + (
                    f", refresh chains restarted {r['chain_restarts']}"
                    if r.get("chain_restarts")
                    else ""
                )
                for r in results
            )
            + f"; cpu {cpu}"
        )
        return results

    def single(
        self, name: str, mode: str, data: Path, web: h.Managed | None = None, **spec
    ) -> dict:
        (result,) = self.load(name, [{"mode": mode, "data_file": data, **spec}], web=web)
        self.report["scenarios"][name] = result
        return result

    def hash_floor(self) -> dict:
        floor = self._measure_floor()
        h.say(f"hash floor: {floor}")
        self.report["hash_floor"] = floor
        return floor

    def _measure_floor(self) -> dict:
        output = subprocess.run(
            [sys.executable, str(h.BENCH / "hashfloor.py")],
            cwd=h.ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        floor = json.loads(output.strip().splitlines()[-1])
        floor["ceiling_rps"] = h.CORES / (floor["verify_ms"] / 1000)
        return floor

    def hash_endpoint(self, data: Path, **spec) -> None:
        """Logins' requests sent to bench/hash_app.py, served as the service is: the hash
        without the service's own work."""
        self.on_own_server("hash_endpoint", "login", data, self.hash_web, **spec)

    def reference(self, data: Path, **spec) -> None:
        """The plain Django endpoint the targets' machine was measured with, on this machine."""
        self.on_own_server("reference", "healthz", data, self.reference_web, **spec)

    def on_own_server(self, name: str, mode: str, data: Path, web: h.Managed, **spec) -> None:
        """A scenario against a web process started for it alone and stopped right after."""
        web.start()
        url = self.url_of(web)
        h.wait_until(lambda: h.answers(url), f"{url} answering")
        try:
            self.single(name, mode, data, web=web, **spec)
        finally:
            web.stop()

    def url_of(self, web: h.Managed) -> str:
        port = {self.hash_web: self.hash_port, self.reference_web: self.reference_port}
        return f"http://127.0.0.1:{port[web]}" if web in port else self.url

    def beside_floors(self, name: str, measure: Callable[[], object]) -> None:
        """Run a hashing scenario between two hash floors, taken with the server idle.

        This machine's speed drifts by up to a third within minutes: one floor taken at the
        start put the same login throughput at 0.70 or 0.85 of "the" ceiling in consecutive
        runs. A ratio is only meaningful against the hasher's speed at the time, so each hashing
        scenario is compared with the hasher's speed just before and just after it: the median
        of all 80 timings of the two floors. A hash and a verify run the same Argon2
        computation, and pooled they outvote a spike in one floor's batch (at 09:55 one
        verify batch took 28.0 ms while the hash batch beside it took 20.5 ms; the mean of
        the two floors' medians put that run's logins at 0.84 of the ceiling, this at 0.72).
        """
        self.settle()
        before = self._measure_floor()
        measure()
        self.settle()
        after = self._measure_floor()
        floor = pooled_floor(before, after)
        argon2_ms = floor["verify_ms"]
        verifies = f"{before['verify_ms']:.1f}, then {after['verify_ms']:.1f} ms"
        h.say(f"hash floor around {name}: verify {verifies}, pooled median {argon2_ms:.1f} ms")
        self.report.setdefault("floors_beside", {})[name] = floor

    def forgot(self, data: Path) -> None:
        """Known and unknown emails at 2 clients (throughput, p95), then at 1 client (the
        known/unknown timing ratio), each in eight rounds of a known and an unknown run with
        the order flipped every round.

        Two reasons for the ratio's own runs. Each wrk run opens new connections, and when both
        land on one gunicorn worker every request waits for the other's turn at that worker's
        interpreter: p50 jumps from 1.9 to 3.2 ms on a coin toss, which no code path explains.
        And this machine's speed drifts within seconds, so each round compares two adjacent
        runs and the median of the eight rounds' ratios is reported.
        """
        duration = max(1, self.duration // 8)
        runs = self._forgot_rounds(data, clients=2, duration=duration)
        for mode, results in runs.items():
            self.report["scenarios"][mode] = merge_rounds(results)
        single = self._forgot_rounds(data, clients=1, duration=duration)
        self.report["forgot_round_ratios"] = [
            known["p50_ms"] / unknown["p50_ms"]
            for known, unknown in zip(single["forgot_known"], single["forgot_unknown"], strict=True)
        ]
        # Tasks queued while the worker was off would be sent later and skew the email figures.
        self.redis.delete("celery")

    def _forgot_rounds(self, data: Path, *, clients: int, duration: int) -> dict[str, list]:
        runs = {"forgot_known": [], "forgot_unknown": []}
        order = list(runs)
        for round_ in range(8):
            for mode in order if round_ % 2 == 0 else order[::-1]:
                runs[mode].append(
                    self.single(
                        "_forgot",
                        mode,
                        data,
                        connections=clients,
                        duration=duration,
                        histogram=True,
                    )
                )
        self.report["scenarios"].pop("_forgot")
        return runs

    def start_worker(self) -> None:
        if self.worker.alive():
            return
        self.worker.start()
        h.wait_until(lambda: "ready" in self.worker.log(), "the worker reporting ready")
        time.sleep(2)
        self.report["rss_at_rest"]["celery"] = self.rss.snapshot()["celery"]

    def email_latency(self) -> dict:
        """Forgot request to message in the SMTP sink, one at a time, through an idle worker."""
        h.say("email latency through the worker")
        self.start_worker()
        latencies = []
        for email in self.mail_users:
            before = len(self.sink.messages)
            start = time.monotonic()
            status, _ = self.api.call("POST", FORGOT, {"email": email})
            if status != 202:
                raise RuntimeError(f"forgot answered {status}")
            h.wait_until(lambda before=before: len(self.sink.messages) > before, "an email")
            if self.sink.messages[before]["To"] != email:
                raise RuntimeError("the sink received an email for someone else")
            latencies.append((self.sink.arrival_times[before] - start) * 1000)
            time.sleep(0.2)
        latencies.sort()
        result = {
            "count": len(latencies),
            "p50_ms": statistics.median(latencies),
            "p95_ms": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
            "max_ms": latencies[-1],
        }
        h.say(f"email latency: {result}")
        self.report["scenarios"]["email"] = result
        return result

    def mixed(self) -> None:
        self.start_worker()
        # A session per me thread and per refresh chain: me's from the end of the list, the
        # chains' from the start (bench/load.lua), so no family is shared between them.
        sessions = sum(threads for mode, _, threads, _ in MIX if mode in ("me", "refresh"))
        data = self.data_file("mixed", sessions=sessions)
        results = self.load(
            "mixed",
            [
                {
                    "mode": mode,
                    "data_file": data,
                    "connections": connections,
                    "threads": threads,
                    "duration": self.mixed_duration,
                    "think_ms": think,
                }
                for mode, connections, threads, think in MIX
            ],
        )
        self.report["scenarios"]["mixed"] = {r["mode"]: r for r in results}

    def redis_memory(self) -> None:
        """MEMORY USAGE of the keys the service keeps per pending reset and per throttle."""
        kinds = {
            # First: the benchmark's limits are per second, so a login's keys live one second.
            "throttle counter, one request (auth:counter:*)": "auth:counter:*",
            "reset token (auth:reset:token:*)": "auth:reset:token:*",
            "reset token's binding (auth:reset:bind:*)": "auth:reset:bind:*",
            "reset user pointer (auth:reset:user:*)": "auth:reset:user:*",
            "reset live set, one token (auth:reset:live:*)": "auth:reset:live:*",
            "reset sent marker (auth:reset:sent:*)": "auth:reset:sent:*",
        }
        time.sleep(1.1)  # every earlier request's counters gone
        self.api.login(self.users[0])
        memory = {}
        for label, pattern in kinds.items():
            sizes = []
            for key in self.redis.scan_iter(match=pattern, count=1000):
                size = self.redis.memory_usage(key)
                if size is None:  # expired between SCAN and MEMORY USAGE (throttle windows)
                    continue
                sizes.append(size)
                if len(sizes) == 200:
                    break
            if sizes:
                memory[label] = {"sampled": len(sizes), "bytes_avg": statistics.mean(sizes)}
        self.report["redis_memory"] = memory

    def run(self) -> None:
        d, c = self.duration, self.args.connections
        self.start()
        self.seed()
        self.hash_floor()
        data = self.data_file("main", sessions=c)
        h.say("warming up")
        self.load(
            "warm-up",
            [
                {"mode": m, "data_file": data, "connections": 4, "duration": 2}
                for m in ("healthz", "me")
            ],
        )
        self.report["rss_at_rest"] = {"web worker": self.rss.snapshot()["web worker"]}
        steps = {
            "ceiling": lambda: (
                self.reference(data, connections=c, duration=d),
                self.single("ceiling", "healthz", data, connections=c, duration=d),
            ),
            "me": lambda: self.single("me", "me", data, connections=c, duration=d),
            "refresh": lambda: self.single(
                "refresh", "refresh", data, connections=c, threads=c, duration=d
            ),
            "login": lambda: (
                self.beside_floors(
                    "hash_endpoint",
                    lambda: self.hash_endpoint(data, connections=c, duration=d),
                ),
                self.beside_floors(
                    "login_c2",
                    lambda: self.single("login_c2", "login", data, connections=2, duration=d),
                ),
                self.beside_floors(
                    "login",
                    lambda: self.single("login", "login", data, connections=c, duration=d),
                ),
            ),
            "register": lambda: self.beside_floors(
                "register",
                lambda: self.single("register", "register", data, connections=c, duration=d),
            ),
            "forgot": lambda: self.forgot(data),
            "email": self.email_latency,
            "mixed": lambda: self.beside_floors("mixed", self.mixed),
        }
        for name, step in steps.items():
            if not self.args.only or name in self.args.only:
                step()
        self.redis_memory()
        self.report["postgres_connections"] = len(h.database_backends(self.database_url))
        self.report["rss_peak_under_load"] = self.rss.peaks
        self.report["loadavg_after"] = os.getloadavg()
        self.report["ratios"] = ratios(self.report)


def pooled_floor(before: dict, after: dict) -> dict:
    """The hasher's speed around a scenario: the median of every hash and verify timing of
    the floors before and after it (see Bench.beside_floors)."""
    timings = [
        ms
        for floor in (before, after)
        for kind in ("hash", "verify")
        for ms in floor["samples_ms"][kind]
    ]
    argon2_ms = statistics.median(timings)
    return {
        "hash_ms": argon2_ms,
        "verify_ms": argon2_ms,
        "parallel_verify_rps": statistics.mean(
            [before["parallel_verify_rps"], after["parallel_verify_rps"]]
        ),
        "samples": [before, after],
    }


def hash_ceiling(report: dict, scenario: str, kind: str = "verify_ms") -> float:
    """Requests/s the cores could serve doing nothing but this hash, at the scenario's time."""
    return report["cores"] / (report["floors_beside"][scenario][kind] / 1000)


def ratios(report: dict) -> dict:
    """Each figure against its limit; figures of scenarios that did not run are left out.

    Logins verify a password and registrations hash one, so each is held against that cost,
    measured beside it (Bench.beside_floors).
    """
    s, floors = report["scenarios"], report.get("floors_beside", {})

    def hashing_share(scenario: str, results: dict) -> float:
        """The share of all cores the scenario's logins and registrations would take at the
        hash floor's speed: 1.0 is a server that does nothing but hash."""
        floor = floors[scenario]
        busy_ms = results["login"]["rps_2xx"] * floor["verify_ms"]
        busy_ms += results.get("register", {}).get("rps_2xx", 0) * floor["hash_ms"]
        return busy_ms / 1000 / report["cores"]

    formulas = {
        "login_vs_hash_ceiling": lambda: s["login"]["rps_2xx"] / hash_ceiling(report, "login"),
        "hash_endpoint_vs_hash_ceiling": lambda: (
            s["hash_endpoint"]["rps_2xx"] / hash_ceiling(report, "hash_endpoint")
        ),
        "parallel_hashing_vs_hash_ceiling": lambda: (
            floors["login"]["parallel_verify_rps"] / hash_ceiling(report, "login")
        ),
        "register_vs_hash_ceiling": lambda: (
            s["register"]["rps_2xx"] / hash_ceiling(report, "register", "hash_ms")
        ),
        "login_p50_c2_vs_verify": lambda: s["login_c2"]["p50_ms"] / floors["login_c2"]["verify_ms"],
        "me_rps": lambda: s["me"]["rps_2xx"],
        "me_vs_ceiling": lambda: s["me"]["rps_2xx"] / s["ceiling"]["rps_2xx"],
        "me_capacity_vs_ceiling_capacity": lambda: (
            s["me"]["capacity_rps"] / s["ceiling"]["capacity_rps"]
        ),
        "login_capacity_vs_hash_ceiling": lambda: (
            s["login"]["capacity_rps"] / hash_ceiling(report, "login")
        ),
        "refresh_rps": lambda: s["refresh"]["rps_2xx"],
        "refresh_vs_ceiling": lambda: s["refresh"]["rps_2xx"] / s["ceiling"]["rps_2xx"],
        "forgot_p95_ms": lambda: max(s["forgot_known"]["p95_ms"], s["forgot_unknown"]["p95_ms"]),
        "forgot_median_ratio": lambda: statistics.median(report["forgot_round_ratios"]),
        "email_p95_ms": lambda: s["email"]["p95_ms"],
        "mixed_p95_ms": lambda: max(s["mixed"]["me"]["p95_ms"], s["mixed"]["refresh"]["p95_ms"]),
        "forgot_sent_p95_ms": lambda: max(
            s["forgot_known"]["own_p95_ms"], s["forgot_unknown"]["own_p95_ms"]
        ),
        "mixed_sent_p95_ms": lambda: max(
            s["mixed"]["me"]["own_p95_ms"], s["mixed"]["refresh"]["own_p95_ms"]
        ),
        "mixed_hashing_vs_hash_ceiling": lambda: hashing_share("mixed", s["mixed"]),
        "mixed_errors": lambda: sum(
            r["non2xx"] + r["socket_error_count"] for r in s["mixed"].values()
        ),
    }
    found = {}
    for name, formula in formulas.items():
        try:
            found[name] = formula()
        except KeyError:
            continue
    if "reference" in s:
        # This machine's speed against the targets' machine, from the same plain endpoint.
        speed = s["reference"]["rps_2xx"] / REFERENCE_RPS
        found["machine_vs_reference"] = speed
        at_reference = {
            "me_rps_at_reference": ("me_rps", 1 / speed),
            "refresh_rps_at_reference": ("refresh_rps", 1 / speed),
            "forgot_p95_at_reference_ms": ("forgot_p95_ms", speed),
            "mixed_p95_at_reference_ms": ("mixed_p95_ms", speed),
            "forgot_sent_p95_at_reference_ms": ("forgot_sent_p95_ms", speed),
            "mixed_sent_p95_at_reference_ms": ("mixed_sent_p95_ms", speed),
        }
        for name, (measured, factor) in at_reference.items():
            if measured in found:
                found[name] = found[measured] * factor
    if {"login_vs_hash_ceiling", "hash_endpoint_vs_hash_ceiling"} <= found.keys():
        # Each against the floors beside it, so the machine's drift between the two cancels.
        found["login_vs_hash_endpoint"] = (
            found["login_vs_hash_ceiling"] / found["hash_endpoint_vs_hash_ceiling"]
        )
    return found


def measured_text(name: str, value: float) -> str:
    """The figure to two decimals, or more where two would seem to contradict its verdict
    (0.796 against 0.80 is not met, and "0.80" would read as met)."""
    for digits in (2, 3, 4):
        text = f"{value:.{digits}f}"
        if met(name, float(text)) == met(name, value):
            return text
    return repr(value)


def met(name: str, value: float) -> str:
    target = TARGETS.get(name)
    if target is None:
        return ""
    if isinstance(target, tuple):
        good = target[0] <= value <= target[1]
    elif name.endswith(("_ms", "_vs_verify")):
        good = value < target if name.endswith("_ms") else value <= target
    else:
        good = value >= target
    return "yes" if good else "**no**"


def floor_text(name: str, floor: dict) -> str:
    if floor["hash_ms"] == floor["verify_ms"]:
        return f"{name} {floor['verify_ms']:.1f} ms"
    # Reports from before the pooled median kept the two apart.
    return f"{name} verify {floor['verify_ms']:.1f} / hash {floor['hash_ms']:.1f} ms"


def sent_text(result: dict) -> str:
    """A timed run's own percentiles (bench/load.lua, `timed`); "-" for an untimed one."""
    if "own_p95_ms" not in result:
        return "-"
    return " / ".join(f"{result[f'own_p{p}_ms']:.1f}" for p in (50, 95, 99))


def ratio_text(ratios_found: dict, name: str, text: str) -> str:
    return text.format(ratios_found[name]) if name in ratios_found else ""


def percent(share: float) -> str:
    return f"{share * 100:.0f}%"


def run_kind(report: dict) -> str:
    """Quick or full scenario length, and the subset when `--only` picked one."""
    kind = "quick" if report["quick"] else "full"
    return f"{kind}, only {','.join(report['only'])}" if report.get("only") else kind


def markdown(report: dict) -> str:
    s, r, floor = report["scenarios"], report["ratios"], report["hash_floor"]
    lines = [
        f"Run {report['date']} ({run_kind(report)}), {report['cores']} cores,"
        f" load average before {report['loadavg_before'][0]:.2f}. {report['label']}",
        f"Server: `{report['server']['command']}`"
        + (
            f", held to {report['server']['web_cpus']} CPUs (hash endpoint too; ratios to the "
            "hash ceiling and capacity still count the machine's cores)"
            if report["server"].get("web_cpus")
            else ""
        ),
        f"Hasher {floor['hasher']} ({floor['params']}): hash {floor['hash_ms']:.1f} ms, "
        f"verify {floor['verify_ms']:.1f} ms, hash ceiling {floor['ceiling_rps']:.0f}/s "
        f"({report['cores']} cores / verify) at the start. Hashing scenarios are held against "
        "the hasher's speed just before and after each (the median of both floors' hashes and "
        "verifies): "
        + (
            ", ".join(floor_text(name, f) for name, f in report.get("floors_beside", {}).items())
            or "none ran"
        )
        + "."
        + ratio_text(
            r,
            "parallel_hashing_vs_hash_ceiling",
            " Beside the login scenario, every core verifying at once in-process managed {:.2f}"
            " of the hash ceiling.",
        ),
        "",
        "| scenario | clients | 2xx req/s | p50 ms | p95 ms | p99 ms "
        "| sent→answer p50 / p95 / p99 ms | non-2xx | socket errors "
        "| load-gen CPU | other CPU | service CPU ms/req | capacity req/s | ratio to limit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row(label: str, result: dict | None, ratio: str = "") -> None:
        if result is None:
            return
        cpu = result.get("cpu", {})
        # wrk times every response: with refusals among them, the percentiles are not those of
        # the 2xx alone (fast 503s pull them down), and the row says so.
        mark = " (with non-2xx)" if result["non2xx"] else ""
        sent = "own_p95_ms" in result
        lines.append(
            f"| {label} | {result['connections']} | {result['rps_2xx']:.0f} | "
            f"{result['p50_ms']:.1f}{mark} | {result['p95_ms']:.1f}{mark} | "
            f"{result['p99_ms']:.1f}{mark} | {sent_text(result)}{mark if sent else ''} | "
            f"{result['non2xx']} | {result['socket_error_count']} | "
            f"{percent(cpu.get('load generator', 0))} | {percent(cpu.get('others', 0))} | "
            f"{result.get('service_cpu_ms', float('nan')):.2f} | "
            f"{result.get('capacity_rps', float('nan')):.0f} | {ratio} |"
        )

    def ratio(name: str, text: str) -> str:
        return ratio_text(r, name, text)

    row(
        "reference: plain Django, 2 sync workers",
        s.get("reference"),
        ratio("machine_vs_reference", f"{{:.2f}} of the targets' machine ({REFERENCE_RPS:,}/s)"),
    )
    row("ceiling: /healthz", s.get("ceiling"), "1.00 (the ceiling)")
    row("me", s.get("me"), ratio("me_vs_ceiling", "{:.2f} of ceiling"))
    row("refresh (rotating)", s.get("refresh"), ratio("refresh_vs_ceiling", "{:.2f} of ceiling"))
    row(
        "hash endpoint (bench/hash_app.py)",
        s.get("hash_endpoint"),
        ratio("hash_endpoint_vs_hash_ceiling", "{:.2f} of hash ceiling"),
    )
    row(
        "login",
        s.get("login"),
        ratio("login_vs_hash_ceiling", "{:.2f} of hash ceiling")
        + ratio("login_vs_hash_endpoint", ", {:.2f} of hash endpoint"),
    )
    row(
        "login, 2 clients",
        s.get("login_c2"),
        ratio("login_p50_c2_vs_verify", "p50 = {:.2f} × verify"),
    )
    row("register", s.get("register"), ratio("register_vs_hash_ceiling", "{:.2f} of hash ceiling"))
    row(
        "forgot, known email",
        s.get("forgot_known"),
        ratio("forgot_median_ratio", "median ratio {:.2f} (1 client, per round)"),
    )
    row("forgot, unknown email", s.get("forgot_unknown"), "known ÷ unknown")
    for mode in s.get("mixed", {}):
        hashing = mode in ("login", "register")
        text = ratio("mixed_hashing_vs_hash_ceiling", "hashing {:.2f} of hash ceiling")
        row(f"mixed 32 clients: {mode}", s["mixed"][mode], text if hashing else "")
    if "email" in s:
        email = s["email"]
        lines += [
            "",
            f"Email latency (forgot → message in the SMTP sink, idle worker, {email['count']} "
            f"requests): p50 {email['p50_ms']:.0f} ms, p95 {email['p95_ms']:.0f} ms, "
            f"max {email['max_ms']:.0f} ms.",
        ]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for name, target in TARGETS.items():
        if name in r:
            lines.append(
                f"| {name} {target} | {measured_text(name, r[name])} | {met(name, r[name])} |"
            )
    if "mixed_errors" in r:
        errors = r["mixed_errors"]
        lines.append(f"| mixed_errors 0 | {errors} | {'yes' if not errors else '**no**'} |")
    rest, peak = report["rss_at_rest"], report["rss_peak_under_load"]
    lines += [
        "",
        f"RSS at rest: web workers {rest['web worker']} MiB, Celery processes "
        f"{rest.get('celery', '-')} "
        f"MiB. Peak under load: web worker {peak.get('web worker', 0):.0f} MiB, Celery "
        f"{peak.get('celery', 0):.0f} MiB. PostgreSQL connections held: "
        f"{report['postgres_connections']}.",
        "Redis MEMORY USAGE per key: "
        + ", ".join(f"{k} {v['bytes_avg']:.0f} B" for k, v in report["redis_memory"].items())
        + ".",
        f"Load average after: {report['loadavg_after'][0]:.2f}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    bench = Bench(parse_args())
    try:
        bench.run()
    finally:
        bench.stop()
    text = markdown(bench.report)
    h.RESULTS.mkdir(parents=True, exist_ok=True)
    report = without_histograms(bench.report)
    (h.RESULTS / f"{bench.stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    (h.RESULTS / f"{bench.stamp}.md").write_text(text)
    print(text)
    h.say(f"results in {h.RESULTS / bench.stamp}.json and .md")


if __name__ == "__main__":
    main()
