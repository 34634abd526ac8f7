"""The fan-out: one subscription per group and process, confirmed before follow() returns, and a fresh
snapshot for every follower after Redis comes back."""

import asyncio

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer
from django.conf import settings

from chat import events, fanout, services
from chat.errors import ChatError
from chat.fanout import Inbox, LayerFanout, RedisFanout, resync_event
from chat.redis_clients import log_client
from tests.engine_fixtures import TEST_MODEL
from tests.fake_upstream import Scenario


class FakeConnection:
    """A Redis pub/sub connection whose replies the test hands out, one at a time."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.replies: asyncio.Queue = asyncio.Queue()

    async def send_command(self, *args: object) -> None:
        self.sent.append(args)

    async def read_response(self, **options: object) -> list:
        reply = await self.replies.get()
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def disconnect(self) -> None:
        pass

    def confirm(self, channel: bytes) -> None:
        self.replies.put_nowait([b"subscribe", channel, 1])

    def message(self, channel: bytes, event: dict) -> None:
        self.replies.put_nowait([b"message", channel, orjson.dumps(event)])


class Fake:
    """A RedisFanout over fake connections; counts how often it decodes."""

    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []
        self.decoded = 0
        self.fanout = RedisFanout(channel_of=lambda group: f"p:{group}", decode=self.decode, connect=self.connect)

    async def connect(self) -> FakeConnection:
        self.connections.append(FakeConnection())
        return self.connections[-1]

    def decode(self, data: bytes) -> dict:
        self.decoded += 1
        return orjson.loads(data)


async def until(condition, timeout: float = 5) -> None:
    """Wait for a state the code reaches (not for a time); the timeout only stops a broken test."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


async def confirmed_follow(fake: Fake, group: str, inbox: Inbox) -> None:
    following = asyncio.create_task(fake.fanout.follow(group, inbox))
    await until(lambda: fake.connections and any(f"p:{group}".encode() in sent for sent in fake.connections[-1].sent))
    fake.connections[-1].confirm(f"p:{group}".encode())
    await following


async def test_follow_returns_only_once_redis_confirmed_the_subscription():
    fake = Fake()
    following = asyncio.create_task(fake.fanout.follow("conversation-1", Inbox()))
    await until(lambda: fake.connections and fake.connections[0].sent)
    for _ in range(20):
        await asyncio.sleep(0)
    assert fake.connections[0].sent == [("SUBSCRIBE", b"p:conversation-1")]
    assert not following.done(), "follow() returned before Redis confirmed the subscription"
    fake.connections[0].confirm(b"p:conversation-1")
    await asyncio.wait_for(following, 5)


async def test_a_subscription_redis_never_confirms_is_unavailable_and_forgotten(monkeypatch):
    monkeypatch.setattr(fanout, "CONFIRM_SECONDS", 0.05)
    fake = Fake()
    inbox = Inbox()
    with pytest.raises(ChatError) as raised:
        await fake.fanout.follow("conversation-1", inbox)
    assert raised.value.code == "unavailable"
    fake.connections[0].message(b"p:conversation-1", {"type": "chat.frame"})
    await until(lambda: fake.connections[0].replies.empty())
    assert len(inbox) == 0


async def test_a_frame_is_decoded_once_for_every_follower_of_its_group_in_the_process():
    fake = Fake()
    inboxes = [Inbox() for _ in range(5)]
    await confirmed_follow(fake, "conversation-1", inboxes[0])
    for inbox in inboxes[1:]:
        await fake.fanout.follow("conversation-1", inbox)  # already live: no new SUBSCRIBE, no wait
    fake.connections[0].message(b"p:conversation-1", {"type": "chat.frame", "n": 1})
    received = [await asyncio.wait_for(inbox.get(), 5) for inbox in inboxes]
    assert received == [{"type": "chat.frame", "n": 1}] * 5
    assert fake.decoded == 1
    assert fake.fanout.subscribe_commands == 1


async def test_the_last_follower_leaving_unsubscribes_the_group():
    fake = Fake()
    one, two = Inbox(), Inbox()
    await confirmed_follow(fake, "conversation-1", one)
    await fake.fanout.follow("conversation-1", two)
    await fake.fanout.unfollow("conversation-1", one)
    assert ("UNSUBSCRIBE", b"p:conversation-1") not in fake.connections[0].sent
    await fake.fanout.unfollow("conversation-1", two)
    assert fake.connections[0].sent[-1] == ("UNSUBSCRIBE", b"p:conversation-1")


async def test_after_a_dropped_connection_followers_get_a_resync_once_subscribed_again_then_frames():
    fake = Fake()
    inbox = Inbox()
    await confirmed_follow(fake, "conversation-1", inbox)
    fake.connections[0].replies.put_nowait(ConnectionError("Redis restarted"))
    await until(lambda: len(fake.connections) == 2 and fake.connections[1].sent)
    assert fake.connections[1].sent == [("SUBSCRIBE", b"p:conversation-1")]
    assert len(inbox) == 0, "a resync before the subscription is live could miss frames"
    fake.connections[1].confirm(b"p:conversation-1")
    assert await asyncio.wait_for(inbox.get(), 5) == resync_event("conversation-1")
    fake.connections[1].message(b"p:conversation-1", {"type": "chat.frame", "n": 2})
    assert await asyncio.wait_for(inbox.get(), 5) == {"type": "chat.frame", "n": 2}


async def test_a_reader_that_fails_for_any_reason_is_restarted():
    fake = Fake()
    inbox = Inbox()
    await confirmed_follow(fake, "conversation-1", inbox)
    fake.connections[0].replies.put_nowait([b"nonsense"])  # a reply the reader cannot take apart
    fake.connections[0].replies.put_nowait(RuntimeError("a bug"))
    await until(lambda: len(fake.connections) == 2 and fake.connections[1].sent)
    fake.connections[1].confirm(b"p:conversation-1")
    assert await asyncio.wait_for(inbox.get(), 5) == resync_event("conversation-1")


def test_an_inbox_that_falls_too_far_behind_gets_one_resync_instead():
    inbox = Inbox(capacity=3)
    for n in range(4):
        inbox.put({"type": "chat.frame", "n": n})
    assert len(inbox) == 1
    assert asyncio.run(inbox.get()) == resync_event(None)


async def test_a_followers_own_messages_are_read_before_waiting_events_and_never_dropped():
    inbox = Inbox(capacity=2)
    inbox.put({"type": "chat.frame", "n": 1})
    inbox.put_own({"type": "websocket.receive", "text": "first"})
    for n in range(2, 5):  # past the capacity: the events give way to one resync, the own message stays
        inbox.put({"type": "chat.frame", "n": n})
    inbox.put_own({"type": "websocket.disconnect"})
    taken = [await inbox.get() for _ in range(4)]
    assert taken == [
        {"type": "websocket.receive", "text": "first"},
        {"type": "websocket.disconnect"},
        resync_event(None),
        {"type": "chat.frame", "n": 4},
    ]


async def test_an_own_message_wakes_a_follower_waiting_on_an_empty_inbox():
    inbox = Inbox()
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_own({"type": "websocket.receive", "text": "hello"})
    assert await asyncio.wait_for(waiting, 5) == {"type": "websocket.receive", "text": "hello"}


async def test_over_a_channel_layer_a_group_is_one_layer_channel_for_every_follower_of_the_process():
    layer = InMemoryChannelLayer()
    fan = LayerFanout(layer)
    inboxes = [Inbox() for _ in range(3)]
    for inbox in inboxes:
        await fan.follow("conversation-1", inbox)
    assert len(layer.groups["conversation-1"]) == 1
    await layer.group_send("conversation-1", {"type": "chat.frame", "n": 1})
    assert [await asyncio.wait_for(inbox.get(), 5) for inbox in inboxes] == [{"type": "chat.frame", "n": 1}] * 3
    for inbox in inboxes:
        await fan.unfollow("conversation-1", inbox)
    await until(lambda: not layer.groups.get("conversation-1"))


# --- against Redis, through the real ASGI application ------------------------------------------------


def numsub(channel: str):
    async def count() -> int:
        ((_, subscribers),) = await log_client.get().pubsub_numsub(channel)
        return subscribers

    return count()


def group_channel(group: str) -> str:
    return f"{settings.CHAT_REDIS_PREFIX}__group__{group}"


async def kill_fanout_connections() -> int:
    """Cut this process's fan-out connections, as a Redis restart would (other clients keep theirs)."""
    client = log_client.get()
    name = f"{settings.CHAT_REDIS_PREFIX}:fanout"
    ids = [entry["id"] for entry in await client.client_list(_type="pubsub") if entry.get("name") == name]
    for client_id in ids:
        await client.client_kill_filter(_id=client_id)
    return len(ids)


@pytest.fixture
async def user(make_user):
    return await database_sync_to_async(make_user)()


@pytest.fixture
async def conversation(user):
    return await database_sync_to_async(services.conversation_create)(owner=user, model=TEST_MODEL)


@pytest.mark.cluster_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("engine")
async def test_a_frame_published_once_reaches_every_socket_of_the_process_through_one_subscription(
    connect, user, conversation
):
    async with asyncio.TaskGroup() as group:
        opened = [group.create_task(_subscribed(connect, user, conversation)) for _ in range(5)]
    sockets = [task.result() for task in opened]
    try:
        assert await numsub(group_channel(events.conversation_group(conversation.pk))) == 1
        await events.publish_to_conversation(conversation.pk, events.conversation_deleted_frame(conversation.pk))
        for _, ws in sockets:
            assert (await ws.receive_type("conversation_deleted"))["conversation"] == conversation.pk
        assert fanout.fanout().connections == 1
    finally:
        for context, _ in sockets:
            await context.__aexit__(None, None, None)


async def _subscribed(connect, user, conversation):
    context = connect(user)
    ws = await context.__aenter__()
    await ws.send({"type": "subscribe", "conversation": conversation.pk})
    await ws.receive_type("snapshot")
    return context, ws


@pytest.mark.cluster_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("engine")
async def test_after_the_fanout_connection_drops_a_socket_gets_a_fresh_snapshot_and_loses_no_text(
    connect, user, conversation, upstream
):
    upstream.script(Scenario.slow(200, delay=0.01))
    expected = "".join(Scenario.slow(200).tokens)
    async with connect(user) as ws:
        accepted = await ws.send_message(conversation.pk, "Hi")
        reply_id = accepted["message"]["id"]
        text = ""
        while len(text) < 10:
            text += (await ws.receive_type("delta"))["text"]
        assert await kill_fanout_connections() == 1
        snapshot = await ws.receive_until(lambda f: f["type"] in {"snapshot", "done"})
        assert snapshot["type"] == "snapshot", "the socket was not re-snapshotted after the drop"
        text, done = await ws.reply_text(reply_id, text=snapshot["message"]["content"])
    assert done["message"]["status"] == "complete"
    assert text == expected
