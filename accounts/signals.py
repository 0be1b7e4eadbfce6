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

    A new email is also told to the old address (services.email_change_notify)."""
    saved = set(update_fields) if update_fields is not None else None
    replaced = instance.password_replaced and (saved is None or "password" in saved)
    moved = (saved is None or "email" in saved) and instance.email_replaced
    old_email = instance._loaded_email if moved else None
    # What this save stored is now the stored state; a change it left out is still to save.
    if saved is None or "password" in saved:
        instance.password_replaced = False
    if saved is None or "email" in saved:
        instance._loaded_email = instance.email
    if created or kwargs.get("raw") or not (replaced or moved or not instance.is_active):
        return
    services.reset_links_end(user_id=instance.pk)
    if old_email:
        services.email_change_notify(user=instance, old_email=old_email)
