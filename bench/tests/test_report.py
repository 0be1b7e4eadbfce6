"""The benchmark's report: ratios and targets computed from a recorded run (09:13 UTC, the
figures bench/README.md quotes), so a change to the arithmetic cannot pass unnoticed."""

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402

RECORDED = BENCH / "tests" / "run-20261124T091349Z.json"


@pytest.fixture
def report() -> dict:
    recorded = json.loads(RECORDED.read_text())
    recorded.pop("ratios")
    return recorded


def test_hashing_scenarios_are_held_against_the_floors_beside_them(report):
    found = run.ratios(report)

    login_floor = report["floors_beside"]["login"]["verify_ms"]
    login_rps = report["scenarios"]["login"]["rps_2xx"]
    assert found["login_vs_hash_ceiling"] == pytest.approx(login_rps / (2 / login_floor * 1000))
    register_floor = report["floors_beside"]["register"]["hash_ms"]
    register_rps = report["scenarios"]["register"]["rps_2xx"]
    assert found["register_vs_hash_ceiling"] == pytest.approx(
        register_rps / (2 / register_floor * 1000)
    )
    assert round(found["login_vs_hash_ceiling"], 3) == 0.796
    assert round(found["hash_endpoint_vs_hash_ceiling"], 2) == 0.86
    assert round(found["login_vs_hash_endpoint"], 2) == 0.93
    assert round(found["parallel_hashing_vs_hash_ceiling"], 2) == 0.98
    assert round(found["register_vs_hash_ceiling"], 2) == 0.77


def test_every_target_is_reported_with_its_verdict(report):
    report["ratios"] = run.ratios(report)

    text = run.markdown(report)

    # 0.796: not met, and shown with the digit that says so
    assert "| login_vs_hash_ceiling 0.8 | 0.796 | **no** |" in text
    assert "| login_p50_c2_vs_verify 1.5 | 1.35 | yes |" in text
    assert "| refresh_rps 900 | 829.38 | **no** |" in text
    assert "| forgot_median_ratio (0.9, 1.1) | 1.03 | yes |" in text
    assert "| mixed_errors 0 | 0 | yes |" in text
    assert "0.80 of hash ceiling, 0.93 of hash endpoint" in text
    assert "every core verifying at once in-process managed 0.98 of the hash ceiling" in text


def test_scenarios_that_did_not_run_are_left_out(report):
    for name in ("hash_endpoint", "register", "mixed"):
        report["scenarios"].pop(name)
        report["floors_beside"].pop(name)

    found = run.ratios(report)

    assert "login_vs_hash_ceiling" in found
    assert not {"register_vs_hash_ceiling", "login_vs_hash_endpoint", "mixed_p95_ms"} & set(found)


def floor(hash_ms: list[float], verify_ms: list[float]) -> dict:
    return {"samples_ms": {"hash": hash_ms, "verify": verify_ms}, "parallel_verify_rps": 95.0}


def test_a_spike_in_one_floor_batch_does_not_move_the_hashers_speed():
    """As at 09:55: the verifies after the scenario ran at 28 ms, the hashes beside them at
    20.5 ms; the mean of the floors' medians said 23.5 ms and flattered the login ratio."""
    before = floor([19.9] * 20, [19.1] * 20)
    after = floor([20.5] * 20, [28.0] * 20)

    pooled = run.pooled_floor(before, after)

    assert pooled["verify_ms"] == pooled["hash_ms"] == pytest.approx(20.2)
    assert pooled["samples"] == [before, after]


def test_absolute_targets_are_also_read_at_the_reference_machines_speed(report):
    """A plain Django endpoint that serves half the targets' 6,000 req/s here means the
    machine runs at half speed: me and refresh count double, forgot's and the mixed load's
    p95 half."""
    report["scenarios"]["reference"] = dict(report["scenarios"]["ceiling"], rps_2xx=3000.0)

    found = run.ratios(report)

    assert found["machine_vs_reference"] == pytest.approx(0.5)
    assert found["me_rps_at_reference"] == pytest.approx(2 * found["me_rps"])
    assert found["refresh_rps_at_reference"] == pytest.approx(2 * found["refresh_rps"])
    assert found["forgot_p95_at_reference_ms"] == pytest.approx(found["forgot_p95_ms"] / 2)
    assert found["mixed_p95_at_reference_ms"] == pytest.approx(found["mixed_p95_ms"] / 2)
    report["ratios"] = found
    text = run.markdown(report)
    assert "| reference: plain Django, 2 sync workers | 16 | 3000 |" in text
    assert "0.50 of the targets' machine (6,000/s)" in text
    assert "| me_rps_at_reference 2500 | 3453.90 | yes |" in text


def test_the_heading_names_the_subset_a_run_was_limited_to(report):
    report["ratios"] = run.ratios(report)
    assert "(full), 2 cores" in run.markdown(report)

    report["only"] = ["login", "register"]

    assert "(full, only login,register), 2 cores" in run.markdown(report)


def round_result(ok: int, p95: float, server_seconds: float, others: float) -> dict:
    return {
        "requests": ok,
        "duration_us": 1_000_000,
        "ok": ok,
        "known_ok": ok,
        "unknown_ok": 0,
        "known_sent": ok,
        "non2xx": 0,
        "s5xx": 0,
        "socket_error_count": 0,
        "wrk_cpu_seconds": 0.03,
        "rps_2xx": float(ok),
        "p50_ms": p95 / 2,
        "p90_ms": p95,
        "p95_ms": p95,
        "p99_ms": p95 * 2,
        "mean_ms": p95 / 2,
        "max_ms": p95 * 3,
        "cpu": {
            "machine": 0.9,
            "others": others,
            "seconds": {"server": server_seconds, "postgres": 0.0, "worker": 0.0},
        },
    }


def test_forgot_rounds_add_their_counts_and_cpu_and_report_the_median_round():
    rounds = [
        round_result(300, 6.0, 0.9, 0.44),  # a round shared with another process
        round_result(500, 4.0, 1.0, 0.02),
        round_result(500, 5.0, 1.1, 0.03),
    ]

    merged = run.merge_rounds(rounds)

    assert (merged["ok"], merged["requests"]) == (1300, 1300)
    assert merged["p95_ms"] == 5.0
    assert merged["max_ms"] == 18.0
    assert merged["cpu"]["others"] == 0.03
    assert merged["cpu"]["seconds"]["server"] == pytest.approx(3.0)
    assert merged["service_cpu_ms"] == pytest.approx(3.0 / 1300 * 1000)


def test_a_row_with_refusals_says_its_latencies_include_them(report):
    report["ratios"] = run.ratios(report)
    report["scenarios"]["register"]["non2xx"] = 3481

    lines = run.markdown(report).splitlines()

    (register,) = [line for line in lines if line.startswith("| register |")]
    assert register.count("(with non-2xx)") == 3
    (login,) = [line for line in lines if line.startswith("| login |")]
    assert "(with non-2xx)" not in login


def test_forgot_percentiles_pool_every_rounds_requests_when_wrk_gave_histograms():
    """Eight rounds of forgot, one of them slow: the median of the rounds' p95s (3 ms) hides
    the slow round's 400 requests at 20 ms, which are 12.5 % of the scenario's requests."""
    fast = {3000: 400}  # 400 requests at 3 ms
    slow = {20000: 400}
    rounds = [round_result(400, 3.0, 1.0, 0.02) for _ in range(7)]
    rounds.append(round_result(400, 20.0, 1.0, 0.02))
    for result in rounds[:7]:
        result["latency_histogram_us"] = list(fast.items())
    rounds[7]["latency_histogram_us"] = list(slow.items())

    merged = run.merge_rounds(rounds)

    assert merged["p50_ms"] == 3.0
    assert merged["p95_ms"] == 20.0
    assert merged["mean_ms"] == pytest.approx((2800 * 3 + 400 * 20) / 3200)
    assert "latency_histogram_us" not in merged


def test_timed_rounds_pool_their_own_latencies_beside_wrks():
    rounds = [round_result(400, 3.0, 1.0, 0.02) for _ in range(4)]
    for i, result in enumerate(rounds):
        result["own_latency_histogram_us"] = [[2000, 380], [9000 if i else 30000, 20]]

    merged = run.merge_rounds(rounds)

    assert merged["own_p50_ms"] == 2.0
    assert merged["own_p95_ms"] == 9.0  # 1,520 at 2 ms, then 60 at 9 ms: rank 1,521
    assert merged["own_p99_ms"] == 30.0
    assert "own_latency_histogram_us" not in merged


def test_timed_runs_show_their_own_latencies_and_targets(report):
    me, refresh = report["scenarios"]["mixed"]["me"], report["scenarios"]["mixed"]["refresh"]
    me.update(own_p50_ms=20.0, own_p95_ms=60.0, own_p99_ms=90.0)
    refresh.update(own_p50_ms=30.0, own_p95_ms=120.0, own_p99_ms=150.0)
    report["scenarios"]["reference"] = dict(report["scenarios"]["ceiling"], rps_2xx=3000.0)
    report["ratios"] = run.ratios(report)

    text = run.markdown(report)

    assert report["ratios"]["mixed_sent_p95_ms"] == 120.0
    assert "| mixed_sent_p95_ms 100.0 | 120.00 | **no** |" in text
    assert "| mixed_sent_p95_at_reference_ms 100.0 | 60.00 | yes |" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| mixed 32 clients: me |")]
    assert "| 20.0 / 60.0 / 90.0 |" in row
    (login,) = [line for line in text.splitlines() if line.startswith("| login |")]
    assert "| - |" in login


def test_the_written_report_leaves_the_histograms_out():
    report = {"scenarios": {"me": {"p95_ms": 1.0, "own_latency_histogram_us": [[1, 2]]}}}
    report["runs"] = [{"latency_histogram_us": [[1, 2]], "ok": 3}]

    assert run.without_histograms(report) == {
        "scenarios": {"me": {"p95_ms": 1.0}},
        "runs": [{"ok": 3}],
    }
