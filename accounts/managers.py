"""Manager for the email-identified user."""

from django.contrib.auth.base_user import BaseUserManager


def normalize_email(email: str) -> str:
    """Emails are stored and compared lower-cased: one account per address, in any case."""
    return email.strip().lower()


# The row the ORM would load, by primary key, without compiling a query for it on every call:
# for the lookups every authenticated request and every refresh makes, that compilation cost
# more CPU than the rest of the request.
_BY_ID = "SELECT * FROM accounts_user WHERE id = %s"


class UserManager(BaseUserManager):
    use_in_migrations = True

    def active_by_id(self, user_id):
        """The active user with this id, or None (also for an id that is not a number)."""
        try:
            user_id = int(user_id)
        except (TypeError, ValueError):
            return None
        user = next(iter(self.raw(_BY_ID, [user_id])), None)
        return user if user is not None and user.is_active else None

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
