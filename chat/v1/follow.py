"""Following one reply for an API call: its text as it streams, from the live log and the process's
fan-out exactly as the SSE stream follows a conversation, and then the reply as the database saved it."""

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import orjson
from channels.db import database_sync_to_async

from chat import actions, events
from chat.fanout import Inbox, fanout
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

    def missing(self, parts: Iterable[dict]) -> list[Delta]:
        """The parts' text (saved, or a snapshot's) not sent yet, where what was sent is how they
        begin; it counts as sent."""
        missing = []
        for index, part in enumerate(parts):
            sent = self.parts[index][1] if index < len(self.parts) else ""
            if part["text"].startswith(sent) and len(part["text"]) > len(sent):
                missing.append(self.add(index, part["kind"], part["text"][len(sent) :]))
        return missing


async def follow_reply(*, conversation_id: int, reply_id: int) -> AsyncIterator[Delta | Message | None]:
    """The reply's deltas as they stream, None when nothing came for a heartbeat's time (keep the
    connection alive), then the saved reply, which ends it."""
    inbox = Inbox()
    live = fanout()
    group = events.conversation_group(conversation_id)
    sent = Sent()
    try:
        await live.follow(group, inbox)
        snapshot, covered = await _snapshot(conversation_id, reply_id)
        for delta in sent.missing(snapshot.parts):
            yield delta
        if snapshot.running:
            async for delta in _live_deltas(inbox, conversation_id, reply_id, covered, sent):
                yield delta
        reply = await database_sync_to_async(Message.objects.get)(pk=reply_id)
        await release_database()
        for delta in sent.missing(reply.part_list()):
            yield delta
        yield reply
    finally:
        await live.unfollow(group, inbox)


@dataclass(frozen=True)
class Snapshot:
    parts: list[dict]  # the reply's parts as the snapshot has them, each with `kind` and `text`
    running: bool  # whether the reply may stream on (or the snapshot is of another reply)


async def _snapshot(conversation_id: int, reply_id: int) -> tuple[Snapshot, int]:
    """The reply as the live log (or the database) has it now, and the seq that covers."""
    frame, message_id, covered = await actions.catch_up(conversation_id)
    await release_database()
    message = frame["message"]
    if message_id != reply_id or message is None:
        return Snapshot(parts=[], running=True), covered
    return Snapshot(parts=message["parts"], running=message["status"] in Message.ACTIVE_STATUSES), covered


async def _live_deltas(
    inbox: Inbox, conversation_id: int, reply_id: int, covered: int, sent: Sent
) -> AsyncIterator[Delta | None]:
    """Deltas of the reply after `covered`, until its `done` frame. Told to re-snapshot (frames were
    lost), it sends what the new snapshot has that the caller lacks, and goes on from there."""
    while True:
        event = await next_event(inbox)
        if event is None:
            yield None
            continue
        if event.get("type") == "fanout.resync":
            snapshot, covered = await _snapshot(conversation_id, reply_id)
            for delta in sent.missing(snapshot.parts):
                yield delta
            if not snapshot.running:
                return
            continue
        if event.get("type") != "chat.frame" or event.get("message") != reply_id:
            continue
        if event["kind"] == "done":
            return
        if event["kind"] == "delta" and event["seq"] > covered:
            frame = orjson.loads(event["json"])
            yield sent.add(frame["part"], frame["kind"], frame["text"])
