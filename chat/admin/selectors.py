"""Reads for transcript review in the admin: list annotations, search, transcripts and usage (the usage
dashboard fills its rollups of closed days as it reads them: a cache of the messages, never the truth).

Every function here runs a fixed number of queries however many rows it touches: per-row figures are
correlated subqueries or database aggregates, never Python loops over related managers.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import (
    Count,
    DecimalField,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.text import smart_split, unescape_string_literal
from django.utils.translation import gettext_lazy as _

from chat.admin.markdown import markdown_html
from chat.models import (
    ApiKey,
    Attachment,
    Conversation,
    Feedback,
    Message,
    UsageRollup,
    UsageRollupDay,
    UsageRollupTtft,
)
from chat.providers import registry
from chat.review import reviewable
from chat.selectors import current_leaf_in
from chat.tree import Tree

FAILED_STATUSES = (Message.Status.FAILED, Message.Status.INTERRUPTED)
ZERO = Decimal(0)


def _per_conversation(aggregate: Count | Sum) -> Coalesce:
    """One aggregate over a conversation's messages, as a correlated subquery (0 when it has none)."""
    figure = (
        Message.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(figure=aggregate)
        .values("figure")
    )
    return Coalesce(Subquery(figure, output_field=IntegerField()), 0)


def without_owner_deleted(queryset: QuerySet) -> QuerySet:
    """Rows (messages, share links) but those of conversations their owner deleted under a legal hold,
    which staff see as a record only. A NOT IN over those few conversations, not a join: the big
    table's own indexes still serve the page (a join made the message search 30 times slower)."""
    hidden = Conversation.all_objects.filter(deleted_by_owner_at__isnull=False).values("pk")
    return queryset.exclude(conversation__in=hidden)


def conversation_review_queryset() -> QuerySet[Conversation]:
    """Conversations with the figures the review list shows and sorts by."""
    messages = Message.objects.filter(conversation=OuterRef("pk"))
    return Conversation.all_objects.select_related("owner").annotate(
        message_count=_per_conversation(Count("id")),
        tokens_in=_per_conversation(Sum("input_tokens")),
        tokens_out=_per_conversation(Sum("output_tokens")),
        tokens_estimated=Exists(messages.filter(tokens_estimated=True)),
        last_status=Subquery(messages.order_by("-id").values("status")[:1]),
    )


def search_terms(query: str) -> list[str]:
    """The admin's own splitting: words AND together, "quoted phrases" stay whole."""
    terms = []
    for bit in smart_split(query):
        if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
            bit = unescape_string_literal(bit)
        if bit:
            terms.append(bit)
    return terms


# Up to this many matching conversations are passed as literal ids (SQLite binds at most 32,766).
SEARCH_MATERIALISE_LIMIT = 20_000


def _conversations_with_message_containing(term: str) -> QuerySet | list[int]:
    """Ids of conversations with a message containing `term`, read once.

    The changelist runs its filtered query four times (count, page, two date-hierarchy queries); a
    common word matches tens of thousands of messages, so reading them once, not four times, keeps
    the page under a second. The trigram index answers `content__icontains` on PostgreSQL.
    """
    matching = Message.objects.filter(content__icontains=term).order_by().values_list("conversation_id", flat=True)
    ids = list(matching.distinct()[: SEARCH_MATERIALISE_LIMIT + 1])
    return ids if len(ids) <= SEARCH_MATERIALISE_LIMIT else matching


def conversation_search(*, conversations: QuerySet[Conversation], query: str) -> QuerySet[Conversation]:
    """Conversations whose title or any message contains every term (no join, so no DISTINCT). One its
    owner deleted under a legal hold is a record only: its content is never searched."""
    for term in search_terms(query):
        matching = _conversations_with_message_containing(term)
        conversations = conversations.filter(Q(title__icontains=term) | Q(pk__in=matching))
    return conversations.filter(deleted_by_owner_at__isnull=True) if search_terms(query) else conversations


def conversation_api_keys(*, reviewer: AbstractBaseUser) -> list[ApiKey]:
    """The API keys of the users `reviewer` may review, with their user: the keys calls may have come
    through (keys are few, conversations many)."""
    keys = reviewable(ApiKey.objects.select_related("user"), reviewer=reviewer, owner_field="user")
    return list(keys.order_by("name", "pk"))


def conversation_models() -> list[str]:
    """Every distinct 'provider:model' reference conversations use, sorted."""
    return list(Conversation.objects.order_by("model").values_list("model", flat=True).distinct())


def _index_walk_sql(table: str, columns: list[str]) -> str:
    names = [f"c{number}" for number in range(len(columns))]
    row, previous = ", ".join(columns), ", ".join(f"walk.{name}" for name in names)
    next_values = ", ".join(
        f"(SELECT {column} FROM {table} WHERE ({row}) > ({previous}) ORDER BY {row} LIMIT 1)" for column in columns
    )
    return (
        f"WITH RECURSIVE walk({', '.join(names)}) AS ("
        f" SELECT * FROM (SELECT {row} FROM {table} ORDER BY {row} LIMIT 1) AS first_row"
        f" UNION ALL SELECT {next_values} FROM walk WHERE walk.c0 IS NOT NULL"
        f") SELECT {', '.join(names)} FROM walk WHERE c0 IS NOT NULL"
    )


def message_distinct_values(*, fields: list[str]) -> list[tuple[str, ...]]:
    """Distinct value combinations of indexed message columns, in index order.

    A loose index scan (recursive CTE, one index probe per distinct value) instead of SELECT DISTINCT,
    which reads all 500,000 rows of a large table on every changelist page. `fields` must lead an index.
    """
    quote = connection.ops.quote_name
    columns = [quote(Message._meta.get_field(name).column) for name in fields]
    with connection.cursor() as cursor:
        cursor.execute(_index_walk_sql(quote(Message._meta.db_table), columns))
        return [tuple(row) for row in cursor.fetchall()]


def transcript_messages(*, conversation: Conversation) -> list[Message]:
    """Every message of a conversation in id order, every branch included (history is evidence)."""
    feedback = Prefetch("feedback", queryset=Feedback.objects.select_related("user").order_by("id"))
    messages = Message.objects.filter(conversation=conversation).order_by("id")
    return list(messages.prefetch_related("attachments", feedback))


MAX_TRANSCRIPT_INDENT = 6  # deeper branches are drawn at this depth: a page, not a staircase


@dataclass(frozen=True)
class TranscriptEntry:
    """One message of a transcript in reading order: each branch in full before its next sibling."""

    message: Message
    level: int  # how many messages with siblings lie on its way from the root, itself included
    index: int  # its place among its siblings, from 1
    count: int  # how many siblings it has, itself included
    current: bool  # on the branch the owner is on

    @property
    def indent(self) -> int:
        return min(self.level, MAX_TRANSCRIPT_INDENT)

    @property
    def model_label(self) -> str:
        return model_label(self.message.model_reference)

    @property
    def content_html(self) -> SafeString:
        """A reply's text as the chat shows it: Markdown, sanitised (chat/admin/markdown.py)."""
        return markdown_html(self.message.content)


def model_label(reference: str) -> str:
    """A model as a person names it, "gpt-4o-mini (OpenAI)", from a 'provider:model' reference; a model
    no longer offered is shown by its own name and its provider's."""
    try:
        provider, model = registry.resolve(reference)
    except registry.UnknownModel:
        provider_name, _colon, name = reference.partition(":")
        return f"{name} ({provider_name})" if name else reference
    return f"{model.label} ({provider.label})"


def transcript_tree(*, conversation: Conversation, messages: list[Message]) -> list[TranscriptEntry]:
    """The conversation's `messages` (all of them) as a tree in reading order, the current path marked.
    No query: the tree is built from the rows."""
    tree = Tree.of((message.pk, message.parent_id, message.role) for message in messages)
    by_id = {message.pk: message for message in messages}
    leaf = current_leaf_in(conversation, tree)
    current = set(tree.path_to(leaf)) if leaf is not None else set()
    entries = []
    pending = [(pk, 0) for pk in reversed(tree.children.get(None, []))]
    while pending:
        pk, level = pending.pop()
        siblings = tree.siblings(pk)
        level += len(siblings) > 1
        entries.append(TranscriptEntry(by_id[pk], level, siblings.index(pk) + 1, len(siblings), pk in current))
        pending.extend((child, level) for child in reversed(tree.children.get(pk, [])))
    return entries


def transcripts_for_export(*, conversations: QuerySet[Conversation]) -> list[Conversation]:
    """The chosen conversations with owner and ordered messages loaded: two queries in all. One its owner
    deleted under a legal hold is a record only: no message."""
    shown = without_owner_deleted(Message.objects.all()).prefetch_related("attachments")
    shown = shown.order_by("id")
    ordered_messages = Prefetch("messages", queryset=shown, to_attr="transcript")
    return list(
        Conversation.all_objects.filter(pk__in=conversations.values("pk"))
        .select_related("owner")
        .prefetch_related(ordered_messages)
        .order_by("id")
    )


@dataclass(frozen=True)
class UsageRow:
    """One user's figures over the period (the totals row has user_id 0)."""

    user_id: int
    username: str
    messages: int
    assistant_replies: int
    tokens_in: int
    tokens_out: int
    failures: int
    storage_bytes: int = 0  # attachments stored now (not only in the period)
    cost: Decimal = ZERO
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupRow:
    """A group's members' figures together (a member of two groups counts in both)."""

    name: str
    members: int
    assistant_replies: int
    tokens_in: int
    tokens_out: int
    cost: Decimal


@dataclass(frozen=True)
class ModelRow:
    """A model's replies, how many failed or were interrupted, and their median time to first token."""

    model: str
    assistant_replies: int
    tokens_in: int
    tokens_out: int
    cost: Decimal
    failures: int
    median_ttft_ms: int | None

    @property
    def failure_rate(self) -> float:
        return self.failures / self.assistant_replies if self.assistant_replies else 0.0


@dataclass(frozen=True)
class DayRow:
    day: date
    assistant_replies: int
    tokens_in: int
    tokens_out: int
    cost: Decimal


@dataclass(frozen=True)
class UsageCell:
    """The database's grouping: one day, one user, one model (empty for the user's own messages)."""

    day: date
    user_id: int
    username: str
    model: str
    messages: int
    assistant_replies: int
    tokens_in: int
    tokens_out: int
    cost: Decimal
    failures: int


@dataclass(frozen=True)
class FeedbackRow:
    """Thumbs up and down on the replies of one model."""

    model: str
    up: int
    down: int


@dataclass(frozen=True)
class UsageSummary:
    """The usage dashboard: one section a dataclass, each read from the same grouped rows (`cells`)."""

    start: date
    end: date
    rows: list[UsageRow]  # by user, by name
    totals: UsageRow
    by_group: list[GroupRow] = field(default_factory=list)
    by_model: list[ModelRow] = field(default_factory=list)
    by_day: list[DayRow] = field(default_factory=list)  # every day of the period, empty ones too
    cells: list[UsageCell] = field(default_factory=list)
    feedback: list[FeedbackRow] = field(default_factory=list)  # thumbs per model

    @property
    def top_users(self) -> list[UsageRow]:
        """The ten users who spent most (by cost, then tokens)."""
        ranked = sorted(self.rows, key=lambda row: (row.cost, row.tokens_in + row.tokens_out), reverse=True)
        return ranked[:TOP_USERS]


TOP_USERS = 10


def _period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, day after end 00:00) in the current time zone: an index range on created_at."""
    tz = timezone.get_current_timezone()
    return (
        datetime.combine(start, time.min, tzinfo=tz),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz),
    )


def _model_ref(provider: str, model: str) -> str:
    """'provider:model' as Message.model_reference spells it."""
    return Message(provider=provider, model=model).model_reference


def _messages_between(since: datetime, until: datetime) -> QuerySet[Message]:
    return Message.objects.filter(created_at__gte=since, created_at__lt=until)


def _local_day() -> TruncDate:
    return TruncDate("created_at", tzinfo=timezone.get_current_timezone())


def _usage_cells(since: datetime, until: datetime, reviewer: AbstractBaseUser | None = None) -> list[UsageCell]:
    """The period's messages grouped by day, owner and model, in one query: of the users `reviewer` may
    review, or of everyone (None: what the rollups hold)."""
    messages = _messages_between(since, until)
    if reviewer is not None:
        messages = reviewable(messages, reviewer=reviewer, owner_field="conversation__owner")
    grouped = (
        messages.values(
            "provider",
            "model",
            day=_local_day(),
            user_id=F("conversation__owner_id"),
            username=F("conversation__owner__username"),
        )
        .annotate(
            messages=Count("id", filter=Q(role=Message.Role.USER)),
            assistant_replies=Count("id", filter=Q(role=Message.Role.ASSISTANT)),
            tokens_in=Coalesce(Sum("input_tokens"), 0),
            tokens_out=Coalesce(Sum("output_tokens"), 0),
            cost=Coalesce(Sum("cost"), ZERO, output_field=DecimalField()),
            failures=Count("id", filter=Q(status__in=FAILED_STATUSES)),
        )
        .order_by()
    )
    return [UsageCell(model=_model_ref(row.pop("provider"), row.pop("model")), **row) for row in grouped]


TTFT_STEP_MS = 10  # the median time to first token is read to 10 ms


def _ttft_buckets(since: datetime, until: datetime) -> list[tuple[date, str, int, int]]:
    """(day, model, bucket_ms, replies): the period's times to first token in 10 ms steps, one query."""
    grouped = (
        _messages_between(since, until)
        .filter(role=Message.Role.ASSISTANT, time_to_first_token_ms__isnull=False)
        .values("provider", "model", day=_local_day(), bucket=F("time_to_first_token_ms") / TTFT_STEP_MS)
        .annotate(replies=Count("id"))
        .order_by()
    )
    return [
        (row["day"], _model_ref(row["provider"], row["model"]), row["bucket"] * TTFT_STEP_MS, row["replies"])
        for row in grouped
    ]


def _median(histogram: dict[int, int]) -> int | None:
    """The median of values given as {value: how many}: the middle one, or the mean of the middle two."""
    count = sum(histogram.values())
    if not count:
        return None
    wanted, seen, found = {(count - 1) // 2, count // 2}, 0, []
    for value in sorted(histogram):
        found += [value] * len({index for index in wanted if seen <= index < seen + histogram[value]})
        seen += histogram[value]
    return round(sum(found) / len(found))


# Days that ended this long ago are rolled up (UsageRollup): no reply of theirs is still running.
ROLLUP_AFTER_DAYS = 2


def _rollup(days: set[date], rolled_at: datetime) -> None:
    """Sum these days' messages into the rollup tables (replacing what they held for them)."""
    since, until = _period_bounds(min(days), max(days))
    cells = [cell for cell in _usage_cells(since, until) if cell.day in days]
    buckets = [bucket for bucket in _ttft_buckets(since, until) if bucket[0] in days]
    with transaction.atomic():
        for model in (UsageRollup, UsageRollupTtft, UsageRollupDay):
            model.objects.filter(day__in=days).delete()
        UsageRollup.objects.bulk_create(
            UsageRollup(**{name: getattr(cell, name) for name in ROLLUP_FIELDS}) for cell in cells
        )
        UsageRollupTtft.objects.bulk_create(
            UsageRollupTtft(day=day, model=model, bucket_ms=bucket_ms, replies=replies)
            for day, model, bucket_ms, replies in buckets
        )
        UsageRollupDay.objects.bulk_create(UsageRollupDay(day=day, rolled_at=rolled_at) for day in days)


def _closed_days(start: date, end: date) -> set[date]:
    """The period's days rolled up and still valid, rolling up (once) those that are not yet."""
    last_closed = min(end, timezone.localdate() - timedelta(days=ROLLUP_AFTER_DAYS))
    if start > last_closed:
        return set()
    wanted = {start + timedelta(days=offset) for offset in range((last_closed - start).days + 1)}
    rolled = dict(UsageRollupDay.objects.filter(day__range=(start, last_closed)).values_list("day", "rolled_at"))
    stale = set(wanted - rolled.keys())
    if rolled:
        since, until = _period_bounds(start, last_closed)
        # A message created on a rolled-up day and changed since (by the updated_at index): roll it up again.
        changed = _messages_between(since, until).filter(updated_at__gt=min(rolled.values()))
        stale |= {day for day in changed.values_list(_local_day(), flat=True).distinct() if day in rolled}
    if stale:
        _rollup(stale, timezone.now())
    return wanted


def _rolled_cells(start: date, end: date, reviewer: AbstractBaseUser) -> list[UsageCell]:
    rows = (
        reviewable(UsageRollup.objects.filter(day__range=(start, end)), reviewer=reviewer, owner_field="user")
        .values("day", "user_id", "model", *SUMMED, "cost", username=F("user__username"))
        .order_by()
    )
    return [UsageCell(**row) for row in rows]


def _rolled_buckets(start: date, end: date) -> list[tuple[date, str, int, int]]:
    rows = UsageRollupTtft.objects.filter(day__range=(start, end)).values_list("day", "model", "bucket_ms", "replies")
    return list(rows)


def _groups_of(user_ids: Iterable[int]) -> dict[int, list[str]]:
    """Each user's group names, in one query."""
    found: dict[int, list[str]] = {}
    memberships = get_user_model().groups.through.objects.filter(user_id__in=list(user_ids))
    for user_id, name in memberships.order_by("group__name").values_list("user_id", "group__name"):
        found.setdefault(user_id, []).append(name)
    return found


def _sum_rows(rows: Iterable[UsageRow]) -> UsageRow:
    rows = list(rows)
    return UsageRow(
        user_id=0,
        username=_("Total"),
        messages=sum(row.messages for row in rows),
        assistant_replies=sum(row.assistant_replies for row in rows),
        tokens_in=sum(row.tokens_in for row in rows),
        tokens_out=sum(row.tokens_out for row in rows),
        failures=sum(row.failures for row in rows),
        storage_bytes=sum(row.storage_bytes for row in rows),
        cost=sum((row.cost for row in rows), ZERO),
    )


def _totals_by(cells: Iterable[UsageCell], key: Callable[[UsageCell], Any]) -> dict[Any, dict[str, Any]]:
    """The cells' figures summed by `key`."""
    totals: dict[Any, dict[str, Any]] = {}
    for cell in cells:
        into = totals.setdefault(key(cell), dict.fromkeys(SUMMED, 0) | {"cost": ZERO})
        for name in SUMMED:
            into[name] += getattr(cell, name)
        into["cost"] += cell.cost
    return totals


SUMMED = ("messages", "assistant_replies", "tokens_in", "tokens_out", "failures")
ROLLUP_FIELDS = ("day", "user_id", "model", *SUMMED, "cost")


def usage_summary_for_period(*, start: date, end: date, reviewer: AbstractBaseUser) -> UsageSummary:
    """The usage dashboard for `start` to `end` inclusive: by user, group, model and day, aggregated by
    the database in a number of queries that does not grow with messages, users or days.

    Days that ended ROLLUP_AFTER_DAYS ago are read from their rollup (summed from their messages the
    first time a period asks for them, and again if a message of theirs changed); the last days from
    the messages themselves. The figures are of the users `reviewer` may review (chat/review.py); the
    median time to first token per model is the service's, of every user's replies."""
    closed = _closed_days(start, end)
    open_start = max(closed) + timedelta(days=1) if closed else start
    cells, buckets = [], []
    if closed:
        cells += _rolled_cells(start, max(closed), reviewer)
        buckets += _rolled_buckets(start, max(closed))
    if open_start <= end:
        since, until = _period_bounds(open_start, end)
        cells += _usage_cells(since, until, reviewer)
        buckets += _ttft_buckets(since, until)
    names = {cell.user_id: cell.username for cell in cells}
    groups = _groups_of(names)
    stored = dict(
        Attachment.objects.filter(owner_id__in=list(names))
        .values("owner_id")
        .annotate(total=Sum("size"))
        .values_list("owner_id", "total")
    )
    rows = [
        UsageRow(
            user_id=user_id,
            username=names[user_id],
            groups=tuple(groups.get(user_id, ())),
            storage_bytes=stored.get(user_id, 0),
            **figures,
        )
        for user_id, figures in _totals_by(cells, lambda cell: cell.user_id).items()
    ]
    rows.sort(key=lambda row: row.username)
    histograms: dict[str, dict[int, int]] = {}
    for _day, model, bucket_ms, replies in buckets:
        into = histograms.setdefault(model, {})
        into[bucket_ms] = into.get(bucket_ms, 0) + replies
    medians = {model: _median(histogram) for model, histogram in histograms.items()}
    by_model = [
        ModelRow(model=model, median_ttft_ms=medians.get(model), **_without(figures, "messages"))
        for model, figures in sorted(_totals_by(cells, lambda cell: cell.model).items())
        if model
    ]
    by_day = _totals_by(cells, lambda cell: cell.day)
    empty = dict.fromkeys(SUMMED, 0) | {"cost": ZERO}
    days = [start + timedelta(days=offset) for offset in range((end - start).days + 1)]
    return UsageSummary(
        start=start,
        end=end,
        rows=rows,
        totals=_sum_rows(rows),
        by_group=_group_rows(rows),
        by_model=by_model,
        by_day=[DayRow(day=day, **_without(by_day.get(day, empty), "messages", "failures")) for day in days],
        cells=cells,
        feedback=_feedback_by_model(start, end, reviewer),
    )


def _without(figures: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: value for name, value in figures.items() if name not in names}


def _group_rows(rows: list[UsageRow]) -> list[GroupRow]:
    by_name: dict[str, list[UsageRow]] = {}
    for row in rows:
        for name in row.groups:
            by_name.setdefault(name, []).append(row)
    return [
        GroupRow(
            name=name,
            members=len(members),
            assistant_replies=sum(row.assistant_replies for row in members),
            tokens_in=sum(row.tokens_in for row in members),
            tokens_out=sum(row.tokens_out for row in members),
            cost=sum((row.cost for row in members), ZERO),
        )
        for name, members in sorted(by_name.items())
    ]


def _feedback_by_model(start: date, end: date, reviewer: AbstractBaseUser) -> list[FeedbackRow]:
    """Per model, the thumbs up and down on replies created in the period (of the users `reviewer` may
    review): one query."""
    since, until = _period_bounds(start, end)
    rated = Feedback.objects.filter(message__created_at__gte=since, message__created_at__lt=until)
    grouped = (
        reviewable(rated, reviewer=reviewer, owner_field="message__conversation__owner")
        .values("message__model")
        .annotate(
            up=Count("id", filter=Q(rating=Feedback.Rating.UP)),
            down=Count("id", filter=Q(rating=Feedback.Rating.DOWN)),
        )
        .order_by("message__model")
    )
    return [FeedbackRow(model=row["message__model"] or "-", up=row["up"], down=row["down"]) for row in grouped]
