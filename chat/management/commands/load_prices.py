"""Add the prices of a JSON file (default chat/data/prices.json) that the price table does not have yet."""

from argparse import ArgumentParser
from pathlib import Path

from django.core.management.base import BaseCommand

from chat.costs import PRICES_FILE, prices_load


class Command(BaseCommand):
    help = "Load model prices (per million tokens, with the moment each takes effect) from a JSON file."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("path", nargs="?", default=str(PRICES_FILE), help="A JSON list of ModelPrice fields.")

    def handle(self, *args: object, **options: object) -> None:
        added = prices_load(path=Path(str(options["path"])))
        self.stdout.write(self.style.SUCCESS(f"Added {added} prices."))
