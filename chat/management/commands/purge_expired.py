"""Delete the conversations past their retention (chat.services.retention), in batches; `--dry-run` only counts."""

from argparse import ArgumentParser

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from chat.models import Conversation, Message
from chat.services import conversations_expired, purge_expired


class Command(BaseCommand):
    help = "Delete expired, unheld conversations (with their messages, shares, search entries and files)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--batch-size", type=int, default=settings.CHAT_RETENTION_BATCH_SIZE)

    def handle(self, *args: object, dry_run: bool = False, batch_size: int = 0, **options: object) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        now = timezone.now()
        if dry_run:
            ids = conversations_expired(now=now, limit=Conversation.all_objects.count() or 1)
            messages = Message.objects.filter(conversation_id__in=ids).count()
            self.stdout.write(f"Would delete {len(ids)} conversations ({messages} messages). Nothing was deleted.")
            return
        counts = purge_expired(now=now, batch_size=batch_size)
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {counts.conversations} conversations ({counts.messages} messages, {counts.shares} share links)."
            )
        )
