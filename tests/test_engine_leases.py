"""Leases: every write of a running reply is fenced by its lease holder; a worker that lost its lease
stops, keeps nothing and announces nothing; renewals never wait behind the database thread; a reply
is claimed exactly once."""

import asyncio
import logging
import threading
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from chat import events, services
from chat.engine import jobs
from chat.engine.generation import Generation
from chat.engine.worker import generation_job
from chat.models import Message
from chat.providers.base import StreamResult
from tests.engine_fixtures import TEST_MODEL
from tests.engine_helpers import GroupFrames, checkpointed, has_status, read_row
from tests.fake_upstream import Scenario
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]


@pytest.fixture
def user(make_user):
    return make_user()


def pending_reply(user) -> Message:
    conversation = services.conversation_create(owner=user, model=TEST_MODEL)
    result = services.message_send(conversation=conversation, client_id=uuid.uuid4().hex, content="Tell me a story")
    return result.reply


def row(pk: int) -> Message:
    return Message.objects.get(pk=pk)


def expire_and_reap(pk: int) -> list[Message]:
    """On the database thread, where checkpoints run too: none can renew the lease in between."""
    Message.objects.filter(pk=pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    return services.replies_interrupt_stale()


# --- the fence, at the service level -------------------------------------------------------------


def test_a_claim_names_its_lease_holder_after_the_worker(user):
    reply = pending_reply(user)

    context = services.generation_begin(message_id=reply.pk, worker_id="host:1:abc")

    assert context.lease_holder.startswith("host:1:abc/")
    assert row(reply.pk).lease_holder == context.lease_holder
    assert services.generation_begin(message_id=reply.pk, worker_id="host:2:def") is None, "claimed twice"
    assert row(reply.pk).lease_holder == context.lease_holder


def test_a_checkpoint_by_another_holder_saves_nothing_and_says_the_lease_is_lost(user):
    reply = pending_reply(user)
    mine = services.generation_begin(message_id=reply.pk, worker_id="a").lease_holder
    assert (
        services.generation_checkpoint(message_id=reply.pk, parts=[("text", "Once")], seq=1, lease_holder=mine)
        == "saved"
    )

    outcome = services.generation_checkpoint(
        message_id=reply.pk, parts=[("text", "Other text")], seq=9, lease_holder="b/123"
    )

    assert outcome == services.Checkpoint.LEASE_LOST
    saved = row(reply.pk)
    assert (saved.content, saved.seq, saved.lease_holder) == ("Once", 1, mine)


def test_a_stop_request_and_a_lost_lease_are_different_checkpoint_outcomes(user):
    stopped, reaped = pending_reply(user), pending_reply(user)
    holders = {r.pk: services.generation_begin(message_id=r.pk, worker_id="a").lease_holder for r in (stopped, reaped)}
    services.generation_cancel(conversation=stopped.conversation)
    Message.objects.filter(pk=reaped.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert [r.pk for r in services.replies_interrupt_stale()] == [reaped.pk]

    outcomes = [
        services.generation_checkpoint(message_id=r.pk, parts=[("text", "text")], seq=1, lease_holder=holders[r.pk])
        for r in (stopped, reaped)
    ]

    assert outcomes == [services.Checkpoint.STOP_REQUESTED, services.Checkpoint.LEASE_LOST]
    assert row(reaped.pk).lease_holder == "", "the reaper leaves no holder behind"


def test_a_final_save_after_the_reaper_changes_nothing(user):
    reply = pending_reply(user)
    mine = services.generation_begin(message_id=reply.pk, worker_id="a").lease_holder
    services.generation_checkpoint(
        message_id=reply.pk, parts=[("text", "Kept by the reaper")], seq=3, lease_holder=mine
    )
    Message.objects.filter(pk=reply.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    services.replies_interrupt_stale()
    reaped = row(reply.pk)
    result = StreamResult(finish_reason="stop", input_tokens=5, output_tokens=50)

    for finish in (services.generation_finish, services.reply_mark_interrupted):
        extra = {"status": Message.Status.CANCELLED} if finish is services.generation_finish else {}
        saved = finish(
            message_id=reply.pk, parts=[("text", "Overwritten")], seq=9, result=result, lease_holder=mine, **extra
        )
        assert saved is None

    after = row(reply.pk)
    assert (after.status, after.content, after.seq) == ("interrupted", "Kept by the reaper", 3)
    assert after.finished_at == reaped.finished_at and after.error_code == "interrupted"


def test_a_final_save_by_another_holder_changes_nothing_and_the_holders_save_lands(user):
    reply = pending_reply(user)
    mine = services.generation_begin(message_id=reply.pk, worker_id="a").lease_holder
    result = StreamResult(finish_reason="stop")
    finish = {"message_id": reply.pk, "seq": 2, "status": Message.Status.COMPLETE, "result": result}

    assert services.generation_finish(parts=[("text", "Stolen")], lease_holder="b/1", **finish) is None
    assert row(reply.pk).status == Message.Status.STREAMING

    saved = services.generation_finish(parts=[("text", "The end.")], lease_holder=mine, **finish)
    assert (saved.status, saved.content, saved.lease_holder, saved.lease_expires_at) == (
        "complete",
        "The end.",
        "",
        None,
    )


def test_a_renewal_extends_only_the_leases_the_worker_still_holds(user):
    held, lost = pending_reply(user), pending_reply(user)
    holders = [services.generation_begin(message_id=r.pk, worker_id="a").lease_holder for r in (held, lost)]
    past = timezone.now() - timedelta(seconds=1)
    Message.objects.filter(pk__in=[held.pk, lost.pk]).update(lease_expires_at=past)
    Message.objects.filter(pk=lost.pk).update(lease_holder="another-worker/1")

    assert services.generation_leases_renew(lease_holders=holders) == 1

    assert row(held.pk).lease_expires_at > timezone.now()
    assert row(lost.pk).lease_expires_at == past


# --- the engine ----------------------------------------------------------------------------------


async def test_a_worker_that_lost_its_lease_mid_stream_keeps_the_reaped_reply_and_sends_no_second_done(user, upstream):
    upstream.script(Scenario.slow(400, delay=0.02))
    reply = await database_sync_to_async(pending_reply)(user)
    async with GroupFrames(reply.conversation_id) as frames:
        generation = asyncio.ensure_future(Generation(reply.pk, reply.conversation_id).run())
        await wait_for(lambda: checkpointed(reply.pk))

        # Its lease runs out (the worker stalled, say) and another worker's reaper takes the reply.
        for reaped in await database_sync_to_async(expire_and_reap)(reply.pk):
            await events.publish_done(reaped)
        kept = await read_row(reply.pk)
        assert kept.status == Message.Status.INTERRUPTED

        await asyncio.wait_for(generation, 30)
        published = await frames.all_so_far()

    saved = await read_row(reply.pk)
    assert saved.status == Message.Status.INTERRUPTED, "the stale worker overwrote the reaped reply"
    assert (saved.content, saved.seq, saved.finished_at) == (kept.content, kept.seq, kept.finished_at)
    assert published.count("done") == 1, published
    assert await upstream.wait_closed_async(), "the upstream response was not closed"


async def test_a_lease_renewal_lands_while_the_database_thread_is_blocked(user, upstream):
    upstream.script(Scenario.slow(2000, delay=0.02))
    reply = await database_sync_to_async(pending_reply)(user)
    await jobs.submit(message_id=reply.pk, conversation_id=reply.conversation_id)
    await wait_for(lambda: checkpointed(reply.pk))

    # Block the one thread that claims, checkpoints and final saves run on.
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(60)

    blocker = asyncio.ensure_future(database_sync_to_async(hold)())
    try:
        assert await asyncio.to_thread(holding.wait, 20)
        before = (await read_row(reply.pk)).lease_expires_at

        async def renewed() -> bool:
            return (await read_row(reply.pk)).lease_expires_at > before

        await wait_for(renewed, timeout=30)
    finally:
        release.set()
        await blocker
    cancelled = await database_sync_to_async(services.generation_cancel)(conversation=reply.conversation)
    await jobs.request_stop(conversation_id=cancelled.conversation_id)
    await wait_for(lambda: has_status(reply.pk, Message.Status.CANCELLED))


async def test_a_job_delivered_twice_is_claimed_once_and_the_log_says_so(user, upstream, caplog):
    upstream.script(Scenario.slow(60, delay=0.02), Scenario.text("a second reply"))
    reply = await database_sync_to_async(pending_reply)(user)
    caplog.set_level(logging.INFO, logger="chat.engine")
    job = generation_job(message_id=reply.pk, conversation_id=reply.conversation_id)
    async with GroupFrames(reply.conversation_id) as frames:
        await jobs.submit(message_id=reply.pk, conversation_id=reply.conversation_id)
        await wait_for(lambda: has_status(reply.pk, Message.Status.STREAMING))
        # The jobs layer delivers it again (channels_redis does, when another reader cleans up).
        await get_channel_layer("jobs").send(settings.CHAT_WORKER_CHANNEL, job)

        async def dropped() -> bool:
            return f"job for reply {reply.pk} dropped" in caplog.text

        await wait_for(dropped)
        worker, _ = next(iter(jobs._in_process.values()))
        assert reply.pk in worker.runner.running, "the dropped duplicate took the running reply's place"
        await frames.arrived("done")
        assert await has_status(reply.pk, Message.Status.COMPLETE)
        published = await frames.all_so_far()

    claims = [r.getMessage() for r in caplog.records if f"reply {reply.pk} claimed by" in r.getMessage()]
    assert claims == [f"reply {reply.pk} claimed by {worker.worker_id}"]
    assert published.count("start") == published.count("done") == 1
    assert len(upstream.requests) == 1
