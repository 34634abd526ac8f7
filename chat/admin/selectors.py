"""Reads for transcript review in the admin: list annotations, search, transcripts and usage.

Every function here runs a fixed number of queries however many rows it touches: per-row figures are
correlated subqueries or database aggregates, never Python loops over related managers.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db import connection
from django.db.models import Count, Exists, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.text import smart_split, unescape_string_literal
from django.utils.translation import gettext_lazy as _

from chat.admin.markdown import markdown_html
from chat.models import ApiKey, Conversation, Feedback, Message
from chat.providers import registry
from chat.selectors import current_leaf_in
from chat.tree import Tree

FAILED_STATUSES = (Message.Status.FAILED, Message.Status.INTERRUPTED)


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


def conversation_review_queryset() -> QuerySet[Conversation]:
    """Conversations with the figures the review list shows and sorts by."""
    messages = Message.objects.filter(conversation=OuterRef("pk"))
    return Conversation.objects.select_related("owner").annotate(
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
    """Conversations whose title or any message contains every term (no join, so no DISTINCT)."""
    for term in search_terms(query):
        matching = _conversations_with_message_containing(term)
        conversations = conversations.filter(Q(title__icontains=term) | Q(pk__in=matching))
    return conversations


def conversation_api_keys() -> list[ApiKey]:
    """Every API key, with its user: the keys calls may have come through (keys are few, conversations many)."""
    return list(ApiKey.objects.select_related("user").order_by("name", "pk"))


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
    return list(Message.objects.filter(conversation=conversation).order_by("id").prefetch_related(feedback))


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
    """The chosen conversations with owner and ordered messages loaded: two queries in all."""
    ordered_messages = Prefetch("messages", queryset=Message.objects.order_by("id"), to_attr="transcript")
    return list(
        Conversation.objects.filter(pk__in=conversations.values("pk"))
        .select_related("owner")
        .prefetch_related(ordered_messages)
        .order_by("id")
    )


@dataclass(frozen=True)
class UsageRow:
    user_id: int
    username: str
    messages: int
    assistant_replies: int
    tokens_in: int
    tokens_out: int
    failures: int


@dataclass(frozen=True)
class FeedbackRow:
    """Thumbs up and down on the replies of one model."""

    model: str
    up: int
    down: int


@dataclass(frozen=True)
class UsageSummary:
    start: date
    end: date
    rows: list[UsageRow]
    totals: UsageRow
    feedback: list[FeedbackRow]


def _period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, day after end 00:00) in the current time zone: an index range on created_at."""
    tz = timezone.get_current_timezone()
    return (
        datetime.combine(start, time.min, tzinfo=tz),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz),
    )


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
    )


def usage_summary_for_period(*, start: date, end: date) -> UsageSummary:
    """Per user, messages created from `start` to `end` inclusive, aggregated in one query."""
    since, until = _period_bounds(start, end)
    grouped = (
        Message.objects.filter(created_at__gte=since, created_at__lt=until)
        .values("conversation__owner_id", "conversation__owner__username")
        .annotate(
            messages=Count("id", filter=Q(role=Message.Role.USER)),
            assistant_replies=Count("id", filter=Q(role=Message.Role.ASSISTANT)),
            tokens_in=Coalesce(Sum("input_tokens"), 0),
            tokens_out=Coalesce(Sum("output_tokens"), 0),
            failures=Count("id", filter=Q(status__in=FAILED_STATUSES)),
        )
        .order_by("conversation__owner__username")
    )
    rows = [
        UsageRow(
            user_id=row.pop("conversation__owner_id"),
            username=row.pop("conversation__owner__username"),
            **row,
        )
        for row in grouped
    ]
    return UsageSummary(
        start=start, end=end, rows=rows, totals=_sum_rows(rows), feedback=_feedback_by_model(since, until)
    )


def _feedback_by_model(since: datetime, until: datetime) -> list[FeedbackRow]:
    """Per model, the thumbs up and down on replies created in the period: one query."""
    grouped = (
        Feedback.objects.filter(message__created_at__gte=since, message__created_at__lt=until)
        .values("message__model")
        .annotate(
            up=Count("id", filter=Q(rating=Feedback.Rating.UP)),
            down=Count("id", filter=Q(rating=Feedback.Rating.DOWN)),
        )
        .order_by("message__model")
    )
    return [FeedbackRow(model=row["message__model"] or "-", up=row["up"], down=row["down"]) for row in grouped]
