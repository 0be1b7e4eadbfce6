"""Production settings pass Django's deployment checklist."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Variables the test runner sets to relax production defaults; production never has them.
RELAXED = {"DEBUG", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "ALLOWED_HOSTS", "SECRET_KEY"}
RELAXED |= {"JWT_SIGNING_KEY"}
PRODUCTION = {"ALLOWED_HOSTS": "auth.example.com", "PUBLIC_URL": "https://auth.example.com"}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key not in RELAXED}
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_deploy(**env):
    """`manage.py check --deploy`, failing on warnings, with production settings and a long
    SECRET_KEY."""
    return manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY=secrets.token_urlsafe(50),
        **env,
        **PRODUCTION,
    )


def test_check_deploy_passes_with_production_settings():
    result = check_deploy(JWT_SIGNING_KEY=secrets.token_urlsafe(50))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", **PRODUCTION)

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_check_deploy_warns_when_jwts_share_the_django_secret():
    result = check_deploy()

    assert result.returncode != 0
    assert "accounts.W001" in result.stderr + result.stdout
    # Following the advice changes the key that signs every live token
    assert "this ends every session" in result.stderr + result.stdout


def test_check_deploy_warns_when_the_jwt_key_is_short():
    # Anyone holding one token can test guesses of an HS256 key offline, then sign tokens for
    # any user: the checklist that flags a short SECRET_KEY (security.W009) must flag this too.
    result = check_deploy(JWT_SIGNING_KEY="jwt-key-change-me")

    assert result.returncode != 0
    assert "accounts.W002" in result.stderr + result.stdout


def test_check_deploy_warns_when_a_retried_email_would_be_delivered_again_while_it_waits():
    # A retry waits up to 180 s in its worker; with a shorter visibility timeout Redis hands
    # the message out again meanwhile, and the copies can each send the reset email
    result = check_deploy(JWT_SIGNING_KEY=secrets.token_urlsafe(50), CELERY_VISIBILITY_TIMEOUT="60")

    assert result.returncode != 0
    assert "notifications.W001" in result.stderr + result.stdout


def test_check_deploy_counts_the_send_in_the_visibility_timeout():
    result = check_deploy(
        JWT_SIGNING_KEY=secrets.token_urlsafe(50),
        CELERY_VISIBILITY_TIMEOUT="300",
        EMAIL_TIMEOUT="150",
    )

    assert "notifications.W001" in result.stderr + result.stdout
