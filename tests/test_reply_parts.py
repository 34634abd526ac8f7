"""Replies made of parts: a thinking model's reasoning streams, is stored and is replayed apart from its
answer, with every guarantee the answer has (offsets, snapshots, resume, stop, checkpoints, old clients)."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from chat import actions, services
from chat.live import LiveFrame, live_log
from chat.models import Message
from tests.engine_fixtures import TEST_MODEL
from tests.fake_upstream import Scenario
from tests.test_sse import EventStream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

REASONING = "The user greets me. A greeting deserves a short, warm answer; no need to ask anything back."
ANSWER = "Hello! Good to see you. What shall we work on today?"
LONG_REASONING = " ".join(f"thought{i}" for i in range(60))
LONG_ANSWER = " ".join(f"word{i}" for i in range(60))


@database_sync_to_async
def new_conversation(make_user):
    return services.conversation_create(owner=make_user(), model=TEST_MODEL)


@database_sync_to_async
def saved(pk):
    return Message.objects.get(pk=pk)


async def sent(ws, conversation, content="Hi"):
    accepted = await ws.send_message(conversation.pk, content)
    assert accepted["type"] == "accepted", accepted
    return accepted["message"]["id"]


async def first_delta_of(ws, kind):
    return await ws.receive_until(lambda frame: frame["type"] == "delta" and frame["kind"] == kind)


@pytest.fixture
async def conversation(make_user):
    return await new_conversation(make_user)


@pytest.mark.cluster
async def test_reasoning_streams_as_its_own_part_before_the_answer_and_is_stored_apart(connect, conversation, upstream):
    upstream.script(Scenario.with_reasoning(REASONING, ANSWER))
    async with connect(conversation.owner, protocol=2) as ws:
        reply_id = await sent(ws, conversation)
        parts, done = await ws.reply_parts(reply_id)

    assert parts == [("reasoning", REASONING), ("text", ANSWER)]
    message = done["message"]
    assert message["status"] == "complete" and message["length"] == len(ANSWER)
    shape = [{key: part[key] for key in ("kind", "length")} for part in message["parts"]]
    assert shape == [{"kind": "reasoning", "length": len(REASONING)}, {"kind": "text", "length": len(ANSWER)}]
    assert all(type(part["duration_ms"]) is int and part["duration_ms"] >= 0 for part in message["parts"])
    reply = await saved(reply_id)
    assert reply.content == ANSWER, "the answer text stays what prompts, search and old clients read"
    assert [(part["kind"], part["text"]) for part in reply.part_list()] == [("reasoning", REASONING), ("text", ANSWER)]
    assert [part["duration_ms"] for part in reply.part_list()] == [part["duration_ms"] for part in message["parts"]]


@pytest.mark.cluster
async def test_a_protocol_1_client_gets_the_answer_alone_with_offsets_in_it(connect, conversation, upstream):
    upstream.script(Scenario.with_reasoning(REASONING, ANSWER))
    async with connect(conversation.owner) as old, connect(conversation.owner, protocol=2) as new:
        await old.send({"type": "subscribe", "conversation": conversation.pk})
        await old.receive_type("snapshot")
        reply_id = await sent(new, conversation)
        text, done = await old.reply_text(reply_id)
        parts, _ = await new.reply_parts(reply_id)

    assert text == ANSWER
    assert not [frame for frame in old.received if frame["type"] == "delta" and frame["kind"] != "text"]
    assert done["message"]["length"] == len(ANSWER)
    assert parts == [("reasoning", REASONING), ("text", ANSWER)]


async def test_the_hello_names_the_protocol_spoken_and_a_bad_version_is_refused(connect, conversation):
    from channels.testing import WebsocketCommunicator

    from config.asgi import application
    from tests.engine_fixtures import session_cookie_for

    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    headers.append((b"cookie", await session_cookie_for(conversation.owner)))
    for query, spoken in (("", 1), ("?protocol=1", 1), ("?protocol=2", 2)):
        communicator = WebsocketCommunicator(application, f"/ws/chat/{query}", headers=headers)
        assert (await communicator.connect())[0]
        hello = await communicator.receive_json_from()
        assert (hello["type"], hello["protocol"], hello["protocols"]) == ("hello", spoken, [1, 2])
        await communicator.disconnect()
    communicator = WebsocketCommunicator(application, "/ws/chat/?protocol=7", headers=headers)
    assert (await communicator.connect())[0]
    refused = await communicator.receive_json_from()
    assert (refused["type"], refused["code"]) == ("error", "invalid")
    assert (await communicator.receive_output())["code"] == 4400
    await communicator.disconnect()


@pytest.mark.cluster
async def test_tabs_that_join_mid_reasoning_and_mid_answer_see_every_character_once(connect, conversation, upstream):
    upstream.script(Scenario.with_reasoning(LONG_REASONING, LONG_ANSWER, delay=0.02))
    expected = [("reasoning", LONG_REASONING), ("text", LONG_ANSWER)]
    async with connect(conversation.owner, protocol=2) as first:
        reply_id = await sent(first, conversation)
        await first_delta_of(first, "reasoning")
        async with connect(conversation.owner, protocol=2) as mid_reasoning:
            await mid_reasoning.send({"type": "subscribe", "conversation": conversation.pk})
            await first_delta_of(first, "text")
            async with connect(conversation.owner, protocol=2) as mid_answer:
                await mid_answer.send({"type": "subscribe", "conversation": conversation.pk})
                results = await asyncio.gather(
                    first.reply_parts(reply_id, timeout=60, parts=parts_so_far(first.received)),
                    mid_reasoning.reply_parts(reply_id, timeout=60),
                    mid_answer.reply_parts(reply_id, timeout=60),
                )

    assert [parts for parts, _ in results] == [expected] * 3
    assert [(part["kind"], part["text"]) for part in (await saved(reply_id)).part_list()] == expected


def parts_so_far(frames):
    """The parts a socket's deltas built before it started collecting with reply_parts."""
    parts: list[tuple[str, str]] = []
    for frame in (frame for frame in frames if frame["type"] == "delta"):
        if frame["part"] == len(parts):
            parts.append((frame["kind"], ""))
        kind, text = parts[frame["part"]]
        assert frame["offset"] == len(text)
        parts[frame["part"]] = (kind, text + frame["text"])
    return parts


@pytest.mark.cluster
async def test_stop_mid_reasoning_keeps_the_reasoning_streamed_so_far(connect, conversation, upstream):
    upstream.script(Scenario.with_reasoning(LONG_REASONING, LONG_ANSWER, delay=0.05))
    async with connect(conversation.owner, protocol=2) as ws:
        reply_id = await sent(ws, conversation)
        await first_delta_of(ws, "reasoning")
        await ws.send({"type": "cancel", "conversation": conversation.pk})
        parts, done = await ws.reply_parts(reply_id, parts=parts_so_far(ws.received))

    reply = await saved(reply_id)
    assert done["message"]["status"] == reply.status == "cancelled"
    assert reply.content == "" and reply.reasoning and LONG_REASONING.startswith(reply.reasoning)
    assert parts == [("reasoning", reply.reasoning)], "the clients saw what was saved, no more, no less"


async def test_the_conversation_api_lists_every_part_of_a_reply(connect, conversation, upstream):
    upstream.script(Scenario.with_reasoning(REASONING, ANSWER))
    async with connect(conversation.owner, protocol=2) as ws:
        reply_id = await sent(ws, conversation)
        await ws.reply_parts(reply_id)
    client = AsyncClient()
    await client.aforce_login(conversation.owner)

    body = (await client.get(f"/api/conversations/{conversation.pk}")).json()

    reply = next(message for message in body["messages"] if message["id"] == reply_id)
    assert reply["content"] == ANSWER
    assert [{key: part[key] for key in ("kind", "length", "text")} for part in reply["parts"]] == [
        {"kind": "reasoning", "length": len(REASONING), "text": REASONING},
        {"kind": "text", "length": len(ANSWER), "text": ANSWER},
    ]
    assert all(part["duration_ms"] >= 0 for part in reply["parts"]), "the Thinking block's time, after a reload too"


@pytest.mark.cluster
async def test_the_event_stream_carries_reasoning_to_protocol_2_clients_only(conversation, upstream):
    client = AsyncClient()
    await client.aforce_login(conversation.owner)
    url = f"/api/conversations/{conversation.pk}/events"
    new = EventStream(await client.get(url + "?protocol=2"))
    old = EventStream(await client.get(url))
    for stream in (new, old):
        assert (await stream.next_event("snapshot"))["data"]["message"] is None
    upstream.script(Scenario.with_reasoning(REASONING, ANSWER))
    body = {"content": "Hi", "client_id": "c1"}
    answer = await client.post(f"/api/conversations/{conversation.pk}/messages", body, content_type="application/json")
    reply_id = answer.json()["message"]["id"]

    new_kinds, old_kinds = [], []
    for stream, kinds in ((new, new_kinds), (old, old_kinds)):
        while (event := await stream.next_event(timeout=30))["event"] != "done":
            if event["event"] == "delta":
                kinds.append(event["data"]["kind"])
        assert event["data"]["message"]["id"] == reply_id
        await stream.close()
    assert "reasoning" in new_kinds and "text" in new_kinds
    assert set(old_kinds) == {"text"}
    refused = await client.get(url + "?protocol=0")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid"


# --- Resume: chat.actions.catch_up on a live log of two parts -------------------------------------


@database_sync_to_async
def streaming_reply(conversation):
    reply = services.message_send(conversation=conversation, client_id="c1", content="Hi").reply
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.STREAMING)
    return reply


async def live_reply(conversation):
    """A running reply whose log holds two reasoning frames (seq 1-2), then two text frames (seq 3-4)."""
    reply = await streaming_reply(conversation)
    await live_log().begin(reply.pk)
    for frame in (
        LiveFrame(part=0, kind="reasoning", text="Think ", end=6),
        LiveFrame(part=0, kind="reasoning", text="hard.", end=11),
        LiveFrame(part=1, kind="text", text="Four", end=4),
        LiveFrame(part=1, kind="text", text=" it is.", end=11),
    ):
        await live_log().append(reply.pk, frame)
    return reply


@pytest.mark.cluster
async def test_resuming_inside_the_last_part_answers_with_its_missing_text_only(conversation):
    reply = await live_reply(conversation)

    frame, message_id, covered = await actions.catch_up(conversation.pk, actions.Position(reply.pk, 3))

    assert (frame["type"], frame["part"], frame["kind"], frame["offset"], frame["text"]) == (
        "delta",
        1,
        "text",
        4,
        " it is.",
    )
    assert (frame["seq"], message_id, covered) == (4, reply.pk, 4)


@pytest.mark.cluster
async def test_resuming_from_an_earlier_part_answers_with_a_snapshot_of_every_part(conversation):
    """Never a delta that could repeat a part the client has (the trap of vercel/ai #14688)."""
    reply = await live_reply(conversation)

    frame, _, covered = await actions.catch_up(conversation.pk, actions.Position(reply.pk, 1))

    assert frame["type"] == "snapshot" and covered == 4
    assert frame["message"]["content"] == "Four it is."
    assert [(part["kind"], part["text"]) for part in frame["message"]["parts"]] == [
        ("reasoning", "Think hard."),
        ("text", "Four it is."),
    ]


@pytest.mark.cluster
async def test_a_protocol_1_client_resuming_in_a_reasoning_part_gets_a_snapshot_of_the_answer(conversation):
    reply = await streaming_reply(conversation)
    await live_log().begin(reply.pk)
    await live_log().append(reply.pk, LiveFrame(part=0, kind="reasoning", text="Hmm", end=3))
    await live_log().append(reply.pk, LiveFrame(part=0, kind="reasoning", text=" well", end=8))

    frame, _, covered = await actions.catch_up(conversation.pk, actions.Position(reply.pk, 1), protocol=1)

    assert frame["type"] == "snapshot" and covered == 2 and frame["message"]["content"] == ""


# --- Checkpoints and the reaper keep every part ----------------------------------------------------


@database_sync_to_async
def checkpointed_then_reaped(conversation):
    reply = services.message_send(conversation=conversation, client_id="c1", content="Hi").reply
    context = services.generation_begin(message_id=reply.pk, worker_id="w")
    parts = [("reasoning", "Let me think."), ("text", "The answer")]
    assert (
        services.generation_checkpoint(
            message_id=reply.pk, parts=parts, part_ms=[1500, 200], seq=5, lease_holder=context.lease_holder
        )
        == services.Checkpoint.SAVED
    )
    Message.objects.filter(pk=reply.pk).update(lease_expires_at="2000-01-01T00:00:00Z")
    services.replies_interrupt_stale()
    return Message.objects.get(pk=reply.pk)


async def test_a_reply_whose_worker_died_keeps_the_parts_of_its_last_checkpoint(conversation):
    reply = await checkpointed_then_reaped(conversation)

    assert reply.status == Message.Status.INTERRUPTED and reply.seq == 5
    assert reply.part_list() == [
        {"kind": "reasoning", "text": "Let me think.", "duration_ms": 1500},
        {"kind": "text", "text": "The answer", "duration_ms": 200},
    ]
    assert reply.content == "The answer"


@pytest.mark.cluster
async def test_a_live_log_rewritten_after_a_redis_restart_holds_every_part_and_frame_end(conversation):
    reply = await live_reply(conversation)
    parts = [("reasoning", "Think hard."), ("text", "Four it is. Yes.")]

    await live_log().restore(reply.pk, parts, [(0, 6), (0, 11), (1, 4), (1, 11), (1, 16)])
    # The next frame lands on the rewritten log as on the old one.
    assert await live_log().append(reply.pk, LiveFrame(part=1, kind="text", text="!", end=17)) == 6

    state = await live_log().state(reply.pk)
    assert (state.parts, state.seq) == ([("reasoning", "Think hard."), ("text", "Four it is. Yes.!")], 6)
    assert [await live_log().position_after(reply.pk, seq) for seq in (0, 2, 3, 6)] == [
        (0, 0),
        (0, 11),
        (1, 4),
        (1, 17),
    ]
    assert await live_log().append(reply.pk, LiveFrame(part=0, kind="reasoning", text="late", end=15)) == -1
    await live_log().end(reply.pk)
    assert await live_log().state(reply.pk) is None
