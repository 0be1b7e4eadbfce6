"""Moving from simplejwt's blacklist tables keeps refusing what they refused, and drops them."""

import importlib
from datetime import timedelta

import jwt
import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import SpentRefreshToken

REFRESH = "/api/v1/auth/token/refresh/"
migration = importlib.import_module("accounts.migrations.0002_spentrefreshtoken")

pytestmark = pytest.mark.django_db

OLD_SCHEMA = """
CREATE TABLE token_blacklist_outstandingtoken (
    id bigserial PRIMARY KEY, token text NOT NULL, created_at timestamptz,
    expires_at timestamptz NOT NULL, user_id bigint, jti varchar(255) NOT NULL UNIQUE
);
CREATE TABLE token_blacklist_blacklistedtoken (
    id bigserial PRIMARY KEY, blacklisted_at timestamptz NOT NULL,
    token_id bigint NOT NULL UNIQUE REFERENCES token_blacklist_outstandingtoken (id)
);
INSERT INTO django_migrations (app, name, applied)
VALUES ('token_blacklist', '0001_initial', now());
"""


def jti(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["jti"]


def record(cursor, token: str, user_id, *, spent: bool, expires_in=timedelta(days=7)):
    cursor.execute(
        "INSERT INTO token_blacklist_outstandingtoken (token, expires_at, user_id, jti) "
        "VALUES (%s, %s, %s, %s) RETURNING id",
        [token, timezone.now() + expires_in, user_id, jti(token)],
    )
    if spent:
        cursor.execute(
            "INSERT INTO token_blacklist_blacklistedtoken (blacklisted_at, token_id) "
            "VALUES (now(), %s)",
            [cursor.fetchone()[0]],
        )


def test_tokens_the_old_tables_revoked_stay_revoked_and_the_old_tables_go(api, user, login):
    revoked, live, expired = login()["refresh"], login()["refresh"], login()["refresh"]
    with connection.cursor() as cursor:
        cursor.execute(OLD_SCHEMA)
        record(cursor, revoked, user.pk, spent=True)
        record(cursor, live, user.pk, spent=False)
        record(cursor, expired, user.pk, spent=True, expires_in=timedelta(seconds=-1))

    with connection.schema_editor() as editor:
        migration.carry_over_spent_tokens(None, editor)

    assert [row.jti.hex for row in SpentRefreshToken.objects.all()] == [jti(revoked)]
    assert api.post(REFRESH, {"refresh": revoked}, format="json").status_code == 401
    assert api.post(REFRESH, {"refresh": live}, format="json").status_code == 200
    tables = connection.introspection.table_names()
    assert not [table for table in tables if table.startswith("token_blacklist_")]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'token_blacklist'")
        assert cursor.fetchone()[0] == 0


def test_a_database_that_never_had_the_old_tables_is_left_alone(user):
    with connection.schema_editor() as editor:
        migration.carry_over_spent_tokens(None, editor)

    assert not SpentRefreshToken.objects.exists()
