"""Emails stored with an international domain after migration 0005 get the ASCII form too.

0005 runs while the release before it still serves (a deploy migrates first): an account that
release registered meanwhile, or whose email its admin changed, kept the domain as typed, and
every release since looks up the ASCII form alone: it signed in under neither spelling, and
forgot found no account. The same rule as 0005 then: a row whose ASCII form another account
has (registered twice over the deploy) is left and logged for staff to merge; one IDNA cannot
encode, or too long once encoded, is left as well.

Unapplied, nothing changes: the releases before 0005 find an encoded address as typed.
"""

import logging

import idna
from django.db import migrations
from django.db.models import Value
from django.db.models.functions import Lower

logger = logging.getLogger(__name__)

EMAIL_MAX = 254  # the column's length


def ascii_form(email: str) -> str | None:
    local, _, domain = email.rpartition("@")
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except (idna.IDNAError, UnicodeError):
        return None


def encode_international_domains(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    # Compared as the unique lower-case index does, so each look-up is an index scan: 0005's
    # case-insensitive filter read the whole table once per row.
    others = User.objects.alias(email_lower=Lower("email"))
    for user in User.objects.filter(email__regex=r"[^ -~]").only("pk", "email").iterator():
        encoded = ascii_form(user.email)
        if encoded is None or len(encoded) > EMAIL_MAX:
            continue
        twin = others.filter(email_lower=Lower(Value(encoded))).values_list("pk", flat=True).first()
        if twin is not None:
            logger.warning(
                "accounts 0008: user %s left with its domain unencoded: user %s has the same "
                "address encoded; merge them by hand",
                user.pk,
                twin,
            )
            continue
        User.objects.filter(pk=user.pk).update(email=encoded)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_full_name_visible_characters"),
    ]

    operations = [
        migrations.RunPython(encode_international_domains, migrations.RunPython.noop),
    ]
