"""Password-changed notices become account notices, with a kind and an address.

The table keeps its name, and the new columns have defaults in the database: the release
before this one, still serving while a deploy migrates, goes on inserting password-changed
notices as it did.
"""

from django.conf import settings
from django.core.management.base import CommandError
from django.db import migrations, models


def email_notices_refuse_to_drop(apps, schema_editor):
    """Unapplied, the table loses its kind and address: an email-changed notice still owed
    would go out as "your password was changed", to the account's new address, and the old
    address would never be told. The rollback stops instead, until the worker has sent them.

    The table is locked first, until the migration commits: a notice recorded meanwhile waits
    for the rollback, and one being sent is waited for (up to the migration's lock timeout)."""
    shared = apps.get_model("notifications", "AccountNotice")
    table = schema_editor.quote_name(shared._meta.db_table)
    schema_editor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    owed = shared.objects.filter(kind="email_changed").count()
    if owed:
        raise CommandError(
            f"{owed} email-changed notice(s) still owed: the release before this migration "
            "would send them as password-changed notices to the new address. Let a worker of "
            "this release send them (its sweep does within NOTICE_SWEEP_AFTER seconds), then "
            "run the rollback again."
        )


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("notifications", "0002_passwordchangednotice_failed_at"),
    ]

    operations = [
        migrations.AlterModelTable(
            name="passwordchangednotice", table="notifications_passwordchangednotice"
        ),
        migrations.RenameModel(old_name="PasswordChangedNotice", new_name="AccountNotice"),
        migrations.AddField(
            model_name="accountnotice",
            name="kind",
            field=models.CharField(
                choices=[
                    ("password_changed", "password changed"),
                    ("email_changed", "email changed"),
                ],
                db_default="password_changed",
                default="password_changed",
                max_length=20,
            ),
        ),
        migrations.AddField(
            model_name="accountnotice",
            name="address",
            field=models.EmailField(blank=True, db_default="", default="", max_length=254),
        ),
        # Unapplied first, before the columns go.
        migrations.RunPython(migrations.RunPython.noop, email_notices_refuse_to_drop),
    ]
