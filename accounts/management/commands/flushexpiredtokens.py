"""Daily upkeep: forget spent refresh tokens an hour after they have expired anyway."""

from django.core.management.base import BaseCommand

from accounts.tokens import expired_spent_tokens_delete


class Command(BaseCommand):
    help = (
        "Delete the records of spent refresh tokens that expired over an hour ago; "
        "safe at any time."
    )

    def handle(self, *args, **options):
        deleted = expired_spent_tokens_delete()
        self.stdout.write(f"Deleted {deleted} expired refresh-token records.")
