"""Prepare a benchmark database: migrate, then N users with live sessions and R empty conversations each.

    DATABASE_URL=... python bench/seed.py --users 500 --rounds 4     (or SQLITE_PATH=... for embedded)

Prints JSON: {"sessions": [...], "conversations": [[round 0 ids], [round 1 ids], ...]}. On SQLite it
also installs triggers that count inserts and updates of chat_message (PostgreSQL has
pg_stat_user_tables for that).
"""

import argparse
import os
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
SQLITE_COUNTER = [
    "CREATE TABLE IF NOT EXISTS bench_writes (kind TEXT PRIMARY KEY, n INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO bench_writes VALUES ('message', 0)",
    "CREATE TRIGGER IF NOT EXISTS bench_ins AFTER INSERT ON chat_message "
    "BEGIN UPDATE bench_writes SET n = n + 1 WHERE kind = 'message'; END",
    "CREATE TRIGGER IF NOT EXISTS bench_upd AFTER UPDATE ON chat_message "
    "BEGIN UPDATE bench_writes SET n = n + 1 WHERE kind = 'message'; END",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--model", default="openai:gpt-test")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(orjson.dumps(seed(args.users, args.rounds, args.model)).decode())


def seed(users: int, rounds: int, model: str) -> dict:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection, transaction

    from chat.models import Conversation

    user_model = get_user_model()
    with transaction.atomic():
        existing = {u.username: u for u in user_model.objects.filter(username__startswith="bench-")}
        people = []
        for i in range(users):
            name = f"bench-{i:04d}"
            user = existing.get(name) or user_model.objects.create_user(username=name, password=None)
            people.append(user)
        sessions = []
        for user in people:
            store = SessionStore()
            store[SESSION_KEY] = str(user.pk)
            store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]  # the password login's
            store[HASH_SESSION_KEY] = user.get_session_auth_hash()
            store.create()
            sessions.append(store.session_key)
        conversations = [
            [c.pk for c in Conversation.objects.bulk_create([Conversation(owner=u, model=model) for u in people])]
            for _ in range(rounds)
        ]
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            for statement in SQLITE_COUNTER:
                cursor.execute(statement)
    return {"sessions": sessions, "conversations": conversations}


if __name__ == "__main__":
    main()
