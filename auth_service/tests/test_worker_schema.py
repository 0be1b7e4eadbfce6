"""The worker waits at start-up for the deploy's migrations that would change the database."""

import pytest
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader

from auth_service.celery import migrations_pending

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def plan(monkeypatch):
    """Make migrations_pending see these migrations as the ones still to apply."""

    def planned(*keys: tuple[str, str]) -> None:
        nodes = MigrationLoader(None, ignore_no_migrations=True).graph.nodes
        monkeypatch.setattr(
            MigrationExecutor,
            "migration_plan",
            lambda self, targets: [(nodes[key], False) for key in keys],
        )

    return planned


def test_a_migration_that_only_records_a_validator_is_not_waited_for(plan):
    # Given the deploy brings only a migration whose SQL is nothing (a validator on a field)
    plan(("accounts", "0003_email_visible_characters"))

    # Then the worker takes tasks at once: no email waits in the queue for it
    assert migrations_pending() == []


def test_migrations_that_change_the_schema_or_the_data_are_waited_for(plan):
    plan(
        ("accounts", "0003_email_visible_characters"),
        ("notifications", "0002_passwordchangednotice_failed_at"),  # a column
        ("accounts", "0005_email_ascii_domains"),  # data (RunPython)
    )

    assert migrations_pending() == [
        "notifications.0002_passwordchangednotice_failed_at",
        "accounts.0005_email_ascii_domains",
    ]
