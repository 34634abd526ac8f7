"""Abuse limits: replies running at once, replies started per minute, tokens per day, money per day and
month, frames per second. Each user's figures are the most generous of their groups' (chat/teams.py).

The per-user limits are counted in the database at the moment a reply would start, so every server
process sees the same counts. Two requests at the very same instant may both pass: a limit can be
exceeded by the number of requests racing it, never more. Frame rate is per socket, in memory.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from chat import costs, teams
from chat.errors import ChatError
from chat.models import Conversation, DailyUsage, Message
from chat.teams import EffectiveLimits

MINUTE = timedelta(minutes=1)
ZERO = Decimal(0)
# When to try again after a refusal that waits for a slot: replies usually end, or start, within seconds.
SLOT_RETRY_AFTER_SECONDS = 5


def _recent_conversations(*, user_id: int, since: datetime) -> Any:
    """The user's conversations touched since `since`, read off the (owner, -updated_at) index.

    Starting and finishing a reply both touch its conversation, so a message created since `since`
    always lies in one of these; the message index (conversation, id) does the rest.
    """
    return Conversation.objects.filter(owner_id=user_id, updated_at__gte=since).values("pk")


def _refuse_running(limit: int) -> None:
    message = _(
        "%(limit)s of your replies are already running. Wait for one to finish or stop one, then try again."
    ) % {"limit": limit}
    raise ChatError("too_many_running", message, retry_after=SLOT_RETRY_AFTER_SECONDS)


def _check_rate(*, user_id: int, now: datetime, limit: int) -> None:
    if limit <= 0:
        return
    since = now - MINUTE
    started = (
        Message.objects.filter(
            conversation__in=_recent_conversations(user_id=user_id, since=since),
            role=Message.Role.ASSISTANT,
            created_at__gte=since,
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    times = list(started)
    if len(times) >= limit:
        retry_after = max(1, int((times[-1] + MINUTE - now).total_seconds() + 0.999))
        message = _("You can start %(limit)s replies a minute. Try again in %(seconds)s s.") % {
            "limit": limit,
            "seconds": retry_after,
        }
        raise ChatError("rate_limited", message, retry_after=retry_after)


def tokens_used_today(*, user_id: int, now: datetime | None = None) -> int:
    """Input plus output tokens of the user's replies finished today (UTC), superseded or deleted ones too:
    one row of the usage ledger, which `generation_finish` keeps."""
    day = _midnight(now or timezone.now()).date()
    return DailyUsage.objects.filter(user_id=user_id, day=day).values_list("tokens", flat=True).first() or 0


def _check_budget(*, now: datetime, budget: int, used: int) -> None:
    if budget <= 0 or used < budget:
        return
    retry_after = max(1, int((_midnight(now) + timedelta(days=1) - now).total_seconds() + 0.999))
    message = _("You have used today's budget of %(budget)s tokens. It renews at midnight UTC, in %(minutes)s min.") % {
        "budget": f"{budget:,}",
        "minutes": retry_after // 60 + 1,
    }
    raise ChatError("budget_exhausted", message, retry_after=retry_after)


def _midnight(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class StartCheck:
    """What one statement read when a reply was about to start (`reply_start_check`).

    `existing_id`: the message this conversation already has with the send's client id (a repeat:
    never refused). `busy`: a reply runs in the conversation. `queued`: the user's replies told they
    wait for a free worker."""

    existing_id: int | None = None
    busy: bool = False
    queued: int = 0


# The figures of a start check, each a scalar subquery of one SELECT (see `reply_start_check`). Written
# out, not built with the ORM: composing and compiling these subqueries cost more CPU than running them,
# on the one database thread every send of a Daphne process waits for. Same filters, same indexes as
# the ORM's (tests/test_limits.py reads the plan); `deleted_by_owner_at` as Conversation.objects has it.
_MESSAGES, _CONVERSATIONS, _USAGE = (model._meta.db_table for model in (Message, Conversation, DailyUsage))
_ACTIVE = "m.status IN (%s, %s)"
_FIGURES = {
    "queued": f"SELECT COUNT(*) FROM {_MESSAGES} m JOIN {_CONVERSATIONS} c ON m.conversation_id = c.id"
    " WHERE c.owner_id = %s AND m.status = %s AND NOT m.cancel_requested AND m.queued_at IS NOT NULL",
    "running": f"SELECT COUNT(*) FROM {_MESSAGES} m JOIN {_CONVERSATIONS} c ON m.conversation_id = c.id"
    f" WHERE c.owner_id = %s AND {_ACTIVE}",
    "started": f"SELECT COUNT(*) FROM {_MESSAGES} m WHERE m.conversation_id IN (SELECT c.id FROM {_CONVERSATIONS} c"
    " WHERE c.owner_id = %s AND c.updated_at >= %s AND c.deleted_by_owner_at IS NULL)"
    " AND m.role = %s AND m.created_at >= %s",
    "tokens": f"SELECT u.tokens FROM {_USAGE} u WHERE u.user_id = %s AND u.day = %s",
    "busy": f"SELECT EXISTS (SELECT 1 FROM {_MESSAGES} m WHERE m.conversation_id = %s AND {_ACTIVE})",
    "existing_id": f"SELECT m.id FROM {_MESSAGES} m WHERE m.conversation_id = %s AND m.client_id = %s LIMIT 1",
}


def _figures(
    *, user_id: int, limits: EffectiveLimits, now: datetime, conversation_id: int | None, client_id: str
) -> dict[str, Any]:
    """The figures the user's limits need (and, in a conversation, its running reply and the message of
    `client_id`): one statement."""
    ops = connection.ops
    since = ops.adapt_datetimefield_value(now - MINUTE)
    active = list(Message.ACTIVE_STATUSES)
    wanted: dict[str, list[Any]] = {"queued": [user_id, Message.Status.PENDING]}
    if limits.max_running > 0:
        wanted["running"] = [user_id, *active]
    if limits.messages_per_minute > 0:
        wanted["started"] = [user_id, since, Message.Role.ASSISTANT, since]
    if limits.daily_token_budget > 0:
        wanted["tokens"] = [user_id, ops.adapt_datefield_value(_midnight(now).date())]
    if conversation_id is not None:
        wanted["busy"] = [conversation_id, *active]
        if client_id:
            wanted["existing_id"] = [conversation_id, client_id]
    sql = "SELECT " + ", ".join(f"({_FIGURES[name]})" for name in wanted)
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for params in wanted.values() for value in params])
        row = cursor.fetchone()
    return {name: value or 0 for name, value in zip(wanted, row, strict=True)}


def reply_start_check(*, user_id: int, conversation_id: int | None = None, client_id: str = "") -> StartCheck:
    """Refuse a new reply with `too_many_running`, `rate_limited`, `budget_exhausted` (tokens) or
    `budget_exceeded` (money), with retry_after, by the user's effective limits.

    Every figure (and, for a conversation, its running reply and the message of `client_id`) is read
    in one statement; a repeat of a client id is not refused. The group policies are cached
    (chat/teams.py); money budgets cost a query each (the user's, each group's shared one)."""
    now = timezone.now()
    limits = teams.limits_for(user_id=user_id)
    row = _figures(user_id=user_id, limits=limits, now=now, conversation_id=conversation_id, client_id=client_id)
    check = StartCheck(existing_id=row.get("existing_id") or None, busy=bool(row.get("busy")), queued=row["queued"])
    if check.existing_id is not None:
        return check
    if limits.max_running > 0 and row["running"] >= limits.max_running:
        _refuse_running(limits.max_running)
    if limits.messages_per_minute > 0 and row["started"] >= limits.messages_per_minute:
        _check_rate(user_id=user_id, now=now, limit=limits.messages_per_minute)  # the refusal's retry_after
    _check_budget(now=now, budget=limits.daily_token_budget, used=row.get("tokens", 0))
    money_check(user_id=user_id, limits=limits, now=now)
    return check


def _next_month(now: datetime) -> datetime:
    midnight = _midnight(now)
    return (midnight.replace(day=1) + timedelta(days=32)).replace(day=1)


def money_check(
    *, user_id: int, limits: EffectiveLimits | None = None, now: datetime | None = None, running: Decimal = ZERO
) -> None:
    """`budget_exceeded` when the user's spend today or this month, plus `running` (a reply still
    streaming), reaches their money budget, or when every group of theirs with a shared budget has
    spent it. Read from the usage ledger, which every process shares."""
    now = now or timezone.now()
    limits = limits or teams.limits_for(user_id=user_id)
    if limits.daily_cost_budget or limits.monthly_cost_budget:
        spend = costs.spend_of(user_ids=[user_id], now=now)
        _check_money(spend, running, limits.daily_cost_budget, limits.monthly_cost_budget, now, group=False)
    pools = [pool for pool in limits.pooled if pool.daily or pool.monthly]
    if not pools or len(pools) < len(limits.pooled):
        return  # a group of theirs has no shared budget: it never runs out
    refusals = []
    for pool in pools:
        try:
            spend = costs.spend_of(group_id=pool.group_id, now=now)
            _check_money(spend, running, pool.daily or ZERO, pool.monthly or ZERO, now, group=True)
        except ChatError as error:
            refusals.append(error)
            continue
        return
    raise min(refusals, key=lambda error: error.retry_after or 0)


def _check_money(
    spend: costs.Spend, running: Decimal, daily: Decimal, monthly: Decimal, now: datetime, *, group: bool
) -> None:
    if daily and spend.today + running >= daily:
        renews, amount = _midnight(now) + timedelta(days=1), daily
        message = (
            _("Your group's budget of %(amount)s %(currency)s for today is spent. It renews at midnight UTC.")
            if group
            else _("Your budget of %(amount)s %(currency)s for today is spent. It renews at midnight UTC.")
        )
    elif monthly and spend.month + running >= monthly:
        renews, amount = _next_month(now), monthly
        message = (
            _("Your group's budget of %(amount)s %(currency)s for this month is spent. It renews on the 1st (UTC).")
            if group
            else _("Your budget of %(amount)s %(currency)s for this month is spent. It renews on the 1st (UTC).")
        )
    else:
        return
    retry_after = max(1, int((renews - now).total_seconds() + 0.999))
    text = message % {"amount": f"{amount.normalize():f}", "currency": settings.CHAT_CURRENCY}
    raise ChatError("budget_exceeded", text, retry_after=retry_after)


class FrameRate:
    """A token bucket for one socket's incoming frames: `rate` a second, bursts up to twice that."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, 2 * rate)
        self.tokens = self.capacity
        self.checked = time.monotonic()
        self.refused_in_a_row = 0

    def take(self) -> None:
        """Count one frame, or raise `too_many_frames` with the wait until the next one is allowed."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.checked) * self.rate)
        self.checked = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.refused_in_a_row = 0
            return
        self.refused_in_a_row += 1
        retry_after = round((1 - self.tokens) / self.rate, 3)
        message = _("Too many frames: at most %(rate)s a second. Wait %(seconds)s s.") % {
            "rate": f"{self.rate:g}",
            "seconds": f"{retry_after:g}",
        }
        raise ChatError("too_many_frames", message, retry_after=retry_after)

    @property
    def flooding(self) -> bool:
        """A client that ignores a full bucket's worth of refusals is closed, not answered forever."""
        return self.refused_in_a_row > self.capacity


@dataclass(frozen=True)
class BudgetStatus:
    """What a user spent today and this month (UTC), their money budgets (0: none) and what is left."""

    currency: str
    spent_today: Decimal
    spent_month: Decimal
    daily_budget: Decimal
    monthly_budget: Decimal

    @property
    def left_today(self) -> Decimal | None:
        return max(ZERO, self.daily_budget - self.spent_today) if self.daily_budget else None

    @property
    def left_month(self) -> Decimal | None:
        return max(ZERO, self.monthly_budget - self.spent_month) if self.monthly_budget else None

    def payload(self) -> dict[str, str | None]:
        """As `GET /api/usage` answers it: amounts as decimal strings (four places), null where there is no budget."""

        def text(amount: Decimal | None) -> str | None:
            return None if amount is None else f"{amount.quantize(Decimal('0.0001')):f}"

        return {
            "currency": self.currency,
            "spent_today": text(self.spent_today),
            "spent_month": text(self.spent_month),
            "daily_budget": text(self.daily_budget or None),
            "monthly_budget": text(self.monthly_budget or None),
            "left_today": text(self.left_today),
            "left_month": text(self.left_month),
        }


def budget_status_for(*, user_id: int) -> BudgetStatus:
    """The user's spend and money budgets, for their settings: two queries."""
    limits = teams.limits_for(user_id=user_id)
    spend = costs.spend_of(user_ids=[user_id])
    return BudgetStatus(
        currency=settings.CHAT_CURRENCY,
        spent_today=spend.today,
        spent_month=spend.month,
        daily_budget=limits.daily_cost_budget,
        monthly_budget=limits.monthly_cost_budget,
    )
