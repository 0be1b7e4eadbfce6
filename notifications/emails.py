"""Render and send the service's emails: a text and an HTML part from templates."""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template import Context, Engine
from django.template.loader import render_to_string

# Every email is sent by the service, not a person: auto-responders (out-of-office, ticket
# systems) must not answer it (RFC 3834; Exchange reads its own header). Such a reply may quote
# the email, and with it a live reset link, to whoever reads the sender's address. Nothing here
# is a mailing list: no List-Unsubscribe, as a reset link must not be one to opt out of.
HEADERS = {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "OOF, AutoReply"}


def _text_render(name: str, context: dict) -> str:
    """Render a plain-text template (a subject, a text part) without HTML escaping."""
    # Django escapes every template by default, which would show "O&#x27;Brien" and turn a
    # link's "&" into "&amp;" in plain text. Switched off here, not in each template, so a new
    # text template cannot forget it.
    template = Engine.get_default().get_template(f"notifications/{name}")
    return template.render(Context(context, autoescape=False))


def email_send(*, to: str, template: str, context: dict) -> None:
    """Send `notifications/<template>.{subject,txt,html}` to one recipient."""
    # One line, whatever the template holds: a header with a newline raises BadHeaderError, and
    # a full name may contain one.
    subject = " ".join(_text_render(f"{template}.subject", context).split())
    message = EmailMultiAlternatives(
        subject=subject,
        body=_text_render(f"{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers=dict(HEADERS),
    )
    message.attach_alternative(
        render_to_string(f"notifications/{template}.html", context), "text/html"
    )
    message.send()


# The emails greet no one by name: the name is whatever the account's registrant typed, and
# anyone can register someone else's address, so it would carry a stranger's words (a fake
# "verify your wallet" link, say) into mail from this service's own domain.


def password_reset_email_send(*, to: str, link: str, time_left: float) -> None:
    """Email a reset link that works for `time_left` more seconds."""
    # What is left as the email goes out, not PASSWORD_RESET_TIMEOUT: it can go out minutes
    # after the request (retries, a backlog, a stopped worker). Both the minutes and the clock
    # time are rounded down, so the email never promises more time than the link has.
    expires_at = datetime.now(UTC) + timedelta(seconds=time_left)
    email_send(
        to=to,
        template="password_reset",
        context={
            "link": link,
            "minutes": int(time_left // 60),
            "expires_at": f"{expires_at:%H:%M} UTC",
        },
    )


def account_notice_send(*, kind: str, to: str) -> None:
    """Email a security notice: `kind` names its template (password_changed, email_changed)."""
    email_send(to=to, template=kind, context=_support())


def _support() -> dict:
    """SUPPORT_CONTACT, as the notice shows it and as its link."""
    contact = settings.SUPPORT_CONTACT
    if not contact:
        return {}
    return {
        "support": contact,
        "support_href": contact if "://" in contact else f"mailto:{contact}",
    }
