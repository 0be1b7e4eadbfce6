"""Sustained-load reliability run (by hand, not in CI): `bench/run reliability [--duration 60]`.

Saturates the machine for the duration with register, login, me, refresh and forgot clients
(wrk) while a client here resets passwords from the emails as they arrive. Then it checks what
a user would notice: no 5xx, no connection errors, and every forgot request for a known email
produced exactly one reset email. Each known forgot in the mix asks for a different user, so
no later request can replace a token before its email went out: the count must be exact. The
only slack is the last request of each forgot client, in flight when wrk stops: the server may
or may not have read it, and its answer is not counted. So the run passes when every recipient
got one email and answered <= emails <= sent.
"""

import argparse
import json
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness as h  # noqa: E402
from run import Bench  # noqa: E402

from testing.smtp import text_part  # noqa: E402

RESET_SUBJECT = "Reset your password"
CHANGED_SUBJECT = "Your password was changed"
TOKEN = re.compile(r"\?token=([0-9a-f]{64})")

# (mode, connections, wrk threads, think ms): about 30 clients, enough to keep both cores busy.
MIX = [
    ("me", 8, 2, 0),
    ("refresh", 8, 8, 0),
    ("login", 6, 2, 0),
    ("register", 4, 2, 0),
    # One connection per thread: each thread walks its own slice of distinct users.
    ("forgot_distinct", 3, 3, 150),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds of load")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--smtp-port", type=int, default=0)
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--web-cpus",
        type=float,
        default=None,
        help="hold the web processes to this many CPUs, as `bench/run --web-cpus` does",
    )
    return parser.parse_args(argv)


def bench_options(args: argparse.Namespace) -> argparse.Namespace:
    """The options `run.Bench` reads, for the stack this run starts (no scenarios of its own)."""
    return argparse.Namespace(
        quick=False,
        port=args.port,
        smtp_port=args.smtp_port,
        connections=16,
        label=args.label,
        web_cpus=args.web_cpus,
        only=set(),
    )


class Resetter(threading.Thread):
    """Uses reset links from the SMTP sink as they arrive, like people clicking them."""

    def __init__(self, bench: Bench, stop: threading.Event):
        super().__init__(daemon=True)
        self.bench, self.stop_event = bench, stop
        self.statuses: Counter = Counter()
        self.seen = 0

    def run(self) -> None:
        api = h.Api(self.bench.port)
        while not self.stop_event.is_set():
            messages = self.bench.sink.messages
            if self.seen >= len(messages):
                time.sleep(0.05)
                continue
            message = messages[self.seen]
            self.seen += 1
            # Every other reset email is used: the rest stay pending, like real unclicked ones.
            if message["Subject"] != RESET_SUBJECT or self.seen % 2:
                continue
            token = TOKEN.search(text_part(message)).group(1)
            status, _ = api.call(
                "POST",
                "/api/v1/auth/password/reset/",
                {"token": token, "password": f"{h.PASSWORD}-reset-{self.seen}"},
            )
            self.statuses[status] += 1


def main() -> None:
    args = parse_args()
    bench = Bench(bench_options(args))
    try:
        bench.start()
        bench.report["rss_at_rest"] = {}
        bench.seed()
        # Distinct users for the forgot clients: more than they can ask for in the duration.
        ceiling = sum(c * 1000 / think for mode, c, _, think in MIX if mode == "forgot_distinct")
        count = int(ceiling * args.duration * 1.1) + 50
        h.say(f"seeding {count} users for distinct forgot requests")
        distinct = [f"f{i}-{bench.stamp.lower()}@bench.example" for i in range(count)]
        h.in_parallel(bench.api.register, distinct)
        pairs = h.in_parallel(bench.api.login, bench.users[:8])
        data = h.lua_data(
            bench.logs / "reliability.lua",
            run=bench.stamp.lower(),
            password=h.PASSWORD,
            users=bench.users,
            access=[p["access"] for p in pairs],
            refresh=[p["refresh"] for p in pairs],
            distinct=distinct,
        )
        bench.start_worker()
        stop = threading.Event()
        resetter = Resetter(bench, stop)
        resetter.start()
        h.say(f"{args.duration} s of mixed load")
        results = bench.load(
            "reliability",
            [
                {
                    "mode": mode,
                    "data_file": data,
                    "connections": connections,
                    "threads": threads,
                    "duration": args.duration,
                    "think_ms": think,
                }
                for mode, connections, threads, think in MIX
            ],
        )
        forgot = next(r for r in results if r["mode"] == "forgot_distinct")
        expected, sent = forgot["known_ok"], forgot["known_sent"]
        h.say(f"waiting for the worker to send {expected} to {sent} reset emails")
        deadline = time.monotonic() + 300

        def reset_emails() -> list[str]:
            return [
                m["To"]
                for m in list(bench.sink.messages)
                if m["Subject"] == RESET_SUBJECT and m["To"].startswith("f")
            ]

        while len(reset_emails()) < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(5)  # anything extra (a duplicate) would arrive now
        stop.set()
        resetter.join()

        def notices() -> int:
            return sum(1 for m in list(bench.sink.messages) if m["Subject"] == CHANGED_SUBJECT)

        # Each successful reset owes one "password changed" notice; the last may be on its way.
        reset_done = resetter.statuses.get(200, 0)
        while notices() < reset_done and time.monotonic() < deadline:
            time.sleep(0.5)
        received = Counter(reset_emails())
        report = {
            "date": bench.stamp,
            "label": args.label,
            "duration_s": args.duration,
            "loadavg": bench.report["loadavg_before"],
            "cpu": results[0]["cpu"],
            "requests": {
                r["mode"]: {
                    "2xx": r["ok"],
                    "non2xx": r["non2xx"],
                    "5xx": r["s5xx"],
                    "socket_errors": r["socket_errors"],
                    "rps_2xx": round(r["rps_2xx"], 1),
                    "p95_ms": r["p95_ms"],
                }
                for r in results
            },
            "resets": dict(resetter.statuses),
            "forgot_known_answered": expected,
            "forgot_known_sent": sent,
            "forgot_unknown_answered": forgot["unknown_ok"],
            "reset_emails_received": sum(received.values()),
            "users_with_more_than_one_email": sum(1 for n in received.values() if n > 1),
            "password_changed_notices": notices(),
        }
    finally:
        bench.stop()
    five_xx = sum(r["5xx"] for r in report["requests"].values())
    five_xx += sum(n for status, n in report["resets"].items() if status >= 500)
    socket_errors = sum(sum(r["socket_errors"].values()) for r in report["requests"].values())
    exact = (
        expected <= report["reset_emails_received"] <= sent
        and not report["users_with_more_than_one_email"]
    )
    notices_exact = report["password_changed_notices"] == report["resets"].get(200, 0)
    report["verdict"] = {
        "5xx": five_xx,
        "socket_errors": socket_errors,
        "emails_exact": exact,
        "notices_exact": notices_exact,
    }
    h.RESULTS.mkdir(parents=True, exist_ok=True)
    (h.RESULTS / f"{bench.stamp}-reliability.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"Reliability run {bench.stamp}, {args.duration} s, {h.CORES} cores, load average "
        f"before {report['loadavg'][0]:.2f}, machine busy {report['cpu']['machine']:.0%} "
        f"(other processes {report['cpu']['others']:.0%}). {args.label}",
        "",
        "| clients | 2xx | 2xx/s | p95 ms | non-2xx | 5xx | socket errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, r in report["requests"].items():
        lines.append(
            f"| {mode} | {r['2xx']} | {r['rps_2xx']} | {r['p95_ms']:.0f} | {r['non2xx']} | "
            f"{r['5xx']} | {sum(r['socket_errors'].values())} |"
        )
    lines += [
        "",
        f"Resets from emails: {report['resets']}; 'password changed' notices: "
        f"{report['password_changed_notices']}.",
        f"Forgot for known emails answered 202: {expected} (sent: {sent}, the difference was in "
        f"flight when the load stopped); reset emails received: "
        f"{report['reset_emails_received']}; users with more than one: "
        f"{report['users_with_more_than_one_email']}.",
        f"Verdict: 5xx {five_xx}, socket errors {socket_errors}, one email per known forgot: "
        f"{'yes' if exact else 'NO'}, one notice per reset: {'yes' if notices_exact else 'NO'}.",
    ]
    print("\n".join(lines))
    if five_xx or socket_errors or not exact or not notices_exact:
        sys.exit(1)


if __name__ == "__main__":
    main()
