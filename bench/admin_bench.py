"""Admin at scale: time the transcript-review pages against a large PostgreSQL database.

    python bench/admin_bench.py [--database-url URL] [--runs 7]

Creates the database if missing, migrates it, seeds it with `seed_transcripts` when it holds no
conversations, then requests each page through Django's test Client as a logged-in superuser:
one warm-up, then --runs timed requests (median and max), plus the query count of one more request.
Prints a Markdown table for docs/benchmarks.md.
"""

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/streamchat_admin_bench"
SEARCH_TERMS = {"rare": "kubernetes", "medium": "invoice", "common": "refund"}


def _arguments(
    description: str = __doc__, database_url: str = DEFAULT_DATABASE_URL, users: int = 50
) -> argparse.Namespace:
    """The command line of a benchmark that seeds with `seed_transcripts` (search_bench.py shares it)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=database_url)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--users", type=int, default=users)
    return parser.parse_args()


def _ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    server = parts._replace(path="/postgres").geturl()
    with psycopg.connect(server, autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')


def _setup(args: argparse.Namespace) -> None:
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["DJANGO_DEBUG"] = "false"  # no per-query logging overhead: measure what production runs
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    _ensure_database(args.database_url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()  # lets the test Client's "testserver" host through ALLOWED_HOSTS
    call_command("migrate", verbosity=0)


def _seed_if_empty(args: argparse.Namespace) -> str:
    from django.core.management import call_command

    from chat.models import Conversation

    if Conversation.objects.exists():
        return "already seeded"
    started = time.perf_counter()
    call_command(
        "seed_transcripts", conversations=args.conversations, messages=args.messages, users=args.users, verbosity=0
    )
    return f"seeded in {time.perf_counter() - started:.0f} s"


def _pages() -> list[tuple[str, str]]:
    from django.db.models import Count
    from django.urls import reverse

    from chat.models import Conversation

    conversations = reverse("admin:chat_conversation_changelist")
    messages = reverse("admin:chat_message_changelist")
    sizes = Conversation.objects.annotate(n=Count("messages")).order_by("n").values_list("pk", "n")
    typical, largest = sizes[sizes.count() // 2], sizes.reverse()[0]
    transcript = "admin:chat_conversation_change"
    return [
        ("Conversation list", conversations),
        *((f"Conversation search, {kind} word", f"{conversations}?q={word}") for kind, word in SEARCH_TERMS.items()),
        ("Conversation list, last status failed", f"{conversations}?last_status=failed"),
        ("Conversation list, sorted by message count", f"{conversations}?o=-4"),
        ("Message list", messages),
        *((f"Message search, {kind} word", f"{messages}?q={word}") for kind, word in SEARCH_TERMS.items()),
        ("Message list, status failed", f"{messages}?status__exact=failed"),
        (f"Transcript page ({typical[1]} messages)", reverse(transcript, args=[typical[0]])),
        (f"Transcript page ({largest[1]} messages)", reverse(transcript, args=[largest[0]])),
        ("Usage dashboard, last 30 days", reverse("admin:chat_conversation_usage")),
        ("Usage dashboard, last 365 days", f"{reverse('admin:chat_conversation_usage')}?{_last_days(365)}"),
        (
            "Usage dashboard CSV, last 30 days",
            f"{reverse('admin:chat_conversation_usage')}?{_last_days(30)}&format=csv",
        ),
    ]


def _last_days(days: int) -> str:
    from django.utils import timezone

    today = timezone.localdate()
    return f"start={today - timedelta(days=days - 1)}&end={today}"


def _measure(client: object, url: str, runs: int) -> tuple[float, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def get() -> None:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)

    get()  # warm-up
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        get()
        timings.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as queries:
        get()
    return statistics.median(timings), max(timings), len(queries)


def _machine() -> str:
    from django.db import connection

    from chat.models import Conversation, Message

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory_gb:.0f} GB RAM; PostgreSQL {server.split()[0]}; "
        f"Python {platform.python_version()}; {Conversation.objects.count():,} conversations, "
        f"{Message.objects.count():,} messages"
    )


def main() -> None:
    args = _arguments()
    _setup(args)
    seeding = _seed_if_empty(args)

    from django.contrib.auth import get_user_model
    from django.test import Client

    admin, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(admin)

    print(f"Machine: {_machine()} ({seeding}); {args.runs} runs per page after one warm-up.\n")
    print("| Page | Median ms | Max ms | Queries |")
    print("|---|---:|---:|---:|")
    for name, url in _pages():
        median, worst, queries = _measure(client, url, args.runs)
        print(f"| {name} | {median:.0f} | {worst:.0f} | {queries} |", flush=True)


if __name__ == "__main__":
    main()
