"""Helpers for tests that drive the engine without a socket: rows read off the database thread, and
every frame published to a conversation."""

import asyncio
import uuid

from channels.layers import get_channel_layer
from django.db import close_old_connections

from chat import events
from chat.models import Message
from tests.harness.waiting import wait_for

MARKER = "test-marker"


async def read_row(pk: int) -> Message:
    """The row as a thread of its own reads it: the database thread may be blocked, or busy (the test
    database is a SQLite file in WAL mode, where a reader never waits for a writer)."""

    def read() -> Message:
        try:
            return Message.objects.get(pk=pk)
        finally:
            close_old_connections()

    return await asyncio.to_thread(read)


def pending_reply(user) -> Message:
    """A user's new conversation with one message sent: its reply waits, pending, for the worker."""
    from chat import services
    from tests.engine_fixtures import TEST_MODEL

    conversation = services.conversation_create(owner=user, model=TEST_MODEL)
    return services.message_send(conversation=conversation, client_id=uuid.uuid4().hex, content="Hello").reply


async def has_status(pk: int, status: str) -> bool:
    return (await read_row(pk)).status == status


async def checkpointed(pk: int) -> bool:
    """The reply streams and a checkpoint saved some of its text."""
    reply = await read_row(pk)
    return reply.status == Message.Status.STREAMING and bool(reply.content)


class GroupFrames:
    """`async with GroupFrames(conversation_id) as frames:` the kind of every frame published to the
    conversation, read off the channel layer as fast as it comes (a full channel would drop frames)."""

    def __init__(self, conversation_id: int) -> None:
        self.conversation_id = conversation_id
        self.kinds: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "GroupFrames":
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(events.conversation_group(self.conversation_id), channel)

        async def drain() -> None:
            while True:
                self.kinds.append((await layer.receive(channel))["kind"])

        self._task = asyncio.ensure_future(drain())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()

    async def arrived(self, kind: str) -> None:
        """Wait until a frame of `kind` was published (a reply's status is saved before its `done` goes out)."""

        async def seen() -> bool:
            return kind in self.kinds

        await wait_for(seen)

    async def all_so_far(self) -> list[str]:
        """The frames published up to now: a marker published now arrives after all of them."""
        await events.publish_to_conversation(self.conversation_id, {"type": MARKER})

        async def marker_arrived() -> bool:
            return MARKER in self.kinds

        await wait_for(marker_arrived)
        return self.kinds[: self.kinds.index(MARKER)]


def finished_reply(conversation, asked: str, parts: list[tuple[str, str]], result=None) -> Message:
    """A message sent and its reply generated to the end, through the services (no worker, no provider)."""
    from chat import services
    from chat.providers.base import StreamResult

    reply = services.message_send(conversation=conversation, client_id=uuid.uuid4().hex, content=asked).reply
    context = services.generation_begin(message_id=reply.pk, worker_id="test")
    return services.generation_finish(
        message_id=reply.pk,
        seq=1,
        status=Message.Status.COMPLETE,
        result=result or StreamResult(),
        lease_holder=context.lease_holder,
        parts=parts,
    )


def record_worker_writes(monkeypatch) -> list[str]:
    """The worker's writes in order, by service: its claim, each reply's checkpoint (written in
    batches, one entry a reply), its final save."""
    from chat import services

    writes: list[str] = []
    for name in ("generation_begin", "generation_finish"):
        original = getattr(services, name)
        monkeypatch.setattr(services, name, lambda *a, _f=original, _n=name, **k: writes.append(_n) or _f(*a, **k))
    batched = services.generation_checkpoints

    def checkpoints(batch):
        writes.extend("generation_checkpoint" for _ in batch)
        return batched(batch)

    monkeypatch.setattr(services, "generation_checkpoints", checkpoints)
    return writes
