import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# The tables of simplejwt's token_blacklist app, which this model replaces.
OLD_TABLES = ("token_blacklist_blacklistedtoken", "token_blacklist_outstandingtoken")


def carry_over_spent_tokens(apps, schema_editor):
    """Keep refusing the tokens the old tables had revoked, then drop them.

    The outstanding table held every live refresh token in full; dropping it is the point.
    Tokens it listed as outstanding stay valid: they are signed, and have no spent row.
    """
    connection = schema_editor.connection
    if not set(OLD_TABLES) <= set(connection.introspection.table_names()):
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO accounts_spentrefreshtoken (jti, user_id, expires_at, spent_at)
            SELECT outstanding.jti::uuid, outstanding.user_id, outstanding.expires_at,
                   spent.blacklisted_at
            FROM token_blacklist_blacklistedtoken spent
            JOIN token_blacklist_outstandingtoken outstanding ON outstanding.id = spent.token_id
            JOIN accounts_user ON accounts_user.id = outstanding.user_id
            WHERE outstanding.expires_at > now()
              AND outstanding.jti ~ '^[0-9a-f]{32}$'
            ON CONFLICT (jti) DO NOTHING
            """
        )
        cursor.execute("DROP TABLE token_blacklist_blacklistedtoken, token_blacklist_outstandingtoken")
        cursor.execute("DELETE FROM django_migrations WHERE app = 'token_blacklist'")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="SpentRefreshToken",
            fields=[
                (
                    "jti",
                    models.UUIDField(primary_key=True, serialize=False, verbose_name="token id"),
                ),
                ("expires_at", models.DateTimeField(verbose_name="token expires at")),
                ("spent_at", models.DateTimeField(verbose_name="spent at")),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
        migrations.RunPython(carry_over_spent_tokens, migrations.RunPython.noop, elidable=True),
    ]
