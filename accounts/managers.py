"""Manager for the email-identified user."""

import functools

import idna
from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connections

# RFC 1035's longest domain name; a longer one is no domain, and not worth encoding.
DOMAIN_MAX = 253
EMAIL_MAX = 254  # the column's length, RFC 5321's limit


def email_lower(email: str) -> str:
    """The address lower-cased letter by letter. str.lower() writes a capital sigma that ends a
    word as the final "ς", which IDNA's mapping never does ("Σ" is "σ" there): "ΠΕΙΡΑΙΩΣ-BANK.GR"
    would be stored as another domain than "πειραιωσ-bank.gr", where its mail goes."""
    return email.lower() if email.isascii() else "".join(map(str.lower, email))


def email_stored_form(email: str) -> str:
    """The address lower-cased, an international domain in the ASCII form mail is sent with
    ("bücher.example" as "xn--bcher-kva.example", by IDNA's mapping as django-anymail applies
    it): one form per mailbox, however its address is typed. Longer than the typed form."""
    email = email_lower(email.strip())
    local, at, domain = email.rpartition("@")
    if not at or domain.isascii() or len(domain) > DOMAIN_MAX:
        return email
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except (idna.IDNAError, UnicodeError):
        return email  # no domain mail can reach; register refuses it (accounts.validators)


def normalize_email(email: str) -> str:
    """How emails are stored and compared: email_stored_form, unless that is too long to
    store. New accounts cannot have such an address (register, the admin and createsuperuser
    refuse it), but one from before the domains were encoded may: it is found as it was."""
    stored = email_stored_form(email)
    return stored if len(stored) <= EMAIL_MAX else email_lower(email.strip())


class UserManager(BaseUserManager):
    use_in_migrations = True

    def active_in_session(self, user_id, family: str | None):
        """The active user with this id, unless `family` (the login a token descends from,
        accounts.tokens) has ended; None otherwise. A token from before families has none.

        Every authenticated request asks this: one statement, as cheap as the lookup by id
        (the family is the revoked families' primary key).
        """
        try:
            user_id = int(user_id)
        except (TypeError, ValueError):
            return None
        columns, sql = self._session_statement()
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, [user_id, family])
            row = cursor.fetchone()
        user = None if row is None else self.model.from_db(self.db, columns, row)
        return user if user is not None and user.is_active else None

    def by_email(self, email: str):
        """The user with this email (in any letter case), or None."""
        return self._one("email", normalize_email(email))

    def active_by_email(self, email: str):
        """The active user with this email (in any letter case), or None."""
        user = self.by_email(email)
        return user if user is not None and user.is_active else None

    def get_by_natural_key(self, email: str):
        user = self.by_email(email)
        if user is None:
            raise self.model.DoesNotExist("No user has this email.")
        return user

    # Every authenticated request looks a user up by id, and every login, forgot and register
    # by email.
    # The ORM compiles a query for each call, which cost more CPU than the rest of a `me`
    # request; these run the statement the ORM would, compiled once, and build the model the
    # way it does.
    def _one(self, field: str, value):
        columns, sql = self._statement(field)
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, [value])
            row = cursor.fetchone()
        return None if row is None else self.model.from_db(self.db, columns, row)

    @functools.cache  # noqa: B019 - one manager per model, two fields: the cache stays tiny
    def _statement(self, field: str) -> tuple[list[str], str]:
        sql, _params = self.filter(**{field: 0}).query.get_compiler(self.db).as_sql()
        return [column.attname for column in self.model._meta.concrete_fields], sql

    @functools.cache  # noqa: B019 - as _statement
    def _session_statement(self) -> tuple[list[str], str]:
        columns, by_id = self._statement("pk")
        if not by_id.endswith(" = %s"):  # the ORM's lookup by id ends on its WHERE clause
            raise ImproperlyConfigured(f"unexpected user lookup: {by_id}")
        families = self.model._meta.apps.get_model("accounts", "RevokedTokenFamily")._meta
        quote = connections[self.db].ops.quote_name
        # Only the model's own quoted table and column names go into the text; values are bound.
        template = "{} AND NOT EXISTS (SELECT FROM {} WHERE {} = %s)"
        return columns, template.format(by_id, quote(families.db_table), quote(families.pk.column))

    def insert_unless_taken(self, user) -> bool:
        """Insert a new, unsaved user unless its email (in any letter case) is taken; True if
        it was inserted.

        One statement: the unique indexes decide, so a registration needs no lookup first and
        no transaction around the insert (each was a round trip to the database), and a taken
        email raises nothing that would abort a surrounding transaction.
        """
        fields, sql = self._insert_statement()
        connection = connections[self.db]
        values = [
            field.get_db_prep_save(field.pre_save(user, True), connection) for field in fields
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, values)
            row = cursor.fetchone()
        if row is None:
            return False
        self.mark_inserted(user, pk=row[0])
        return True

    def mark_inserted(self, user, *, pk: int) -> None:
        """Make the in-memory user the saved row `pk`, as a save would."""
        user.pk = pk
        user._state.adding = False
        user._state.db = self.db

    @functools.cache  # noqa: B019 - as _statement
    def _insert_statement(self) -> tuple[list, str]:
        meta = self.model._meta
        fields = [field for field in meta.concrete_fields if not field.primary_key]
        quote = connections[self.db].ops.quote_name
        columns = ", ".join(quote(field.column) for field in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        # Only the model's own quoted table and column names go into the text; values are bound.
        template = "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING RETURNING {}"
        sql = template.format(quote(meta.db_table), columns, placeholders, quote(meta.pk.column))
        return fields, sql

    def password_replace(
        self, user_id: int, *, old: str, new: str, email: str | None = None
    ) -> bool:
        """Store hash `new` only if `old` is still the stored one (and, given `email`, the
        account still has that email and is active); True if it was stored.

        A check against `old` and a write made after it (a password change, a re-hash at
        login, a reset) must not overwrite a password that another request stored in between.
        One UPDATE: of two concurrent ones, the second sees the first's row and stores nothing.
        """
        rows = self.filter(pk=user_id, password=old)
        if email is not None:
            rows = rows.filter(email=email, is_active=True)
        return bool(rows.update(password=new))

    def _create_user(self, email: str, password: str | None, **extra_fields):
        if not email:
            raise ValueError("An email address is required.")
        if len(email_stored_form(email)) > EMAIL_MAX:
            # What createsuperuser reports: it checked the address only as typed.
            raise ValidationError(
                f"Ensure this value has at most {EMAIL_MAX} characters once its domain is "
                "encoded for sending."
            )
        if isinstance(extra_fields.get("full_name"), str):
            # As register and the admin store a name: without the spaces around it.
            extra_fields["full_name"] = extra_fields["full_name"].strip()
        user = self.model(email=normalize_email(email), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email: str, password: str | None = None, **extra_fields):
        extra_fields["is_staff"] = True
        extra_fields["is_superuser"] = True
        if password is not None:
            # No way round register's rules for the most powerful accounts: Django's
            # createsuperuser offers to bypass them at its prompt.
            self.password_check(password, email=email, full_name=extra_fields.get("full_name"))
        return self._create_user(email, password, **extra_fields)

    def password_check(self, password: str, *, email: str, full_name: str | None) -> None:
        """Register's password rules for an account of this email and name (the validators
        compare the password with both); ValidationError if they refuse it."""
        account = self.model(email=normalize_email(email or ""), full_name=full_name or "")
        validate_password(password, user=account)
