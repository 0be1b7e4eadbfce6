"""Emails with an international domain are stored in the ASCII form mail is sent with
("bücher.example" as "xn--bcher-kva.example"), so the two spellings are one account.

A row whose ASCII form another account already has (the same mailbox registered twice) is left
as it is, for an operator to merge; so is one IDNA cannot encode (no mail reaches it), and one
whose ASCII form is longer than the column (accounts.managers.normalize_email still finds it).
"""

import idna
from django.db import migrations

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
        if User.objects.filter(email__iexact=encoded).exists():  # unique in any case
            continue
        User.objects.filter(pk=user.pk).update(email=encoded)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_revokedtokenfamily"),
    ]

    operations = [
        migrations.RunPython(encode_international_domains, migrations.RunPython.noop),
    ]
