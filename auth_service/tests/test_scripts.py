"""scripts/lib.sh, the set-up shared by scripts/run and scripts/test, run through bash."""

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
from django.conf import settings
from psycopg2 import sql

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent


def lib_sh(command: str, root: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - fixed argv, the command is this file's own
        ["/bin/bash", "-c", f"source scripts/lib.sh; {command}"],
        cwd=root,
        env={**os.environ, "VENV": str(VENV), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def server() -> dict[str, str]:
    """libpq's variables for the server the tests use, so that a URL can leave them out."""
    database = settings.DATABASES["default"]
    return {
        "PGHOST": database["HOST"] or "",
        "PGPORT": str(database["PORT"] or 5432),
        "PGUSER": database["USER"] or "",
        "PGPASSWORD": database["PASSWORD"] or "",
    }


def connect(server: dict[str, str], dbname: str):
    return psycopg2.connect(
        host=server["PGHOST"],
        port=server["PGPORT"],
        user=server["PGUSER"],
        password=server["PGPASSWORD"],
        dbname=dbname,
    )


@pytest.fixture
def new_database_name(server):
    name = f"ensure_database_{secrets.token_hex(4)}"
    yield name
    conn = connect(server, "postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    conn.close()


def test_ensure_database_creates_the_database_of_a_url_without_a_host(server, new_database_name):
    # Given the README's socket-style URL, host and role left to libpq's defaults
    url = f"postgres:///{new_database_name}"

    # When the scripts make sure its database exists, twice
    first = lib_sh("ensure_database", DATABASE_URL=url, **server)
    second = lib_sh("ensure_database", DATABASE_URL=url, **server)

    # Then it is created once, and connecting to it works
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"created database {new_database_name}\n"
    assert second.returncode == 0, second.stderr
    assert second.stdout == ""
    connect(server, new_database_name).close()


def test_ensure_database_explains_a_url_libpq_refuses(server):
    result = lib_sh(
        "ensure_database",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/unused?no_such_option=1",
        **server,
    )

    assert result.returncode == 1
    assert "cannot connect to PostgreSQL as DATABASE_URL says" in result.stderr
    assert "Traceback" not in result.stderr


def test_ensure_database_asks_for_a_database_name_when_the_url_has_none(server):
    result = lib_sh("ensure_database", DATABASE_URL="postgres://postgres@127.0.0.1:5432", **server)

    assert result.returncode == 1
    assert "DATABASE_URL names no database" in result.stderr
    assert "Traceback" not in result.stderr


# --- settings from .env -------------------------------------------------------------------


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A checkout of its own, whose .env a test may write."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "lib.sh", tmp_path / "scripts" / "lib.sh")
    return tmp_path


ENV_FILE = """\
DEBUG=true
DATABASE_URL=postgres:///from_env_file
REDIS_URL=redis://127.0.0.1:6379/0
"""
UNSET = {"DATABASE_URL": "", "REDIS_URL": "", "DEBUG": ""}


def test_env_setting_takes_a_setting_missing_from_the_environment_from_env_file(checkout):
    (checkout / ".env").write_text(ENV_FILE)

    result = lib_sh(
        'env_setting DATABASE_URL default; echo " REDIS_URL=$REDIS_URL"', checkout, **UNSET
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "postgres:///from_env_file REDIS_URL=\n"


def test_env_file_values_are_taken_as_written(checkout):
    (checkout / ".env").write_text(
        "# a comment\n"
        "DEFAULT_FROM_EMAIL=auth_service <no-reply@example.com>\n"
        "SECRET_KEY=abc$HOME&x(y)`id`\n"
        "export PUBLIC_URL='http://localhost:8000'  \n"
        'LOG_LEVEL="debug"\r\n'
        "ALLOWED_HOSTS=localhost # inline comment\n"
        'EMAIL_HOST="smtp.example.com" # a comment after quotes\n'
        "EMAIL_HOST_PASSWORD='a #b=c' # c\n"
        "JWT_SIGNING_KEY='single$quoted'\n"
        "EMAIL_PORT = 1025\n"
        "EMAIL_TIMEOUT=  7\n"
        "WEB_PORT=\n"
        "not a setting\n"
        "MAILPIT_PORT=8025"  # a last line without its newline
    )
    expected = {
        "DEFAULT_FROM_EMAIL": "auth_service <no-reply@example.com>",
        "SECRET_KEY": "abc$HOME&x(y)`id`",
        "PUBLIC_URL": "http://localhost:8000",
        "LOG_LEVEL": "debug",
        "ALLOWED_HOSTS": "localhost",
        "EMAIL_HOST": "smtp.example.com",
        "EMAIL_HOST_PASSWORD": "a #b=c",
        "JWT_SIGNING_KEY": "single$quoted",
        "EMAIL_PORT": "1025",
        "EMAIL_TIMEOUT": "7",
        "WEB_PORT": "",
        "MAILPIT_PORT": "8025",
    }

    result = lib_sh(
        "load_env_file; printf '%s|' " + " ".join(f'"${name}"' for name in expected), checkout
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split("|")[:-1] == list(expected.values())
    # docker compose expands a $ outside single quotes: the two would differ, so it says so
    assert result.stderr == (
        "warning: .env: SECRET_KEY holds a $, which docker compose expands unless the value is "
        "in single quotes\n"
    )


def test_env_setting_prefers_the_exported_value_to_env_file(checkout):
    (checkout / ".env").write_text(ENV_FILE)

    result = lib_sh(
        "env_setting DATABASE_URL default",
        checkout,
        **{**UNSET, "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/exported"},
    )

    assert result.stdout == "postgres://postgres@127.0.0.1:5432/exported"


def test_env_setting_falls_back_to_the_default_without_env_file(checkout):
    result = lib_sh("env_setting DATABASE_URL default", checkout, **UNSET)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "default"


def test_load_env_file_exports_every_setting_over_the_environment(checkout):
    (checkout / ".env").write_text(ENV_FILE)

    result = lib_sh(
        "load_env_file; env | grep -E '^(DATABASE_URL|DEBUG)=' | sort",
        checkout,
        **{**UNSET, "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/exported"},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "DATABASE_URL=postgres:///from_env_file\nDEBUG=true\n"
