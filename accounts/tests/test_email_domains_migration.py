"""Accounts stored before international domains were encoded, or by the release before while a
deploy encoded them, get the ASCII form mail is sent with, unless the same mailbox already has
an account under it."""

import importlib

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import User
from conftest import PASSWORD

migration = importlib.import_module("accounts.migrations.0005_email_ascii_domains")
# Every migration up to the one that encodes what the release before stored during the deploy.
DEPLOYED = ("accounts", "0007_full_name_visible_characters")

pytestmark = pytest.mark.django_db


def stored_as(make_user, typed: str, email: str) -> User:
    """An account as the build before stored it: the domain as typed, lower-cased."""
    user = make_user(email=typed)
    User.objects.filter(pk=user.pk).update(email=email)
    return user


def test_international_domains_are_encoded_and_a_second_account_of_a_mailbox_is_left(
    make_user, caplog
):
    alone = stored_as(make_user, "ada@bücher.example", "ada@bücher.example")
    twice = stored_as(make_user, "e10@例え.jp", "e10@例え.jp")
    other = make_user(email="E10@xn--r8jz45g.jp")  # the same mailbox, registered encoded
    plain = make_user(email="grace@example.com")

    migration.encode_international_domains(apps, None)

    emails = dict(User.objects.values_list("pk", "email"))
    assert emails == {
        alone.pk: "ada@xn--bcher-kva.example",
        twice.pk: "e10@例え.jp",  # for an operator to merge with the other
        other.pk: "e10@xn--r8jz45g.jp",
        plain.pk: "grace@example.com",
    }
    assert User.objects.get_by_natural_key("ADA@Bücher.example").pk == alone.pk
    # The operator hears of the account to merge, by id only
    (record,) = [r for r in caplog.records if r.name.startswith("accounts.migrations")]
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        f"accounts 0005: user {twice.pk} left with its domain unencoded: user {other.pk} has "
        "the same address encoded; merge them by hand"
    )


# 239 characters as typed; 260 with its domain encoded, more than the column holds
TOO_LONG = "a" * 64 + "@" + ".".join(["a" * 55 + "ü"] * 3) + ".com"


def test_an_address_too_long_once_encoded_is_left_and_still_signs_in(api, make_user):
    user = make_user(email="placeholder@example.com")
    User.objects.filter(pk=user.pk).update(email=TOO_LONG)  # registered before the check

    migration.encode_international_domains(apps, None)

    assert User.objects.get(pk=user.pk).email == TOO_LONG
    login = api.post(
        "/api/v1/auth/login/", {"email": TOO_LONG.upper(), "password": PASSWORD}, format="json"
    )
    assert login.status_code == 200


def test_a_twin_stored_in_other_letter_case_is_found_and_the_row_left(make_user):
    twice = stored_as(make_user, "e10@例え.jp", "e10@例え.jp")
    other = make_user(email="placeholder@example.com")
    User.objects.filter(pk=other.pk).update(email="E10@XN--R8JZ45G.JP")  # around the manager

    migration.encode_international_domains(apps, None)

    assert User.objects.get(pk=twice.pk).email == "e10@例え.jp"


def migrate(target) -> None:
    MigrationExecutor(connection).migrate([target])


def test_an_account_the_release_before_stored_during_the_deploy_signs_in_once_migrated(
    transactional_db, api, make_user, caplog
):
    # 0005 ran while the release before still served: it stored these domains as typed
    during = stored_as(make_user, "grace@bücher.example", "grace@bücher.example")
    twice = stored_as(make_user, "e10@例え.jp", "e10@例え.jp")
    other = make_user(email="e10@xn--r8jz45g.jp")  # the same mailbox's account 0005 encoded
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("accounts")[0]
    migrate(DEPLOYED)

    migrate(latest)

    emails = dict(User.objects.values_list("pk", "email"))
    assert emails[during.pk] == "grace@xn--bcher-kva.example"
    assert emails[twice.pk] == "e10@例え.jp"  # for an operator to merge with the other
    for typed in ("grace@bücher.example", "GRACE@xn--bcher-kva.example"):
        login = api.post(
            "/api/v1/auth/login/", {"email": typed, "password": PASSWORD}, format="json"
        )
        assert login.status_code == 200, typed
    (record,) = [r for r in caplog.records if r.name.startswith("accounts.migrations")]
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        f"accounts 0008: user {twice.pk} left with its domain unencoded: user {other.pk} has "
        "the same address encoded; merge them by hand"
    )
