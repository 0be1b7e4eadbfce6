"""Consequences of an account changed outside the API's own paths: the admin's user form, a
shell, `manage.py changepassword` (the admin's password form sets it through the services)."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts import services
from accounts.models import User


@receiver(post_save, sender=User, dispatch_uid="accounts.account_saved")
def account_saved(sender, instance: User, created: bool, update_fields, **kwargs):
    """A saved new password or email, or a deactivation, ends the user's emailed reset links: staff
    locking out someone who holds a link must not be undone by that link.
    A new password or email ends them by itself (each link is bound to both), and a reset
    racing a deactivation stores nothing (services.password_set); forgetting them here keeps
    a later reactivation from bringing them back. If the save rolls back, the links stay
    ended; the user can ask for another.

    A new email is also told to the old address (services.email_changed)."""
    replaced = instance.password_replaced and (update_fields is None or "password" in update_fields)
    moved = instance.email_replaced and (update_fields is None or "email" in update_fields)
    old_email = instance._loaded_email if moved else None
    instance.password_replaced = False
    instance._loaded_email = instance.email
    if created or kwargs.get("raw") or not (replaced or moved or not instance.is_active):
        return
    services.reset_links_end(user_id=instance.pk)
    if old_email:
        services.email_changed(user=instance, old_email=old_email)
