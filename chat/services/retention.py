"""Retention: how long each user's conversations are kept, legal holds, and the purge of expired ones.

A group keeps its members' conversations `GroupRetention.keep_days` after their last activity (none:
forever); a user in several groups gets the longest, and a user in no group, or in any group without a
limit, keeps everything. A legal hold on a user or a conversation suspends every deletion: the purge skips
it, and its owner's delete only hides it (`deleted_by_owner_at`) until the hold is lifted.

Deleting conversations goes through `conversation_purge` alone. Other features with rows or files of their
own (attachments) connect to `conversations_purging`: each receiver deletes what it holds for the given
conversations inside the purge's transaction (files in `transaction.on_commit`) and returns its counts.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, QuerySet
from django.dispatch import Signal
from django.utils import timezone

from chat.models import Conversation, LegalHold, Message, PurgeRecord, ShareLink
from chat.services.search_index import search_index_forget

# Sent with `conversation_ids` (a list) inside the purge's transaction; a receiver returns {name: count}.
conversations_purging = Signal()


def retention_days_for(*, user: AbstractBaseUser) -> int | None:
    """How many days after their last activity `user`'s conversations are kept; None: forever."""
    groups = user.groups.aggregate(
        total=Count("pk"),
        limited=Count("pk", filter=Q(retention__keep_days__isnull=False)),
        longest=Max("retention__keep_days"),
    )
    if not groups["total"] or groups["limited"] < groups["total"]:
        return None
    return groups["longest"]


def _users_by_keep_days() -> QuerySet:
    """(user id, keep days) of every user whose conversations expire: every group of theirs has a limit."""
    return (
        get_user_model()
        .objects.annotate(
            group_count=Count("groups", distinct=True),
            limited_count=Count("groups", filter=Q(groups__retention__keep_days__isnull=False), distinct=True),
            keep_days=Max("groups__retention__keep_days"),
        )
        .filter(group_count__gt=0, group_count=F("limited_count"))
        .values_list("pk", "keep_days")
    )


def _unheld(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    held = LegalHold.objects.filter(Q(conversation=OuterRef("pk")) | Q(user=OuterRef("owner_id")))
    running = Message.objects.filter(conversation=OuterRef("pk"), status__in=Message.ACTIVE_STATUSES)
    return conversations.exclude(Exists(held)).exclude(Exists(running))


def conversations_expired(*, now: datetime, limit: int) -> list[int]:
    """Ids (lowest first, at most `limit`) of the conversations to purge at `now`: past their owner's
    retention, or deleted by their owner under a hold since lifted; never held ones, nor one with a reply running."""
    by_days: dict[int, list[int]] = {}
    for user_id, days in _users_by_keep_days():
        by_days.setdefault(days, []).append(user_id)
    expired = Q(deleted_by_owner_at__isnull=False)
    for days, user_ids in by_days.items():
        expired |= Q(owner_id__in=user_ids, updated_at__lt=now - timedelta(days=days))
    candidates = _unheld(Conversation.all_objects.filter(expired))
    return list(candidates.order_by("pk").values_list("pk", flat=True)[:limit])


@dataclass
class PurgeCounts:
    conversations: int = 0
    messages: int = 0
    shares: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def add(self, other: "PurgeCounts") -> None:
        self.conversations += other.conversations
        self.messages += other.messages
        self.shares += other.shares
        for name, count in other.extra.items():
            self.extra[name] = self.extra.get(name, 0) + count


def conversation_purge(*, conversation_ids: list[int]) -> PurgeCounts:
    """Delete these conversations for good, with everything that hangs off them (messages, share links,
    search entries, and whatever `conversations_purging` receivers hold); held ones are left alone."""
    if not conversation_ids:
        return PurgeCounts()
    with transaction.atomic():
        conversations = _unheld(Conversation.all_objects.filter(pk__in=conversation_ids)).select_for_update()
        chosen = list(conversations)
        ids = [conversation.pk for conversation in chosen]
        counts = PurgeCounts()
        for _receiver, found in conversations_purging.send(sender=Conversation, conversation_ids=ids):
            counts.add(PurgeCounts(extra=dict(found or {})))
        for conversation in chosen:
            search_index_forget(conversation=conversation)
        _, deleted = Conversation.all_objects.filter(pk__in=ids).delete()
    counts.conversations = deleted.get("chat.Conversation", 0)
    counts.messages = deleted.get("chat.Message", 0)
    counts.shares = deleted.get("chat.ShareLink", 0)
    return counts


def purge_expired_batch(*, now: datetime, batch_size: int, via: str) -> PurgeCounts:
    """Purge one batch of expired conversations in one transaction, and record it (counts only)."""
    counts = conversation_purge(conversation_ids=conversations_expired(now=now, limit=batch_size))
    if counts.conversations:
        PurgeRecord.objects.create(
            via=via,
            purged_at=now,
            conversations=counts.conversations,
            messages=counts.messages,
            shares=counts.shares,
            extra=counts.extra,
        )
    return counts


def purge_expired(*, now: datetime, batch_size: int | None = None, via: str = PurgeRecord.Via.COMMAND) -> PurgeCounts:
    """Purge every expired conversation, a batch (and a record) at a time, until none is left."""
    batch_size = batch_size or settings.CHAT_RETENTION_BATCH_SIZE
    total = PurgeCounts()
    while True:
        counts = purge_expired_batch(now=now, batch_size=batch_size, via=via)
        total.add(counts)
        if counts.conversations < batch_size:
            return total


def conversation_is_held(*, conversation: Conversation) -> bool:
    return LegalHold.objects.filter(Q(conversation=conversation) | Q(user_id=conversation.owner_id)).exists()


def conversation_hide_held(*, conversation: Conversation) -> None:
    """The owner deleted a held conversation: it leaves their view, search and share links, and stays
    for the hold (review sees only that it was deleted); the purge takes it once the hold is lifted."""
    with transaction.atomic():
        search_index_forget(conversation=conversation)
        conversation.deleted_by_owner_at = timezone.now()
        shares = ShareLink.objects.filter(conversation=conversation, revoked_at__isnull=True)
        shares.update(revoked_at=conversation.deleted_by_owner_at)  # as share_revoke does, all at once
        Conversation.all_objects.filter(pk=conversation.pk).update(deleted_by_owner_at=conversation.deleted_by_owner_at)
