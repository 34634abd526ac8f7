"""chat/engine/checkpoints.py: the checkpoints asked for while a batch is written go in the next batch,
one transaction for all, each reply getting its own outcome (or its batch's failure) back."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat import services
from chat.engine.checkpoints import CheckpointWriter, checkpoint_writer, write_batch
from chat.models import Message
from tests.engine_helpers import pending_reply


class HeldWrites:
    """A batch writer the test lets go, one batch at a time: it records every batch it was given."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.release = asyncio.Event()

    async def __call__(self, batch):
        self.batches.append([progress["message_id"] for progress in batch])
        await self.release.wait()
        self.release.clear()
        if self.fail is not None:
            raise self.fail
        return [f"saved {progress['message_id']}" for progress in batch]


async def let_go(writes: HeldWrites, batches: int) -> None:
    while len(writes.batches) < batches:
        await asyncio.sleep(0)
    writes.release.set()


async def test_checkpoints_asked_for_during_a_write_go_together_in_the_next_batch_each_with_its_outcome():
    writes = HeldWrites()
    writer = CheckpointWriter(writes, batch_seconds=0)

    first = asyncio.ensure_future(writer.save({"message_id": 1}))
    while not writes.batches:
        await asyncio.sleep(0)
    later = [asyncio.ensure_future(writer.save({"message_id": pk})) for pk in (2, 3, 4)]
    await let_go(writes, 1)
    assert await first == "saved 1"
    await let_go(writes, 2)

    assert await asyncio.gather(*later) == ["saved 2", "saved 3", "saved 4"]
    assert writes.batches == [[1], [2, 3, 4]] and writer.batches == 2


async def test_a_failed_batch_fails_every_checkpoint_in_it_and_the_next_batch_is_written_again():
    writes = HeldWrites(fail=ConnectionError("database away"))
    writer = CheckpointWriter(writes, batch_seconds=0)

    saves = [asyncio.ensure_future(writer.save({"message_id": pk})) for pk in (1, 2)]
    await let_go(writes, 1)
    outcomes = await asyncio.gather(*saves, return_exceptions=True)
    writes.fail = None
    again = asyncio.ensure_future(writer.save({"message_id": 1}))
    await let_go(writes, 2)

    assert [type(outcome) for outcome in outcomes] == [ConnectionError, ConnectionError]
    assert await again == "saved 1"


async def test_a_reply_whose_checkpoint_is_cancelled_leaves_the_others_of_its_batch_their_outcome():
    writes = HeldWrites()
    writer = CheckpointWriter(writes, batch_seconds=0)

    gone, kept = (asyncio.ensure_future(writer.save({"message_id": pk})) for pk in (1, 2))
    while not writes.batches:
        await asyncio.sleep(0)
    gone.cancel()
    await let_go(writes, 1)

    assert await kept == "saved 2" and gone.cancelled()


async def test_checkpoints_asked_for_within_the_batch_interval_wait_for_one_batch_that_hurry_writes_at_once():
    writes = HeldWrites()
    writes.release.set()
    writer = CheckpointWriter(writes, batch_seconds=3600)
    assert await writer.save({"message_id": 1}) == "saved 1"  # the first batch in an hour: at once

    later = [asyncio.ensure_future(writer.save({"message_id": pk})) for pk in (2, 3, 4)]
    for _ in range(10):
        await asyncio.sleep(0)
    waited = list(writes.batches)
    writes.release.set()
    writer.hurry()

    assert await asyncio.gather(*later) == ["saved 2", "saved 3", "saved 4"]
    assert waited == [[1]] and writes.batches == [[1], [2, 3, 4]]


async def test_each_event_loop_has_one_writer():
    assert checkpoint_writer() is checkpoint_writer()


@pytest.mark.cluster
@pytest.mark.usefixtures("db", "engine")
def test_a_batch_gives_each_reply_its_own_outcome_saved_stop_requested_or_lease_lost(make_user):
    owner = make_user()
    contexts = [services.generation_begin(message_id=pending_reply(owner).pk, worker_id="w") for _ in range(3)]
    saved, stopped, reaped = contexts
    Message.objects.filter(pk=stopped.reply.pk).update(cancel_requested=True)
    Message.objects.filter(pk=reaped.reply.pk).update(lease_holder="another/worker")

    outcomes = write_batch(
        [
            {"message_id": c.reply.pk, "parts": [("text", "So far")], "seq": 4, "lease_holder": c.lease_holder}
            for c in contexts
        ]
    )

    assert outcomes == [services.Checkpoint.SAVED, services.Checkpoint.STOP_REQUESTED, services.Checkpoint.LEASE_LOST]
    assert [Message.objects.get(pk=c.reply.pk).content for c in contexts] == ["So far", "", ""]


@pytest.mark.cluster
@pytest.mark.usefixtures("db", "engine")
def test_a_checkpoint_failing_on_its_own_fails_alone_and_the_others_of_its_batch_are_saved(make_user, monkeypatch):
    owner = make_user()
    contexts = [services.generation_begin(message_id=pending_reply(owner).pk, worker_id="w") for _ in range(2)]
    broken = services.BudgetProbe(user_id=owner.pk, limits=None, running=None)
    monkeypatch.setattr(services.BudgetProbe, "exceeded", lambda probe: 1 / 0)
    batch = [
        {"message_id": c.reply.pk, "parts": [("text", "So far")], "seq": 4, "lease_holder": c.lease_holder}
        for c in contexts
    ]
    batch[0]["budget"] = broken

    failed, saved = write_batch(batch)

    assert isinstance(failed, ZeroDivisionError) and saved == services.Checkpoint.SAVED
    assert Message.objects.get(pk=contexts[1].reply.pk).content == "So far"


@pytest.mark.cluster
@pytest.mark.usefixtures("transactional_db", "engine")
async def test_a_reply_checkpointing_through_the_writer_saves_its_text(make_user):
    owner = await database_sync_to_async(make_user)()
    reply = await database_sync_to_async(pending_reply)(owner)
    context = await database_sync_to_async(services.generation_begin)(message_id=reply.pk, worker_id="w")
    progress = {"message_id": reply.pk, "parts": [("text", "Half")], "seq": 2, "lease_holder": context.lease_holder}

    outcome = await checkpoint_writer().save(progress)

    assert outcome == services.Checkpoint.SAVED
    assert (await database_sync_to_async(Message.objects.get)(pk=reply.pk)).content == "Half"


@pytest.mark.cluster
@pytest.mark.usefixtures("db", "engine")
def test_a_batch_is_one_update_that_stores_what_one_checkpoint_at_a_time_stores(make_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    owner = make_user()
    contexts = [services.generation_begin(message_id=pending_reply(owner).pk, worker_id="w") for _ in range(4)]
    parts = [("reasoning", "Let me think"), ("text", "So far, <b>ok</b> 'quoted' \\ é")]
    progress = [
        {"message_id": c.reply.pk, "parts": parts, "part_ms": [120, 80], "seq": 7, "lease_holder": c.lease_holder}
        for c in contexts
    ]
    progress[1].update(response_id="resp_1", cursor=41)
    alone, *together = contexts

    services.generation_checkpoint(**progress[0])
    with CaptureQueriesContext(connection) as queries:
        assert write_batch(progress[1:]) == [services.Checkpoint.SAVED] * 3

    assert [q["sql"].split()[0] for q in queries if "chat_message" in q["sql"]] == ["WITH"]  # one UPDATE
    stored = Message.objects.in_bulk([c.reply.pk for c in contexts])
    first = stored[alone.reply.pk]
    for context in together:
        row = stored[context.reply.pk]
        assert (row.content, row.parts, row.seq) == (first.content, first.parts, first.seq)
        assert row.lease_expires_at >= first.lease_expires_at
    assert first.content == "So far, <b>ok</b> 'quoted' \\ é" and first.parts[1]["duration_ms"] == 80
    with_id, without_id, _ = (stored[c.reply.pk] for c in together)
    assert (with_id.upstream_response_id, with_id.upstream_cursor) == ("resp_1", 41)
    assert (without_id.upstream_response_id, without_id.upstream_cursor) == ("", None)


@pytest.mark.cluster
@pytest.mark.usefixtures("db", "engine")
def test_a_checkpoint_without_a_response_id_keeps_the_one_saved_before(make_user):
    owner = make_user()
    context = services.generation_begin(message_id=pending_reply(owner).pk, worker_id="w")
    base = {"message_id": context.reply.pk, "parts": [("text", "One")], "seq": 1, "lease_holder": context.lease_holder}
    write_batch([{**base, "response_id": "resp_9", "cursor": 3}])

    write_batch([{**base, "parts": [("text", "One two")], "seq": 2}])

    reply = Message.objects.get(pk=context.reply.pk)
    assert (reply.content, reply.seq, reply.upstream_response_id, reply.upstream_cursor) == ("One two", 2, "resp_9", 3)
