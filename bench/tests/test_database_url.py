"""The benchmark's database URL, and the URL helpers it shares with the tests' worker."""

import sys
from pathlib import Path

import pytest
from psycopg2.extensions import parse_dsn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness  # noqa: E402

from testing.postgres import database_name, with_database  # noqa: E402


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgres://postgres@127.0.0.1:5432/auth_service",
            "postgres://postgres@127.0.0.1:5432/auth_service_bench",
        ),
        # A Unix socket: the empty host must survive, or libpq refuses "postgres:/..."
        ("postgres:///auth_service", "postgres:///auth_service_bench"),
        (
            "postgres://me:s%40cret@/auth_service?host=/var/run/postgresql",
            "postgres://me:s%40cret@/auth_service_bench?host=/var/run/postgresql",
        ),
    ],
)
def test_the_bench_database_is_the_service_database_with_a_suffix(monkeypatch, url, expected):
    monkeypatch.setenv("DATABASE_URL", url)

    bench_url = harness.bench_database_url()

    assert bench_url == expected
    assert parse_dsn(bench_url)["dbname"] == database_name(url) + "_bench"


def test_another_database_keeps_credentials_host_and_options():
    url = "postgresql://me:pw@db.internal:6543/app?sslmode=require"

    assert parse_dsn(with_database(url, "test_app")) == {
        "user": "me",
        "password": "pw",
        "host": "db.internal",
        "port": "6543",
        "dbname": "test_app",
        "sslmode": "require",
    }
