"""`bench/run reliability` starts the benchmark's stack: it must hand over every option it reads."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

import reliability  # noqa: E402
import run  # noqa: E402


def test_reliability_gives_the_stack_every_option_a_benchmark_run_has():
    options = reliability.bench_options(reliability.parse_args([]))

    assert set(vars(options)) == set(vars(run.parse_args([])))


def test_reliability_passes_the_cpu_quota_and_ports_on():
    args = reliability.parse_args(["--web-cpus", "0.5", "--port", "8123", "--smtp-port", "8124"])

    options = reliability.bench_options(args)

    assert (options.web_cpus, options.port, options.smtp_port) == (0.5, 8123, 8124)
