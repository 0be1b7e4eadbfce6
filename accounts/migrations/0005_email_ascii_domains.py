"""Emails with an international domain are stored in the ASCII form mail is sent with
("bücher.example" as "xn--bcher-kva.example"), so the two spellings are one account.

A row whose ASCII form another account already has (the same mailbox registered twice) is left
as it is, for an operator to merge; so is one IDNA cannot encode (no mail reaches it), and one
whose ASCII form is longer than the column (accounts.managers.normalize_email still finds it).
"""

import logging

import idna
from django.db import migrations

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
    # Anything outside printable ASCII: an email holds no control characters.
    for user in User.objects.filter(email__regex=r"[^ -~]").only("pk", "email").iterator():
        encoded = ascii_form(user.email)
        if encoded is None or len(encoded) > EMAIL_MAX:
            continue
        twin = User.objects.filter(email__iexact=encoded).values_list("pk", flat=True).first()
        if twin is not None:  # unique in any case
            # Sign-in finds the twin under either spelling: this account is out of its owner's
            # reach until staff merge the two, who would otherwise never hear of it. By id only.
            logger.warning(
                "accounts 0005: user %s left with its domain unencoded: user %s has the same "
                "address encoded; merge them by hand",
                user.pk,
                twin,
            )
            continue
        User.objects.filter(pk=user.pk).update(email=encoded)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_revokedtokenfamily"),
    ]

    operations = [
        migrations.RunPython(encode_international_domains, migrations.RunPython.noop),
    ]
