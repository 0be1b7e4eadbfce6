"""Render and send the service's emails: a text and an HTML part from templates."""

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string


def email_send(*, to: str, template: str, context: dict) -> None:
    """Send `notifications/<template>.{subject,txt,html}` to one recipient."""
    subject = render_to_string(f"notifications/{template}.subject", context).strip()
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"notifications/{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
    )
    message.attach_alternative(
        render_to_string(f"notifications/{template}.html", context), "text/html"
    )
    message.send()


def password_reset_email_send(*, to: str, full_name: str, link: str) -> None:
    minutes = max(1, settings.PASSWORD_RESET_TIMEOUT // 60)
    email_send(
        to=to,
        template="password_reset",
        context={"full_name": full_name, "link": link, "minutes": minutes},
    )


def password_changed_email_send(*, to: str, full_name: str) -> None:
    email_send(to=to, template="password_changed", context={"full_name": full_name})
