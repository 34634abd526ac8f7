"""Following one reply for an API call (chat/v1/follow.py): from its snapshot, through live deltas,
to the saved reply, and across a re-snapshot the fan-out asks for."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from chat import events
from chat.fanout import resync_event
from chat.models import Conversation, Message
from chat.v1 import follow
from chat.v1.follow import Delta, follow_reply
from tests.engine_fixtures import TEST_MODEL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.cluster]


@database_sync_to_async
def streaming_reply(make_user) -> Message:
    conversation = Conversation.objects.create(owner=make_user(), model=TEST_MODEL)
    return Message.objects.create(conversation=conversation, role="assistant", status="streaming", content="")


def snapshots(reply: Message, *texts_and_seqs: tuple[str, int]):
    """A stand-in for actions.catch_up: each call, the next snapshot of the running reply."""
    pending = list(texts_and_seqs)

    async def catch_up(conversation_id, position=None, *, protocol=events.PROTOCOL_VERSION):
        text, seq = pending.pop(0)
        message = {"id": reply.pk, "status": "streaming", "parts": [{"kind": "text", "text": text}]}
        return {"type": "snapshot", "conversation": conversation_id, "message": message}, reply.pk, seq

    return catch_up


async def publish_delta(reply: Message, seq: int, offset: int, text: str) -> None:
    delta = {"conversation_id": reply.conversation_id, "message_id": reply.pk, "seq": seq, "part": 0}
    await events.publish_delta(**delta, kind="text", offset=offset, text=text)


async def test_a_re_snapshot_mid_reply_sends_only_the_text_not_sent_yet(make_user, monkeypatch):
    reply = await streaming_reply(make_user)
    monkeypatch.setattr(follow.actions, "catch_up", snapshots(reply, ("Hel", 1), ("Hello, wor", 4)))
    group = events.conversation_group(reply.conversation_id)
    stream = follow_reply(conversation_id=reply.conversation_id, reply_id=reply.pk)

    async def next_text() -> str:
        item = await asyncio.wait_for(stream.__anext__(), 10)
        assert isinstance(item, Delta), item
        return item.text

    first = await next_text()  # the snapshot's text: the fan-out follows the conversation by now
    await publish_delta(reply, 2, 3, "lo")
    second = await next_text()
    await get_channel_layer().group_send(group, resync_event(group))  # as after a Redis reconnect
    third = await next_text()
    await publish_delta(reply, 4, 8, "wor")  # covered by the new snapshot: dropped
    await publish_delta(reply, 5, 10, "ld")
    fourth = await next_text()
    await database_sync_to_async(Message.objects.filter(pk=reply.pk).update)(content="Hello, world", status="complete")
    await events.publish_done(await database_sync_to_async(Message.objects.get)(pk=reply.pk))
    saved = await asyncio.wait_for(stream.__anext__(), 10)
    await stream.aclose()

    assert [first, second, third, fourth] == ["Hel", "lo", ", wor", "ld"]
    assert isinstance(saved, Message) and saved.content == "Hello, world"
