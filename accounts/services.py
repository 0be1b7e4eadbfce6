"""Account use cases. Views parse and serialize; the decisions live here."""

import logging

from django.contrib.auth import authenticate, hashers
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from redis.exceptions import RedisError
from rest_framework.exceptions import ValidationError

from accounts import lost_answers, reset_tokens, tokens
from accounts.managers import normalize_email
from accounts.models import User
from auth_service.exceptions import InvalidCredentials, ResetTokenInvalid
from notifications import services as notices
from notifications import tasks
from notifications.models import OwedNotice

logger = logging.getLogger(__name__)

# Ids start at 1: forgot requests for unknown emails issue a token for this id, so both cases
# do the same Redis and broker work (response time must not reveal whether an account exists).
NO_ACCOUNT = 0

DUPLICATE_EMAIL = "An account with this email already exists."
WRONG_PASSWORD = "The current password is incorrect."  # noqa: S105 - a message
SAME_PASSWORD = "The new password must differ from the current one."  # noqa: S105 - a message


def password_check_strength(*, password: str, user: User, field: str) -> None:
    """Run Django's validators; report failures under the request's field name."""
    try:
        validate_password(password, user=user)
    except DjangoValidationError as error:
        raise ValidationError({field: list(error.messages)}) from None


def user_register(*, email: str, full_name: str, password: str) -> User:
    """Create an active account; 400 if the email (any case) is taken."""
    user = User(email=normalize_email(email), full_name=full_name)
    password_check_strength(password=password, user=user, field="password")
    user.set_password(password)
    try:
        inserted = User.objects.insert_unless_taken(user)
    except (OperationalError, InterfaceError) as error:
        user_id = _stored_after_all(error, email=user.email, password=user.password)
        if user_id is None:
            raise
        # The INSERT's reply was lost, not the INSERT: the account exists, so the client hears
        # 201, not a 503 whose retry would say the email is taken.
        logger.warning("account %s created although its insert failed to answer", user_id)
        User.objects.mark_inserted(user, pk=user_id)
        return user
    if not inserted:
        raise ValidationError({"email": [DUPLICATE_EMAIL]})
    return user


def user_login(*, email: str, password: str) -> dict[str, str]:
    """Token pair for an active user with this password; one error for every failure.

    Django's ModelBackend hashes the password even for unknown emails, so the failure cases
    take as long as a wrong password for a real account.
    """
    user = authenticate(email=email, password=password)
    if user is None:
        raise InvalidCredentials()
    return tokens.token_pair_for(user=user)


def token_refresh(*, refresh: str) -> dict[str, str]:
    """Rotate: the old refresh token is consumed and a new pair issued."""
    return tokens.refresh_token_rotate(raw=refresh)


def user_logout(*, user: User, refresh: str) -> None:
    """Revoke one refresh token of the signed-in user."""
    tokens.refresh_token_revoke(raw=refresh, user_id=user.pk)


def password_set(
    *, user: User, password: str, proven_hash: str | None = None, reset: bool = False
) -> None:
    """Store a new password, end every session the user had, and tell them by email.

    Sessions end with the old password hash: every token carries a digest of it. So do the
    emailed reset links (reset_tokens.binding): Redis forgets them once the change commits, a
    tidy-up that may fail without bringing one back.

    With `proven_hash` (the hash the current password, or a reset link, was checked against),
    the change is saved only if that is still the stored hash: of two concurrent requests that
    proved the same thing, one wins. The other hears its current password is wrong, as it now
    is, or, with `reset`, that its link is used (a reset also needs the same email, still active).
    """
    new_hash = hashers.make_password(password)
    try:
        notice = _password_store(user, new_hash, proven_hash=proven_hash, reset=reset)
    except (OperationalError, InterfaceError) as error:
        if _stored_after_all(error, pk=user.pk, password=new_hash) is None:
            raise
        # The COMMIT's reply was lost, not the COMMIT: the change holds, so the request succeeds.
        # Its notice, committed with it, is left to the worker's sweep.
        logger.warning("password of user %s stored although its commit failed to answer", user.pk)
        user.password = new_hash
        reset_links_end(user_id=user.pk)
        return
    # The change is committed: nothing after this may fail the request, which would tell the
    # client its new password was not saved.
    reset_links_end(user_id=user.pk)
    _notice_queue(task=tasks.send_password_changed_notice, notice=notice)


def email_change_notify(*, user: User, old_email: str) -> None:
    """Tell the old address that the account's email moved away from it: the owner hears of a
    change someone talked staff into. Call where the change is saved (accounts.signals).

    The notice is recorded in the save's transaction where there is one (the admin's), and
    queued once that commits; a save in autocommit (a shell's) has committed already, so it
    follows the change in its own. Sessions go on: the password still holds."""
    notice = notices.email_changed_notice_record(user=user, old_email=old_email)
    transaction.on_commit(
        lambda: _notice_queue(task=tasks.send_email_changed_notice, notice=notice)
    )


def _notice_queue(*, task, notice: OwedNotice) -> None:
    try:
        task.delay(notice.pk)
    except Exception as error:
        # The notice is recorded: the worker's sweep sends it once the queue is back.
        logger.warning(
            "%s notice for user %s left to the sweep: %s",
            notice.kind,
            notice.user_id,
            type(error).__name__,
        )


def _password_store(user: User, new_hash: str, *, proven_hash: str | None, reset: bool):
    with transaction.atomic():
        # The hash set directly: password_set ends the reset links itself.
        if proven_hash is None:
            user.password = new_hash
            user.save(update_fields=["password"])
        elif not User.objects.password_replace(
            user.pk, old=proven_hash, new=new_hash, email=user.email if reset else None
        ):
            if reset:
                raise ResetTokenInvalid()
            raise ValidationError({"current_password": [WRONG_PASSWORD]})
        user.password = new_hash
        return notices.password_changed_notice_record(user=user)


def _stored_after_all(error: DatabaseError, **account) -> int | None:
    """The id of the account with these fields, if a write whose answer was lost stored it all
    the same (accounts/lost_answers.py). The fields include a password hash, whose random salt
    makes finding it stored mean this request stored it."""
    return lost_answers.applied_after_all(
        error, lambda: User.objects.filter(**account).values_list("pk", flat=True).first()
    )


def reset_links_end(*, user_id: int) -> None:
    """Make Redis forget a user's emailed reset links. A new password or email already ends them
    (their binding no longer matches); a deactivation needs this to keep a later reactivation
    from bringing them back. A Redis failure is logged: the links are left to expire."""
    try:
        reset_tokens.token_revoke(user_id=user_id)
    except RedisError as error:
        logger.warning("reset links of user %s left to expire: %s", user_id, type(error).__name__)


def password_change(*, user: User, current_password: str, new_password: str) -> None:
    """Change the password of a signed-in user who proves the current one."""
    # Checked without upgrading the stored hash (user.check_password would save a re-hash):
    # the change below is saved only if the hash it proved is still the stored one.
    proven_hash = user.password
    if not hashers.check_password(current_password, proven_hash):
        raise ValidationError({"current_password": [WRONG_PASSWORD]})
    # A "change" to the same password would end every session and change nothing.
    if new_password == current_password:
        raise ValidationError({"new_password": [SAME_PASSWORD]})
    password_check_strength(password=new_password, user=user, field="new_password")
    password_set(user=user, password=new_password, proven_hash=proven_hash)


def password_reset_request(*, email: str) -> None:
    """Issue a reset token for an active account and queue the email; silent otherwise.

    Known and unknown emails take the same steps, so an unreachable database, Redis or broker
    fails both at the same one, and no link goes out (an unqueued token is taken back): such a
    503 tells nothing, and the view takes its rate-limit hits back."""
    user = User.objects.active_by_email(email)
    # An account whose password staff disabled (unusable) gets no link, as with Django's own
    # reset form: whoever holds the mailbox could otherwise undo the lock. Answered as unknown.
    if user is not None and not user.has_usable_password():
        user = None
    user_id = user.pk if user is not None else NO_ACCOUNT
    binding = reset_tokens.binding(user)
    with reset_tokens.token_replacing(user_id=user_id, binding=binding) as issued:
        tasks.send_password_reset_email.delay(user_id, issued.nonce)


def reset_link_alive(*, token: str) -> bool:
    """Whether a reset link may still work, read without using it up: what the reset page tells
    before anyone types a password. Redis alone answers (a used, replaced or expired token is
    gone from it); whether the account still matches is left to the reset itself."""
    return reset_tokens.token_peek(token=token) is not None


def password_reset_confirm(*, token: str, password: str) -> None:
    """Set a new password with a reset token; the token is used up only if the password is valid."""
    peeked = reset_tokens.token_peek(token=token)
    user = User.objects.filter(pk=peeked.user_id, is_active=True).first() if peeked else None
    if user is not None and peeked.binding is None:
        peeked = reset_tokens.token_adopt(token=token, user=user)  # the previous release's
    if user is None or peeked is None or not reset_tokens.binds(peeked, user):
        raise ResetTokenInvalid()
    password_check_strength(password=password, user=user, field="password")
    password_set(user=user, password=password, proven_hash=user.password, reset=True)
