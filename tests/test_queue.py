"""Waiting for a worker: `queued` means no worker has a free slot, `queue_full` counts only replies that
really wait and says when to retry, a burst of sends meets only the per-user limits, and the time to
first token is stored both ways (from the provider request, and from the send)."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from django.conf import settings

from chat import events, limits, services
from chat.engine import jobs
from chat.engine.generation import Generation
from chat.errors import ChatError
from chat.models import Message
from tests.engine_helpers import GroupFrames, has_status, pending_reply, read_row
from tests.fake_upstream import Scenario
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

PER_USER_CODES = {"too_many_running", "rate_limited", "budget_exhausted"}


@pytest.fixture
def user(make_user):
    return make_user()


async def submitted(user) -> Message:
    reply = await database_sync_to_async(pending_reply)(user)
    await jobs.submit(message_id=reply.pk, conversation_id=reply.conversation_id)
    return reply


# --- queued --------------------------------------------------------------------------------------


async def test_a_reply_is_told_queued_when_no_worker_has_a_free_slot(user, upstream, settings):
    settings.CHAT_WORKER_CONCURRENCY = 1
    upstream.script(Scenario.slow(2000, delay=0.02), Scenario.text("Your turn."))
    busy = await submitted(user)
    await wait_for(lambda: has_status(busy.pk, Message.Status.STREAMING))

    waiting = await database_sync_to_async(pending_reply)(user)
    async with GroupFrames(waiting.conversation_id) as frames:
        await jobs.submit(message_id=waiting.pk, conversation_id=waiting.conversation_id)

        async def told_queued() -> bool:
            return "queued" in frames.kinds

        await wait_for(told_queued)
        assert (await read_row(waiting.pk)).queued_at is not None, "not counted as really waiting"

        await database_sync_to_async(services.generation_cancel)(conversation=busy.conversation)
        await jobs.request_stop(conversation_id=busy.conversation_id)
        await wait_for(lambda: has_status(waiting.pk, Message.Status.COMPLETE))
        published = await frames.all_so_far()
    assert published.index("queued") < published.index("start")


async def test_a_reply_slow_to_be_claimed_while_a_worker_has_free_slots_is_not_told_queued(user, upstream):
    jobs.ensure_in_process_worker()
    assert await jobs.free_slots() == settings.CHAT_WORKER_CONCURRENCY
    # Pending past the notice's half second, as when a claim waits behind other database work.
    reply = await database_sync_to_async(pending_reply)(user)
    async with GroupFrames(reply.conversation_id) as frames:
        await jobs._notice_if_queued(reply.pk, reply.conversation_id)
        published = await frames.all_so_far()

    assert "queued" not in published
    saved = await read_row(reply.pk)
    assert (saved.status, saved.queued_at) == ("pending", None)


async def test_without_any_worker_a_pending_reply_is_told_queued(user, upstream, settings):
    settings.CHAT_WORKER_IN_PROCESS = False
    assert await jobs.free_slots() == 0
    reply = await database_sync_to_async(pending_reply)(user)
    async with GroupFrames(reply.conversation_id) as frames:
        await jobs._notice_if_queued(reply.pk, reply.conversation_id)
        published = await frames.all_so_far()

    assert published == ["queued"]


# --- queue_full and the per-user limits ----------------------------------------------------------


def test_a_burst_of_sends_meets_only_the_per_user_limits_each_with_retry_after(make_user):
    """300 sends from 30 users, the default limits, no worker taking anything yet: every reply stays
    pending (a free worker is about to take it), none is refused as if it waited in a full queue."""
    users = [make_user() for _ in range(30)]
    accepted: dict[int, int] = {user.pk: 0 for user in users}
    refused: list[ChatError] = []
    for _ in range(10):
        for user in users:
            try:
                pending_reply(user)
                accepted[user.pk] += 1
            except ChatError as error:
                refused.append(error)

    assert {error.code for error in refused} <= PER_USER_CODES, {error.code for error in refused}
    assert all(error.retry_after for error in refused)
    assert set(accepted.values()) == {settings.CHAT_MAX_CONCURRENT_PER_USER}
    assert settings.CHAT_MAX_QUEUED_PER_USER < settings.CHAT_MAX_CONCURRENT_PER_USER, "the defaults changed"


def test_queue_full_counts_replies_told_queued_and_says_when_to_retry(user, settings):
    settings.CHAT_MAX_QUEUED_PER_USER = 2
    pending = [pending_reply(user) for _ in range(3)]
    for reply in pending[:2]:
        assert services.reply_mark_queued(message_id=reply.pk) is not None

    with pytest.raises(ChatError) as caught:
        pending_reply(user)

    assert caught.value.code == "queue_full"
    assert caught.value.retry_after == limits.SLOT_RETRY_AFTER_SECONDS
    Message.objects.filter(pk=pending[0].pk).update(status=Message.Status.STREAMING)  # a worker took one
    assert pending_reply(user).status == Message.Status.PENDING


def test_a_reply_a_worker_took_is_not_marked_queued(user):
    reply = pending_reply(user)
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.STREAMING)

    assert services.reply_mark_queued(message_id=reply.pk) is None
    assert Message.objects.get(pk=reply.pk).queued_at is None


async def test_a_full_job_queue_refuses_the_send_with_retry_after(user, settings):
    settings.CHAT_WORKER_IN_PROCESS = False  # nobody takes the jobs
    settings.CHANNEL_LAYERS = {
        **settings.CHANNEL_LAYERS,
        "jobs": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1}},
    }
    channel_layers.backends.clear()
    first, second = [await database_sync_to_async(pending_reply)(user) for _ in range(2)]
    await jobs.submit(message_id=first.pk, conversation_id=first.conversation_id)

    with pytest.raises(ChatError) as caught:
        await jobs.submit(message_id=second.pk, conversation_id=second.conversation_id)

    assert caught.value.code == "queue_full"
    assert caught.value.retry_after == limits.SLOT_RETRY_AFTER_SECONDS
    assert (await read_row(second.pk)).status == Message.Status.FAILED


# --- time to first token -------------------------------------------------------------------------


async def test_time_to_first_token_leaves_out_the_wait_for_a_worker_and_send_to_first_token_includes_it(user, upstream):
    waited = timedelta(seconds=3 * settings.CHAT_TIMEOUT_FIRST_TOKEN)
    reply = await database_sync_to_async(pending_reply)(user)
    # The reply waited that long for a worker.
    await database_sync_to_async(Message.objects.filter(pk=reply.pk).update)(created_at=reply.created_at - waited)

    await asyncio.wait_for(Generation(reply.pk, reply.conversation_id).run(), 30)

    saved = await read_row(reply.pk)
    assert saved.status == Message.Status.COMPLETE
    # The provider's first token comes within CHAT_TIMEOUT_FIRST_TOKEN of the request, or the reply fails.
    assert saved.time_to_first_token_ms <= settings.CHAT_TIMEOUT_FIRST_TOKEN * 1000
    assert saved.send_to_first_token_ms >= waited.total_seconds() * 1000
    payload = events.message_payload(saved)
    assert payload["time_to_first_token_ms"] == saved.time_to_first_token_ms
    assert payload["send_to_first_token_ms"] == saved.send_to_first_token_ms
