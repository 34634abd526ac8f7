"""A job lost with Redis: the database is the truth, so a reply left pending when the job queue came
back new is sent again (at most once) and answered, instead of waiting for the pending expiry."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chat import services
from chat.models import Message
from chat.redis_clients import key, probe_client
from tests.engine_helpers import has_status, pending_reply, read_row
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

# The bound the issue sets, from Redis coming back to the reply being taken; the code's is one
# maintenance round (2 s) after the worker's job listener reconnected.
REQUEUE_BOUND_SECONDS = 15


@pytest.fixture
def user(make_user):
    return make_user()


def test_replies_pending_before_the_job_queue_was_new_are_requeued_at_most_once(user):
    waited, cancelled, taken, later = (pending_reply(user) for _ in range(4))
    services.generation_cancel(conversation=cancelled.conversation)
    Message.objects.filter(pk=taken.pk).update(status=Message.Status.STREAMING)
    new_queue_at = timezone.now()
    Message.objects.filter(pk=later.pk).update(created_at=new_queue_at + timedelta(seconds=1))

    requeued = services.replies_requeue_lost(created_before=new_queue_at)

    assert [(r.pk, r.conversation_id) for r in requeued] == [(waited.pk, waited.conversation_id)]
    assert Message.objects.get(pk=waited.pk).requeued_at is not None
    # The queue is found new again (another restart): the reply was requeued already.
    assert services.replies_requeue_lost(created_before=timezone.now() + timedelta(seconds=5)) == [
        Message.objects.get(pk=later.pk)
    ]
    assert services.replies_requeue_lost(created_before=timezone.now() + timedelta(seconds=5)) == []


@pytest.mark.cluster_only
async def test_a_pending_reply_whose_job_was_lost_with_redis_is_answered_within_the_bound(user, upstream):
    redis = probe_client.get()
    epoch = key("jobs-epoch")

    async def marker_set() -> bool:
        return bool(await redis.exists(epoch))

    # A reply whose job was lost: Redis restarted after the send, empty, without the epoch marker.
    reply = await database_sync_to_async(pending_reply)(user)
    await redis.delete(epoch)

    async def taken() -> bool:
        return (await read_row(reply.pk)).status != Message.Status.PENDING

    took = await wait_for(taken, timeout=REQUEUE_BOUND_SECONDS)
    print(f"the lost job's reply was taken {took:.1f}s after Redis came back")
    await wait_for(lambda: has_status(reply.pk, Message.Status.COMPLETE), timeout=60)
    saved = await read_row(reply.pk)
    assert saved.requeued_at is not None and saved.content == "Hello, world!"
    assert await marker_set()
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("down_for", ["moments", "longer than the pending expiry"])
async def test_embedded_a_reply_left_pending_by_the_previous_server_run_is_answered_when_the_worker_starts(
    user, upstream, monkeypatch, settings, down_for
):
    from chat.engine import heartbeat, jobs

    # This process's first in-process worker finds the in-memory job queue new, as after a restart. The
    # process starts now: the reply's age must not depend on how long the test run has been going (the
    # reaper interrupts a reply pending longer than the expiry, unless its job was sent again since).
    monkeypatch.setattr(heartbeat, "_process_queue_claimed", False)
    monkeypatch.setattr(heartbeat, "PROCESS_STARTED_AT", timezone.now())
    reply = await database_sync_to_async(pending_reply)(user)
    down = timedelta(seconds=30 if down_for == "moments" else settings.CHAT_PENDING_EXPIRY_SECONDS + 60)
    before_this_run = heartbeat.PROCESS_STARTED_AT - down
    await database_sync_to_async(Message.objects.filter(pk=reply.pk).update)(created_at=before_this_run)

    jobs.ensure_in_process_worker()

    await wait_for(lambda: has_status(reply.pk, Message.Status.COMPLETE), timeout=60)
    saved = await read_row(reply.pk)
    assert saved.requeued_at is not None and saved.content == "Hello, world!"
    assert len(upstream.requests) == 1


async def test_embedded_replies_sent_during_this_run_are_never_requeued(user, upstream, monkeypatch):
    from chat.engine import heartbeat, jobs

    monkeypatch.setattr(heartbeat, "_process_queue_claimed", False)
    reply = await database_sync_to_async(pending_reply)(user)  # pending, with no job: as if its job were still queued

    jobs.ensure_in_process_worker()
    (worker, _), *_ = jobs._in_process.values()

    async def requeue_round_done() -> bool:  # the worker found the queue new and asked what to requeue
        return heartbeat._process_queue_claimed and worker._requeue_before is None

    await wait_for(requeue_round_done, timeout=60)
    assert (await read_row(reply.pk)).status == Message.Status.PENDING
    assert (await read_row(reply.pk)).requeued_at is None
    assert upstream.requests == []
