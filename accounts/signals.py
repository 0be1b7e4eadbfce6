"""Consequences of an account changed outside the API's own paths: the admin's user form, a
shell, `manage.py changepassword` (the admin's password form sets it through the services)."""

import functools

from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from accounts import services
from accounts.managers import normalize_email
from accounts.models import User


@receiver(pre_save, sender=User, dispatch_uid="accounts.account_saving")
def account_saving(sender, instance: User, raw: bool, using, update_fields, **kwargs):
    """Note the email this save replaces, as stored: not as loaded, since a save rolled back
    and tried again, an email assigned without being loaded, or another process's change
    since the load would each make the loaded one wrong."""
    instance._email_replaced = None
    if raw or "email" not in instance.__dict__:
        return  # a fixture, or an email never loaded nor assigned (deferred)
    if update_fields is not None and "email" not in update_fields:
        return
    if instance._state.adding and instance.email:
        # Stored as sign-in looks it up (accounts.managers), however a shell typed it:
        # "Ada@Example.com" or a domain in Unicode would be an account no one can sign in to.
        instance.email = normalize_email(instance.email)
        return
    stored = User.objects.using(using).filter(pk=instance.pk)
    if transaction.get_connection(using).in_atomic_block:
        # Held until the save's transaction ends: no other save slips in between. NO KEY, as
        # the save's own UPDATE: the user's token refresh and logout (foreign keys to this
        # row) must not wait for a shell transaction that keeps the email.
        stored = stored.select_for_update(no_key=True)
    instance._email_replaced = stored.values_list("email", flat=True).first()
    if instance.email and instance.email != instance._email_replaced:
        # A new email is stored as sign-in looks it up, as for a new account. One kept as it
        # is stays so: a row from before domains were encoded, whose encoded form another
        # account has (accounts migration 0005), can still be saved.
        instance.email = normalize_email(instance.email)


@receiver(post_save, sender=User, dispatch_uid="accounts.account_saved")
def account_saved(sender, instance: User, created: bool, update_fields, **kwargs):
    """A saved new password or email, or a deactivation, ends the user's emailed reset links: staff
    locking out someone who holds a link must not be undone by that link.
    A new password or email ends them by itself (each link is bound to both), and a reset
    racing a deactivation stores nothing (services.password_set); forgetting them here keeps
    a later reactivation from bringing them back. If the save rolls back, the links stay
    ended; the user can ask for another.

    A new email is also told to the old address (services.email_change_notify)."""
    replaced = instance.password_replaced and (update_fields is None or "password" in update_fields)
    if replaced:
        instance.password_replaced = False  # stored now
    old_email = instance._email_replaced
    instance._email_replaced = None
    # Compared as stored: a row written around the model in capitals, saved as it is stored
    # now, is the same mailbox.
    moved = old_email is not None and normalize_email(old_email) != normalize_email(instance.email)
    if created or kwargs.get("raw") or not (replaced or moved or not instance.is_active):
        return
    services.reset_links_end(user_id=instance.pk)
    if not instance.is_active:
        # A forgot served before the deactivation commits still sees the account active, and
        # its link would come back with a reactivation: forgotten again once committed.
        transaction.on_commit(
            functools.partial(services.reset_links_end, user_id=instance.pk),
            using=kwargs.get("using"),
        )
    if moved:
        services.email_change_notify(user=instance, old_email=old_email)
