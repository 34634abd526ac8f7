"""Rebuild the search index from the stored messages and titles (after CHAT_SEARCH_CONFIG changed)."""

from django.core.management.base import BaseCommand

from chat.services.search_index import search_index_rebuild


class Command(BaseCommand):
    help = "Index every message and conversation title again for search."

    def handle(self, *args: object, **options: object) -> None:
        count = search_index_rebuild()
        self.stdout.write(self.style.SUCCESS(f"Indexed {count} messages."))
