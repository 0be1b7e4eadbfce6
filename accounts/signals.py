"""Consequences of a password replaced outside the API's own paths (the admin's password form
sets it through the services; `manage.py changepassword` and a shell save it directly)."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts import services
from accounts.models import User


@receiver(post_save, sender=User, dispatch_uid="accounts.reset_links_end_on_save")
def reset_links_end_on_save(sender, instance: User, created: bool, update_fields, **kwargs):
    """A saved new password or email, or a deactivation, ends the user's emailed reset links: staff
    locking out someone who holds a link must not be undone by that link.
    A new password or email ends them by itself (each link is bound to both), and a reset
    racing a deactivation stores nothing (services.password_set); forgetting them here keeps
    a later reactivation from bringing them back. If the save rolls back, the links stay
    ended; the user can ask for another."""
    replaced = instance.password_replaced and (update_fields is None or "password" in update_fields)
    moved = instance.email_replaced and (update_fields is None or "email" in update_fields)
    instance.password_replaced = False
    instance._loaded_email = instance.email
    if created or kwargs.get("raw") or not (replaced or moved or not instance.is_active):
        return
    services.reset_links_end(user_id=instance.pk)
