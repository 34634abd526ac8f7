"""Abuse limits: replies running at once, replies started per minute, tokens per day, frames per second.

The per-user limits are counted in the database at the moment a reply would start, so every server
process sees the same counts. Two requests at the very same instant may both pass: a limit can be
exceeded by the number of requests racing it, never more. Frame rate is per socket, in memory.
"""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.errors import ChatError
from chat.models import Conversation, DailyUsage, Message

MINUTE = timedelta(minutes=1)
# When to try again after a refusal that waits for a slot: replies usually end, or start, within seconds.
SLOT_RETRY_AFTER_SECONDS = 5


def _recent_conversations(*, user_id: int, since: datetime) -> Any:
    """The user's conversations touched since `since`, read off the (owner, -updated_at) index.

    Starting and finishing a reply both touch its conversation, so a message created since `since`
    always lies in one of these; the message index (conversation, id) does the rest.
    """
    return Conversation.objects.filter(owner_id=user_id, updated_at__gte=since).values("pk")


def _running_count(*, user_id: int) -> int:
    active = Message.objects.filter(status__in=Message.ACTIVE_STATUSES, conversation__owner_id=user_id)
    return active.count()


def _check_running(*, user_id: int) -> None:
    limit = settings.CHAT_MAX_CONCURRENT_PER_USER
    if limit > 0 and _running_count(user_id=user_id) >= limit:
        message = _(
            "%(limit)s of your replies are already running. Wait for one to finish or stop one, then try again."
        ) % {"limit": limit}
        raise ChatError("too_many_running", message, retry_after=SLOT_RETRY_AFTER_SECONDS)


def _check_rate(*, user_id: int, now: datetime) -> None:
    limit = settings.CHAT_MESSAGES_PER_MINUTE
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


def _check_budget(*, user_id: int, now: datetime) -> None:
    budget = settings.CHAT_DAILY_TOKEN_BUDGET
    if budget <= 0 or tokens_used_today(user_id=user_id, now=now) < budget:
        return
    retry_after = max(1, int((_midnight(now) + timedelta(days=1) - now).total_seconds() + 0.999))
    message = _("You have used today's budget of %(budget)s tokens. It renews at midnight UTC, in %(minutes)s min.") % {
        "budget": f"{budget:,}",
        "minutes": retry_after // 60 + 1,
    }
    raise ChatError("budget_exhausted", message, retry_after=retry_after)


def _midnight(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def reply_start_check(*, user_id: int) -> None:
    """Refuse a new reply with `too_many_running`, `rate_limited` or `budget_exhausted` (with retry_after)."""
    now = timezone.now()
    _check_running(user_id=user_id)
    _check_rate(user_id=user_id, now=now)
    _check_budget(user_id=user_id, now=now)


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
