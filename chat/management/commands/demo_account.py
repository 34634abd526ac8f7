"""Create (or reset) the demo account and print its credentials: for the README's first command."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create the demo account (username 'demo') with a fresh random password and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")

    def handle(self, *args: object, username: str, **options: object) -> None:
        password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(9)
        user, created = get_user_model().objects.get_or_create(username=username)
        user.set_password(password)
        user.save()
        verb = "Created" if created else "Reset"
        self.stdout.write(self.style.SUCCESS(f"{verb} the demo account — username: {username}  password: {password}"))
