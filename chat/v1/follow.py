"""Following one reply for an API call: its text as it streams, from the live log and the channel
layer exactly as the SSE stream follows a conversation, and then the reply as the database saved it."""

from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from chat import actions, events
from chat.models import Message
from chat.sse import next_event, release_database


@dataclass(frozen=True)
class Delta:
    kind: str  # "text" or "reasoning"
    text: str


class Sent:
    """What the caller has been sent of each part, so the saved reply can fill in anything a lost
    frame left out (a frame is delivered at most once; the database has the whole text)."""

    def __init__(self) -> None:
        self.parts: list[list[str]] = []

    def add(self, part: int, kind: str, text: str) -> Delta:
        while len(self.parts) <= part:
            self.parts.append([kind, ""])
        self.parts[part][1] += text
        return Delta(kind, text)

    def missing(self, reply: Message) -> list[Delta]:
        """The saved parts' text not sent yet, where what was sent is how they begin."""
        missing = []
        for index, part in enumerate(reply.part_list()):
            sent = self.parts[index][1] if index < len(self.parts) else ""
            if part["text"].startswith(sent) and len(part["text"]) > len(sent):
                missing.append(Delta(part["kind"], part["text"][len(sent) :]))
        return missing


async def follow_reply(*, conversation_id: int, reply_id: int) -> AsyncIterator[Delta | Message | None]:
    """The reply's deltas as they stream, None when nothing came for a heartbeat's time (keep the
    connection alive), then the saved reply, which ends it."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = events.conversation_group(conversation_id)
    await layer.group_add(group, channel)
    sent = Sent()
    try:
        frame, message_id, covered = await actions.catch_up(conversation_id)
        await release_database()
        snapshot = frame["message"]
        if message_id == reply_id and snapshot is not None:
            for index, part in enumerate(snapshot["parts"]):
                yield sent.add(index, part["kind"], part["text"])
        if snapshot is None or message_id != reply_id or snapshot["status"] in Message.ACTIVE_STATUSES:
            async for delta in _live_deltas(layer, channel, reply_id, covered, sent):
                yield delta
        reply = await database_sync_to_async(Message.objects.get)(pk=reply_id)
        await release_database()
        for delta in sent.missing(reply):
            yield delta
        yield reply
    finally:
        await layer.group_discard(group, channel)


async def _live_deltas(
    layer: object, channel: str, reply_id: int, covered: int, sent: Sent
) -> AsyncIterator[Delta | None]:
    """Deltas of the reply after `covered`, until its `done` frame."""
    while True:
        event = await next_event(layer, channel)
        if event is None:
            yield None
            continue
        if event.get("type") != "chat.frame" or event.get("message") != reply_id:
            continue
        if event["kind"] == "done":
            return
        if event["kind"] == "delta" and event["seq"] > covered:
            frame = orjson.loads(event["json"])
            yield sent.add(frame["part"], frame["kind"], frame["text"])
