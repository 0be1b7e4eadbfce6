"""Manager for the email-identified user."""

import functools

from django.contrib.auth.base_user import BaseUserManager
from django.db import connections


def normalize_email(email: str) -> str:
    """Emails are stored and compared lower-cased: one account per address, in any case."""
    return email.strip().lower()


class UserManager(BaseUserManager):
    use_in_migrations = True

    def active_by_id(self, user_id):
        """The active user with this id, or None (also for an id that is not a number).

        Every authenticated request makes this lookup, so it skips the ORM's query compiler
        and RawQuerySet (together more CPU than the rest of a `me` request): one constant
        statement, and the row turned into a model instance the way the ORM does it.
        """
        try:
            user_id = int(user_id)
        except (TypeError, ValueError):
            return None
        columns, sql = self._by_id
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, [user_id])
            row = cursor.fetchone()
        if row is None or not row[columns.index("is_active")]:
            return None
        return self.model.from_db(self.db, columns, row)

    @functools.cached_property
    def _by_id(self) -> tuple[list[str], str]:
        """The statement the ORM runs for `get(pk=...)`, compiled once, and its columns."""
        sql, _params = self.filter(pk=0).query.get_compiler(self.db).as_sql()
        return [field.attname for field in self.model._meta.concrete_fields], sql

    def _create_user(self, email: str, password: str | None, **extra_fields):
        if not email:
            raise ValueError("An email address is required.")
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
        return self._create_user(email, password, **extra_fields)

    def get_by_natural_key(self, email: str):
        return self.get(email=normalize_email(email))
