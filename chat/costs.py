"""What replies cost: the price table (ModelPrice), a reply's cost from its token counts, and spend.

Token counts come as each provider reports them: OpenAI's input tokens include the cached ones
(read and written), Anthropic's are the uncached ones only (Provider.input_includes_cache); both
count reasoning within the output tokens. Each kind of token is priced at its own rate.
"""

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chat import rows
from chat.models import DailyUsage, ModelPrice
from chat.providers import registry
from chat.providers.base import tokens_for_chars

MILLION = Decimal(1_000_000)
PRICES_FILE = Path(__file__).resolve().parent / "data" / "prices.json"
ZERO = Decimal(0)


@dataclass(frozen=True)
class Usage:
    """A reply's token counts, as stored on its Message (None: not reported)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None

    @classmethod
    def of(cls, counts: Any) -> "Usage":
        """The token counts of anything that carries them by these names (a StreamResult, a Message)."""
        return cls(**{name: getattr(counts, name) for name in USAGE_FIELDS})


USAGE_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")


# `ModelPrice.objects.filter(model=..., effective_from__lte=...).order_by("-effective_from").first()`, written
# out (chat/rows.py): every reply's final save reads it.
_PRICE_AT = "WHERE model = %s AND effective_from <= %s ORDER BY effective_from DESC LIMIT 1"


def price_at(*, model_ref: str, moment: datetime | None = None) -> ModelPrice | None:
    """The model's price in force at `moment` (default now): the latest that took effect by then."""
    moment = moment or timezone.now()
    found = rows.read(ModelPrice, _PRICE_AT, [model_ref, rows.lookup_value(ModelPrice, "effective_from", moment)])
    return found[0] if found else None


def _input_includes_cache(provider_name: str) -> bool:
    provider = registry.providers().get(provider_name)
    # An OpenAI-compatible server (or a provider no longer configured) counts as OpenAI does.
    return provider.input_includes_cache if provider is not None else provider_name != "anthropic"


def cost_of(*, usage: Usage, price: ModelPrice, provider: str) -> Decimal:
    """The cost of these token counts at this price (8 decimal places)."""
    cached, written = usage.cached_input_tokens or 0, usage.cache_write_tokens or 0
    fresh = usage.input_tokens or 0
    if _input_includes_cache(provider):
        fresh = max(0, fresh - cached - written)
    reasoning = usage.reasoning_tokens or 0
    answer = max(0, (usage.output_tokens or 0) - reasoning)
    rates = (
        (fresh, price.input_per_million),
        (cached, _or(price.cached_read_per_million, price.input_per_million)),
        (written, _or(price.cache_write_per_million, price.input_per_million)),
        (answer, price.output_per_million),
        (reasoning, _or(price.reasoning_per_million, price.output_per_million)),
    )
    total = sum((Decimal(tokens) * rate for tokens, rate in rates), ZERO)
    return (total / MILLION).quantize(Decimal("0.00000001"))


def _or(value: Decimal | None, fallback: Decimal) -> Decimal:
    return fallback if value is None else value


def reply_cost(*, model_ref: str, usage: Usage, moment: datetime | None = None) -> Decimal | None:
    """The cost of a reply (or a title request) of `model_ref` started at `moment`; None: no price known."""
    price = price_at(model_ref=model_ref, moment=moment)
    if price is None:
        return None
    return cost_of(usage=usage, price=price, provider=model_ref.partition(":")[0])


def running_cost(
    *, price: ModelPrice | None, provider: str, prompt_chars: int, output_chars: int, reasoning_chars: int
) -> Decimal:
    """The estimated cost so far of a reply still streaming (four characters a token), for the budget
    checkpoints: its prompt, and what it has written."""
    if price is None:
        return ZERO
    usage = Usage(
        input_tokens=tokens_for_chars(prompt_chars),
        output_tokens=tokens_for_chars(output_chars),
        reasoning_tokens=tokens_for_chars(reasoning_chars),
    )
    return cost_of(usage=usage, price=price, provider=provider)


@dataclass(frozen=True)
class Spend:
    today: Decimal
    month: Decimal


def _month_start(day: date) -> date:
    return day.replace(day=1)


def spend_of(*, user_ids: list[int] | None = None, group_id: int | None = None, now: datetime | None = None) -> Spend:
    """What the users (or a group's members together) spent today and this month (UTC), finished replies
    and titles: the usage ledger, one query."""
    today = (now or timezone.now()).astimezone(UTC).date()
    rows = DailyUsage.objects.filter(day__gte=_month_start(today), day__lte=today)
    rows = rows.filter(user__groups__id=group_id) if group_id is not None else rows.filter(user_id__in=user_ids or [])
    totals = rows.aggregate(month=Sum("cost"), today=Sum("cost", filter=Q(day=today)))
    return Spend(today=totals["today"] or ZERO, month=totals["month"] or ZERO)


def prices_load(*, path: Path = PRICES_FILE, model: type[ModelPrice] = ModelPrice) -> int:
    """Add the prices of a JSON file (a list of ModelPrice fields, `effective_from` ISO 8601) that the
        table does not have yet (same model and moment); returns how many were added. Idempotent. `model` is
    the historical model when a migration seeds the table."""
    added = 0
    for entry in json.loads(path.read_text()):
        moment = parse_datetime(entry["effective_from"])
        values = {key: Decimal(str(value)) for key, value in entry.items() if key.endswith("_per_million")}
        _, created = model.objects.get_or_create(model=entry["model"], effective_from=moment, defaults=values)
        added += created
    return added
