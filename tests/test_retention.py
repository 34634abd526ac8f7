"""Retention: a purge deletes exactly the expired, unheld conversations (with their messages, shares,
search entries and whatever other features hang off them), in batches, idempotently, each batch recorded
as counts; `--dry-run` deletes nothing; a legal hold suspends every deletion. Time is `frozen_now`."""

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.models.deletion import ProtectedError
from django.test import Client
from django.urls import reverse

from chat import search, selectors, services
from chat.engine.worker import ChatWorker
from chat.errors import ChatError
from chat.models import Conversation, GroupRetention, LegalHold, Message, PurgeRecord, ShareLink
from chat.services.search_index import search_index_conversations
from tests.review_helpers import group_named, join_groups

pytestmark = [pytest.mark.django_db, pytest.mark.cluster]  # also on PostgreSQL

User = get_user_model()


def keep(group: str, days: int | None) -> None:
    GroupRetention.objects.create(group=group_named(group), keep_days=days)


def conversation_of(owner, *, idle_days: float, now, title: str = "", status: str = "complete") -> Conversation:
    """A conversation (two messages, a share link) whose last activity was `idle_days` before `now`."""
    conversation = Conversation.objects.create(owner=owner, title=title or f"idle {idle_days}", model="openai:gpt-4o")
    question = Message.objects.create(conversation=conversation, role="user", content="searchable words")
    Message.objects.create(conversation=conversation, parent=question, role="assistant", content="x", status=status)
    ShareLink.objects.create(token=f"t{conversation.pk}", owner=owner, conversation=conversation)
    search_index_conversations(conversation_ids=[conversation.pk])
    Conversation.all_objects.filter(pk=conversation.pk).update(updated_at=now - timedelta(days=idle_days))
    return conversation


def remaining() -> set[int]:
    return set(Conversation.all_objects.values_list("pk", flat=True))


@pytest.fixture
def team(frozen_now) -> dict:
    """Short (30 days), long (90 days), a member of both, a member of an unlimited group and one of no group."""
    keep("Short", 30)
    keep("Long", 90)
    group_named("Unlimited")
    users = {
        "short": join_groups(User.objects.create_user("short"), ["Short"]),
        "both": join_groups(User.objects.create_user("both"), ["Short", "Long"]),
        "mixed": join_groups(User.objects.create_user("mixed"), ["Short", "Unlimited"]),
        "loner": User.objects.create_user("loner"),
    }
    return users


def test_a_purge_deletes_exactly_the_expired_unheld_conversations(team, frozen_now):
    now = frozen_now
    short_old = conversation_of(team["short"], idle_days=31, now=now)
    short_new = conversation_of(team["short"], idle_days=29, now=now)
    both_mid = conversation_of(team["both"], idle_days=60, now=now)  # the longest of their groups: 90 days
    both_old = conversation_of(team["both"], idle_days=91, now=now)
    mixed_old = conversation_of(team["mixed"], idle_days=400, now=now)  # one group keeps forever
    loner_old = conversation_of(team["loner"], idle_days=400, now=now)  # no group: forever
    held = conversation_of(team["short"], idle_days=100, now=now)
    LegalHold.objects.create(conversation=held, reason="case 7")
    running = conversation_of(team["short"], idle_days=100, now=now, status="streaming")

    counts = services.purge_expired(now=now)

    assert remaining() == {short_new.pk, both_mid.pk, mixed_old.pk, loner_old.pk, held.pk, running.pk}
    assert (counts.conversations, counts.messages, counts.shares) == (2, 4, 2)
    assert not Message.objects.filter(conversation_id__in=[short_old.pk, both_old.pk]).exists()
    assert not ShareLink.objects.filter(conversation_id__in=[short_old.pk, both_old.pk]).exists()


def test_a_hold_on_a_user_keeps_all_their_conversations(team, frozen_now):
    old = conversation_of(team["short"], idle_days=365, now=frozen_now)
    hold = LegalHold.objects.create(user=team["short"], reason="audit")
    services.purge_expired(now=frozen_now)
    assert old.pk in remaining()
    hold.delete()
    services.purge_expired(now=frozen_now)
    assert old.pk not in remaining()


def test_a_purge_runs_in_batches_each_recorded_and_a_second_run_deletes_nothing(team, frozen_now):
    expired = {conversation_of(team["short"], idle_days=40 + n, now=frozen_now).pk for n in range(5)}
    kept = conversation_of(team["short"], idle_days=1, now=frozen_now)

    counts = services.purge_expired(now=frozen_now, batch_size=2)

    assert counts.conversations == 5 and remaining() == {kept.pk}
    records = list(PurgeRecord.objects.order_by("id").values_list("conversations", "messages", "shares", "via"))
    assert records == [(2, 4, 2, "command"), (2, 4, 2, "command"), (1, 2, 1, "command")]
    again = services.purge_expired(now=frozen_now, batch_size=2)
    assert again.conversations == 0 and PurgeRecord.objects.count() == 3 and expired.isdisjoint(remaining())


def test_a_purge_record_holds_counts_never_content(team, frozen_now):
    conversation_of(team["short"], idle_days=40, now=frozen_now, title="Very private title")
    services.purge_expired(now=frozen_now)
    record = PurgeRecord.objects.values().get()
    assert "Very private title" not in str(record) and "searchable" not in str(record)


def test_a_purge_takes_the_conversations_out_of_the_search_index(team, frozen_now):
    gone = conversation_of(team["short"], idle_days=40, now=frozen_now)
    services.purge_expired(now=frozen_now)
    assert search.search_for(user=team["short"], query="searchable") == []
    if connection.vendor == "sqlite":  # PostgreSQL's index is columns of the deleted rows; SQLite's is tables
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM chat_conversation_fts WHERE rowid = %s", [gone.pk])
            assert cursor.fetchone()[0] == 0
            cursor.execute("SELECT count(*) FROM chat_message_fts")
            assert cursor.fetchone()[0] == 0


def test_other_features_purge_their_rows_through_the_hook_and_are_counted(team, frozen_now):
    gone = conversation_of(team["short"], idle_days=40, now=frozen_now)
    seen = []

    def attachments(sender, conversation_ids, **kwargs):
        seen.append(list(conversation_ids))
        return {"attachments": 3}

    services.conversations_purging.connect(attachments)
    try:
        services.purge_expired(now=frozen_now)
    finally:
        services.conversations_purging.disconnect(attachments)
    assert seen == [[gone.pk]]
    assert PurgeRecord.objects.get().extra == {"attachments": 3}


def test_dry_run_deletes_nothing_and_says_what_would_go(team, frozen_now):
    conversation_of(team["short"], idle_days=40, now=frozen_now)
    conversation_of(team["short"], idle_days=41, now=frozen_now)
    before = remaining()
    out = StringIO()
    call_command("purge_expired", "--dry-run", stdout=out)
    assert "Would delete 2 conversations (4 messages)" in out.getvalue()
    assert remaining() == before and not PurgeRecord.objects.exists()


def test_the_command_purges_in_batches(team, frozen_now):
    for n in range(3):
        conversation_of(team["short"], idle_days=40 + n, now=frozen_now)
    out = StringIO()
    call_command("purge_expired", "--batch-size", "2", stdout=out)
    assert "Deleted 3 conversations (6 messages, 3 share links)" in out.getvalue()
    assert remaining() == set() and PurgeRecord.objects.count() == 2


@pytest.mark.django_db(transaction=True)
async def test_the_workers_maintenance_purges_a_batch_per_round_until_none_is_left(team, frozen_now, settings):
    from asgiref.sync import sync_to_async

    settings.CHAT_RETENTION_BATCH_SIZE = 2
    for n in range(3):
        await sync_to_async(conversation_of)(team["short"], idle_days=40 + n, now=frozen_now)
    worker = ChatWorker(handle_signals=False)

    await worker.purge_when_due()  # a worker that just started takes up replies first
    assert len(await sync_to_async(remaining)()) == 3
    assert await worker.purge_expired() is True  # a full batch: more wait, the next round goes on
    assert len(await sync_to_async(remaining)()) == 1
    assert await worker.purge_expired() is False
    assert await sync_to_async(remaining)() == set()
    vias = await sync_to_async(lambda: list(PurgeRecord.objects.values_list("via", flat=True)))()
    assert vias == ["worker", "worker"]


def test_a_user_deletes_their_own_unheld_conversation_for_good(team, frozen_now):
    conversation = conversation_of(team["loner"], idle_days=1, now=frozen_now)
    services.conversation_delete(conversation=conversation)
    assert remaining() == set()


def test_a_held_conversation_deleted_by_its_owner_leaves_their_view_and_stays_as_a_record(team, frozen_now):
    owner = team["loner"]
    conversation = conversation_of(owner, idle_days=1, now=frozen_now, title="Held talk")
    LegalHold.objects.create(conversation=conversation, reason="litigation")
    client = Client()
    client.force_login(owner)

    services.conversation_delete(conversation=conversation)  # what DELETE /api/conversations/<id> calls

    with pytest.raises(ChatError):
        selectors.conversation_get_for(user=owner, conversation_id=conversation.pk)
    assert client.get(reverse("chat:conversation", args=[conversation.pk])).status_code == 404
    assert "Held talk" not in client.get(reverse("chat:home")).content.decode()
    assert search.search_for(user=owner, query="searchable") == []
    assert ShareLink.objects.get(conversation=conversation).revoked_at is not None
    kept = Conversation.all_objects.get(pk=conversation.pk)
    assert kept.deleted_by_owner_at == frozen_now and kept.messages.count() == 2

    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password="pw"))
    page = admin.get(reverse("admin:chat_conversation_change", args=[conversation.pk])).content.decode()
    assert "Deleted by its owner" in page and "searchable words" not in page and "Held talk" not in page
    assert list(admin.get(reverse("admin:chat_message_changelist")).context["cl"].result_list) == []
    assert list(admin.get(reverse("admin:chat_sharelink_changelist")).context["cl"].result_list) == []
    listing = admin.get(reverse("admin:chat_conversation_changelist")).content.decode()
    assert "Deleted by its owner" in listing and "Held talk" not in listing


def test_once_the_hold_is_lifted_the_purge_takes_what_its_owner_deleted(team, frozen_now):
    conversation = conversation_of(team["loner"], idle_days=1, now=frozen_now)
    hold = LegalHold.objects.create(conversation=conversation, reason="litigation")
    services.conversation_delete(conversation=conversation)
    services.purge_expired(now=frozen_now)
    assert remaining() == {conversation.pk}
    hold.delete()
    services.purge_expired(now=frozen_now)
    assert remaining() == set()


def test_deleting_a_held_users_account_destroys_nothing(team, frozen_now):
    user_held, conversation_held = team["short"], team["both"]
    kept = [conversation_of(user, idle_days=1, now=frozen_now).pk for user in (user_held, conversation_held)]
    LegalHold.objects.create(user=user_held, reason="audit")
    LegalHold.objects.create(conversation_id=kept[1], reason="case")
    for user in (user_held, conversation_held):
        with pytest.raises(ProtectedError):
            user.delete()
    assert remaining() == set(kept) and Message.objects.count() == 4


def test_the_settings_page_says_how_long_conversations_are_kept(team):
    client = Client()
    client.force_login(team["both"])
    assert "deleted 90 days after its last activity" in client.get(reverse("chat:settings")).content.decode()
    client.force_login(team["mixed"])
    assert "kept until you delete them" in client.get(reverse("chat:settings")).content.decode()


def test_superusers_place_holds_in_the_admin_and_other_staff_see_neither_holds_nor_purges(team):
    root = User.objects.create_superuser("root", password="pw")
    admin = Client()
    admin.force_login(root)
    response = admin.post(reverse("admin:chat_legalhold_add"), {"user": team["short"].pk, "reason": "case 12"})
    assert response.status_code == 302
    hold = LegalHold.objects.get()
    assert (hold.user, hold.placed_by, hold.reason) == (team["short"], root, "case 12")

    staff = Client()
    staff.force_login(User.objects.create_user("staff", password="pw", is_staff=True))
    for name in ("legalhold", "purgerecord"):
        assert staff.get(reverse(f"admin:chat_{name}_changelist")).status_code == 403
