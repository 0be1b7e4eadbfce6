"""Email-changed notices get their own table.

The release before this one kept them beside password-changed notices, which the release
before that, were it still running during a deploy (or rolled back to), would send as
"your password was changed" to the new address. Those already recorded move to the new table;
the rows being sent right now are left to their sender.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def email_notices_move(apps, schema_editor):
    shared = apps.get_model("notifications", "PasswordChangedNotice")
    own = apps.get_model("notifications", "EmailChangedNotice")
    moving = list(
        shared.objects.select_for_update(skip_locked=True).filter(kind="email_changed")
    )
    own.objects.bulk_create(
        own(
            user_id=notice.user_id,
            address=notice.address,
            created_at=notice.created_at,
            failed_at=notice.failed_at,
        )
        for notice in moving
    )
    shared.objects.filter(pk__in=[notice.pk for notice in moving]).delete()


def email_notices_move_back(apps, schema_editor):
    """Unapplied, the release before reads email-changed notices from the shared table again:
    those owed go back there rather than out with the dropped table.

    The table is locked first, until the migration commits: a row being sent is waited for
    (its sender deletes it once sent, or leaves it to move if sending fails), up to the
    migration's lock timeout (then the rollback fails and can be run again), and a notice the
    newer web records meanwhile fails with its change instead of going out with the table."""
    shared = apps.get_model("notifications", "PasswordChangedNotice")
    own = apps.get_model("notifications", "EmailChangedNotice")
    schema_editor.execute(
        f"LOCK TABLE {schema_editor.quote_name(own._meta.db_table)} IN ACCESS EXCLUSIVE MODE"
    )
    moving = list(own.objects.all())
    shared.objects.bulk_create(
        shared(
            user_id=notice.user_id,
            kind="email_changed",
            address=notice.address,
            created_at=notice.created_at,
            failed_at=notice.failed_at,
        )
        for notice in moving
    )
    own.objects.filter(pk__in=[notice.pk for notice in moving]).delete()


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("notifications", "0003_accountnotice"),
    ]

    operations = [
        # Its table keeps its name (Meta.db_table): a rename in the model's state alone.
        migrations.RenameModel(old_name="AccountNotice", new_name="PasswordChangedNotice"),
        migrations.CreateModel(
            name="EmailChangedNotice",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "created_at",
                    models.DateTimeField(db_index=True, default=django.utils.timezone.now),
                ),
                ("failed_at", models.DateTimeField(blank=True, null=True)),
                ("address", models.EmailField(max_length=254)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"abstract": False},
        ),
        migrations.RunPython(email_notices_move, email_notices_move_back),
    ]
