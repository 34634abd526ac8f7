"""Seed many synthetic conversations fast, for the admin-at-scale benchmark (docs/benchmarks.md).

Rows are written as raw column tuples: COPY on PostgreSQL, executemany inside one transaction on SQLite.
(bulk_create would overwrite the timestamps the data needs: they are auto_now_add fields.)
"""

import json
import random
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandParser
from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.utils import timezone

from chat.models import Conversation, Message
from chat.services.search_index import search_index_rebuild

MODELS = [
    "openai:gpt-4o-mini",
    "openai:gpt-4o",
    "anthropic:claude-sonnet-4-5",
    "anthropic:claude-haiku-4-5",
    "local:smollm2-135m-instruct",
    "ollama:llama3.2",
]
ERRORS = ["rate_limited", "timeout", "overloaded", "provider_error", "context_length"]
COMMON_WORDS = (  # noqa: SIM905 (a line of words reads better than a column of quoted ones)
    "the of and to in is that it for you with on as have be at this are or by from not but what all "
    "were when can there use an each which do how their if will up other about out many then them "
    "these so some would make like into time has look two more write go see number way could people "
    "than first water been call who now find long down day did get come made may part because"
).split()
# Words at known frequencies, so the benchmark can search for rare, medium and common terms.
# Shares are per word; a message has ~20-160 words, so roughly 0.1%, 1% and 10% of messages hold each.
TOPIC_WORDS = {"kubernetes": 0.00002, "invoice": 0.0002, "refund": 0.002}
SYLLABLES = "ka lo mi ter sen dra vol pre ex tion al ing ment con re de ver lu na sor pa tri gen".split()  # noqa: SIM905


def _vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    """Words and cumulative weights: common words, ~2000 pseudo-words on a Zipf curve, topic words."""
    invented = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))) for _ in range(2500)})[:2000]
    words = COMMON_WORDS + invented
    weights = [3.0 / (rank + 1) ** 0.5 for rank in range(len(COMMON_WORDS))]
    weights += [1.0 / (rank + 1) for rank in range(len(invented))]
    total = sum(weights)
    for word, share in TOPIC_WORDS.items():
        words.append(word)
        weights.append(total * share)
    cumulative, running = [], 0.0
    for weight in weights:
        running += weight
        cumulative.append(running)
    return words, cumulative


class Command(BaseCommand):
    help = "Seed synthetic users, conversations and messages in bulk (benchmarks only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--conversations", type=int, default=10_000)
        parser.add_argument("--messages", type=int, default=500_000)
        parser.add_argument("--users", type=int, default=50)
        parser.add_argument("--days", type=int, default=365, help="Spread conversations over this many days.")
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args: Any, **options: Any) -> None:
        self.rng = random.Random(options["seed"])
        self.words, self.cumulative = _vocabulary(self.rng)
        self.now = timezone.now()
        with transaction.atomic():
            owners = self._users(options["users"])
            plan = self._plan(options["conversations"], options["messages"], options["days"], owners)
            # Messages first: they fix each conversation's last activity (foreign keys are checked at commit).
            _write(Message, self._message_rows(plan, next_id=_next_id(Message)))
            _write(Conversation, self._conversation_rows(plan))
            _reset_sequences()
            # Written past the services (COPY): the search index is filled in one set-based pass.
            search_index_rebuild()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        self.stdout.write(f"Seeded {len(plan)} conversations, {options['messages']} messages, {len(owners)} users.")

    def _users(self, count: int) -> list[int]:
        user_model = get_user_model()
        names = [f"seed-user-{number:04d}" for number in range(count)]
        password = make_password(None)
        user_model.objects.bulk_create(
            [user_model(username=name, password=password) for name in names], ignore_conflicts=True
        )
        return list(user_model.objects.filter(username__in=names).values_list("pk", flat=True))

    def _plan(self, conversations: int, messages: int, days: int, owners: list[int]) -> list[dict[str, Any]]:
        """Ids, owners, models, start times and message counts (summing exactly to `messages`)."""
        weights = [self.rng.expovariate(1.0) + 0.2 for _ in range(conversations)]
        scale = messages / sum(weights)
        counts = [max(1, int(weight * scale)) for weight in weights]
        for index in range(messages - sum(counts)):
            counts[index % conversations] += 1
        first_id = _next_id(Conversation)
        return [
            {
                "id": first_id + index,
                "owner_id": self.rng.choice(owners),
                "model": self.rng.choice(MODELS),
                "started": self.now - timedelta(days=days * self.rng.random(), seconds=120 * count),
                "messages": count,
            }
            for index, count in enumerate(counts)
        ]

    def _text(self, low: int, high: int) -> str:
        return " ".join(self.rng.choices(self.words, cum_weights=self.cumulative, k=self.rng.randint(low, high)))

    def _conversation_rows(self, plan: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in plan:
            yield {
                "id": item["id"],
                "owner_id": item["owner_id"],
                "title": self._text(2, 6).capitalize()[:200],
                "model": item["model"],
                "system_prompt": "You are a helpful assistant." if self.rng.random() < 0.3 else "",
                "created_at": item["started"],
                "updated_at": item["last"],
            }

    def _message_rows(self, plan: list[dict[str, Any]], next_id: int) -> Iterator[dict[str, Any]]:
        for item in plan:
            provider, _, model = item["model"].partition(":")
            moment = item["started"]
            parent = None  # each conversation is one branch: a message follows the one before it
            for number in range(item["messages"]):
                moment += timedelta(seconds=self.rng.randint(5, 110))
                if number % 2 == 0:
                    row = {"role": "user", "content": self._text(8, 40), "client_id": f"seed-{next_id}"}
                else:
                    row = self._reply(moment, provider, model, context=number * 120)
                yield {
                    "id": next_id,
                    "conversation_id": item["id"],
                    "parent_id": parent,
                    "created_at": moment,
                    "updated_at": moment,
                    **row,
                }
                parent = next_id
                next_id += 1
            item["last"] = moment

    def _reply(self, moment: datetime, provider: str, model: str, context: int) -> dict[str, Any]:
        content = self._text(30, 160)
        input_tokens, output_tokens = context + self.rng.randint(10, 80), int(len(content) / 4)
        ttft = self.rng.randint(150, 3000)
        duration = ttft + self.rng.randint(500, 20_000)
        roll = self.rng.random()
        status = (
            "complete" if roll < 0.94 else "failed" if roll < 0.97 else "cancelled" if roll < 0.99 else "interrupted"
        )
        return {
            "role": "assistant",
            "content": content,
            "status": status,
            "provider": provider,
            "model": model,
            "finish_reason": {"complete": "stop", "cancelled": "cancelled"}.get(status, ""),
            "error_code": self.rng.choice(ERRORS) if status == "failed" else "",
            "error_message": "The provider did not answer in time." if status == "failed" else "",
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            # At a price of 1 per million input tokens and 4 per million output tokens.
            "cost": (Decimal(input_tokens) + 4 * Decimal(output_tokens)) / 1_000_000,
            "tokens_estimated": provider == "local",
            "time_to_first_token_ms": ttft,
            "duration_ms": duration,
            "started_at": moment,
            "finished_at": moment + timedelta(milliseconds=duration),
            "superseded_at": moment + timedelta(minutes=2) if self.rng.random() < 0.03 else None,
        }


def _next_id(model: type[models.Model]) -> int:
    # Read before a COPY starts: the connection can run no other query while one is open.
    return (model.objects.aggregate(top=models.Max("id"))["top"] or 0) + 1


def _write(model: type[models.Model], rows: Iterable[dict[str, Any]]) -> None:
    """Insert rows (attname -> value); fields a row leaves out take their default."""
    fields = model._meta.concrete_fields
    # JSON fields (a conversation's parameters, a reply's parts) go in as JSON text, as Django would write them.
    defaults = {
        field.attname: json.dumps(field.get_default()) if isinstance(field, models.JSONField) else field.get_default()
        for field in fields
    }
    tuples = (tuple(row.get(field.attname, defaults[field.attname]) for field in fields) for row in rows)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for values in tuples:
                    copy.write_row(values)
            return
        datetimes = [isinstance(field, models.DateTimeField) for field in fields]
        adapt = connection.ops.adapt_datetimefield_value
        placeholders = ", ".join(["%s"] * len(fields))
        sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"
        batch: list[tuple] = []
        for values in tuples:
            batch.append(tuple(adapt(v) if is_dt else v for v, is_dt in zip(values, datetimes, strict=True)))
            if len(batch) == 5000:
                cursor.executemany(sql, batch)
                batch.clear()
        cursor.executemany(sql, batch)


def _reset_sequences() -> None:
    """Explicit ids bypass PostgreSQL sequences: move them past the new rows."""
    statements = connection.ops.sequence_reset_sql(no_style(), [Conversation, Message])
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
