"""Password-changed notices become account notices, with a kind and an address.

The table keeps its name, and the new columns have defaults in the database: the release
before this one, still serving while a deploy migrates, goes on inserting password-changed
notices as it did.
"""

from django.conf import settings
from django.db import migrations, models


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
    ]
