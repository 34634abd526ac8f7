"""The WebSocket consumer against the real ASGI application, the in-process worker and the fake upstream."""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from chat import events, services
from chat.fanout import resync_event
from chat.models import Message
from tests.engine_fixtures import TEST_MODEL
from tests.engine_helpers import record_worker_writes
from tests.fake_upstream import Scenario

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

REPLY = "Hello there, how can I help you today? Ask me anything at all."


@database_sync_to_async
def new_user(make_user):
    return make_user()


@database_sync_to_async
def new_conversation(user, **fields):
    return services.conversation_create(owner=user, model=fields.pop("model", TEST_MODEL), **fields)


@database_sync_to_async
def messages_of(conversation):
    return list(Message.objects.filter(conversation=conversation).order_by("id"))


@database_sync_to_async
def message(pk):
    return Message.objects.get(pk=pk)


async def wait_for_status(pk, *statuses, timeout=20):
    async with asyncio.timeout(timeout):
        while True:
            reply = await message(pk)
            if reply.status in statuses:
                return reply
            await asyncio.sleep(0.05)


async def started_reply(ws, conversation, content="Hi"):
    accepted = await ws.send_message(conversation.pk, content)
    assert accepted["type"] == "accepted", accepted
    return accepted["message"]["id"]


async def deltas(ws, count):
    text = ""
    for _ in range(count):
        frame = await ws.receive_type("delta")
        text += frame["text"]
    return text


@pytest.fixture
async def user(make_user):
    return await new_user(make_user)


@pytest.fixture
async def conversation(user):
    return await new_conversation(user)


@pytest.mark.cluster
async def test_a_full_reply_streams_and_is_saved_complete(connect, user, conversation, upstream):
    upstream.script(Scenario.text(REPLY, delay=0.01))
    async with connect(user) as ws:
        await ws.send({"type": "subscribe", "conversation": conversation.pk})
        assert (await ws.receive_type("snapshot"))["message"] is None
        reply_id = await started_reply(ws, conversation)
        text, done = await ws.reply_text(reply_id)
    assert text == REPLY
    assert done["message"]["status"] == "complete"
    assert done["message"]["length"] == len(REPLY)
    user_message, reply = await messages_of(conversation)
    assert (user_message.role, user_message.content) == ("user", "Hi")
    assert (reply.status, reply.content, reply.finish_reason) == ("complete", REPLY, "stop")
    assert reply.output_tokens == len(upstream.requests[0].scenario.sent_tokens)
    assert reply.input_tokens == 12 and not reply.tokens_estimated
    assert reply.time_to_first_token_ms is not None and reply.duration_ms >= reply.time_to_first_token_ms
    body = upstream.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"][-1] == {"role": "user", "content": "Hi"}


async def test_done_carries_the_usage_details_the_provider_reported(connect, user, conversation, upstream):
    upstream.script(Scenario.with_reasoning("Two and two.", "Four.", input_tokens=321, cached_tokens=200))
    async with connect(user) as ws:
        reply_id = await started_reply(ws, conversation)
        _, done = await ws.reply_text(reply_id)
    assert done["message"]["usage"] == {
        "input_tokens": 321,
        "output_tokens": 6,
        "cached_input_tokens": 200,
        "cache_write_tokens": None,
        "reasoning_tokens": 4,
        "estimated": False,
    }


async def test_a_reply_cut_short_estimates_its_reasoning_tokens_within_its_output(
    connect, user, conversation, upstream
):
    reasoning = "Two and two make four."  # 22 characters: 6 tokens at four a token
    upstream.script(Scenario.with_reasoning(reasoning, "Four, surely.", end="error", after=1))
    async with connect(user) as ws:
        reply_id = await started_reply(ws, conversation)
        _, done = await ws.reply_text(reply_id)
    usage = done["message"]["usage"]
    assert (usage["reasoning_tokens"], usage["output_tokens"]) == (6, 7)  # "Four" follows: 26 characters out
    assert (usage["cached_input_tokens"], usage["cache_write_tokens"], usage["estimated"]) == (None, None, True)


@pytest.mark.cluster
async def test_the_first_message_titles_the_conversation(connect, user, conversation, upstream):
    async with connect(user) as ws:
        await started_reply(ws, conversation, "What is the capital of France?\nAnd why?")
        frame = await ws.receive_until(lambda f: f["type"] == "conversation" and f["conversation"]["running"])
        await ws.reply_text()
    assert frame["conversation"]["title"] == "What is the capital of France?"


@pytest.mark.cluster
async def test_cancel_stops_within_200_ms_and_keeps_the_partial_reply_as_cancelled(
    connect, user, conversation, upstream
):
    upstream.script(Scenario.slow(400, delay=0.02))
    async with connect(user) as ws:
        reply_id = await started_reply(ws, conversation)
        seen = await deltas(ws, 3)
        asked = time.monotonic()
        await ws.send({"type": "cancel", "conversation": conversation.pk})
        text, done = await ws.reply_text(reply_id, text=seen)
        stopped_after = time.monotonic() - asked
    assert done["message"]["status"] == "cancelled"
    assert stopped_after < 0.2 + 0.3  # 200 ms target; the margin absorbs a loaded CI machine
    reply = await message(reply_id)
    assert reply.status == Message.Status.CANCELLED
    assert reply.content == text and len(reply.content) == done["message"]["length"]
    assert 0 < len(reply.content) < len("".join(Scenario.slow(400).tokens))
    assert await upstream.wait_closed_async(1), "the upstream response was not closed"


@pytest.mark.cluster
async def test_every_connected_client_is_told_of_a_stop(connect, user, conversation, upstream):
    upstream.script(Scenario.slow(400, delay=0.02))
    async with connect(user) as first, connect(user) as second:
        await second.send({"type": "subscribe", "conversation": conversation.pk})
        await second.receive_type("snapshot")
        await started_reply(first, conversation)
        await second.receive_type("delta")
        await first.send({"type": "cancel", "conversation": conversation.pk})
        done = await second.receive_type("done")
    assert done["message"]["status"] == "cancelled"


@pytest.mark.cluster
async def test_closing_the_tab_does_not_stop_the_reply(connect, user, conversation, upstream):
    upstream.script(Scenario.text(REPLY * 3, delay=0.01))
    async with connect(user) as ws:
        reply_id = await started_reply(ws, conversation)
        await ws.receive_type("delta")
    reply = await wait_for_status(reply_id, "complete", "failed", "cancelled")
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == REPLY * 3


@pytest.mark.cluster
async def test_reconnecting_mid_reply_gets_the_rest_with_no_gap_or_duplicate(connect, user, conversation, upstream):
    upstream.script(Scenario.slow(120, delay=0.01))
    expected = "".join(Scenario.slow(120).tokens)
    async with connect(user) as ws:
        reply_id = await started_reply(ws, conversation)
        await deltas(ws, 3)
    async with connect(user) as ws:
        await ws.send({"type": "subscribe", "conversation": conversation.pk})
        text, done = await ws.reply_text(reply_id)
        snapshot = ws.received[0]
    assert snapshot["type"] == "snapshot" and snapshot["message"]["status"] in {"streaming", "complete"}
    assert text == expected
    assert done["message"]["status"] == "complete"


@pytest.mark.cluster
async def test_resuming_after_a_position_sends_only_the_missing_text(connect, user, conversation, upstream):
    upstream.script(Scenario.slow(150, delay=0.01))
    expected = "".join(Scenario.slow(150).tokens)
    async with connect(user) as ws:
        reply_id = await started_reply(ws, conversation)
        frames = [await ws.receive_type("delta") for _ in range(3)]
    have = "".join(f["text"] for f in frames)
    async with connect(user) as ws:
        after = {"message": reply_id, "seq": frames[-1]["seq"]}
        await ws.send({"type": "subscribe", "conversation": conversation.pk, "after": after})
        first = await ws.receive()
        assert first["type"] in {"delta", "snapshot"}
        if first["type"] == "delta":
            assert first["offset"] == len(have)
            have += first["text"]
        else:  # the reply ended meanwhile: the snapshot is the whole of it
            have = first["message"]["content"]
        if not (first["type"] == "snapshot" and first["message"]["status"] == "complete"):
            have, _ = await ws.reply_text(reply_id, text=have)
    assert have == expected


@pytest.mark.cluster
async def test_two_clients_receive_identical_content(connect, user, conversation, upstream):
    upstream.script(Scenario.slow(60, delay=0.01))
    async with connect(user) as first, connect(user) as second:
        await second.send({"type": "subscribe", "conversation": conversation.pk})
        await second.receive_type("snapshot")
        reply_id = await started_reply(first, conversation)
        (text_one, _), (text_two, _) = await asyncio.gather(first.reply_text(reply_id), second.reply_text(reply_id))
    assert text_one == text_two == "".join(Scenario.slow(60).tokens)


@pytest.mark.cluster
async def test_a_socket_told_to_resync_mid_reply_sends_a_fresh_snapshot_and_the_rest_with_no_gap(
    connect, user, conversation, upstream
):
    upstream.script(Scenario.slow(100, delay=0.01))
    group = events.conversation_group(conversation.pk)
    async with connect(user) as ws:
        reply_id = await started_reply(ws, conversation)
        await deltas(ws, 3)
        await get_channel_layer().group_send(group, resync_event(group))  # as after a Redis reconnect
        snapshot = await ws.receive_until(lambda f: f["type"] in {"snapshot", "done"})
        assert snapshot["type"] == "snapshot" and snapshot["message"]["id"] == reply_id
        text, _ = await ws.reply_text(reply_id, text=snapshot["message"]["content"])
    assert text == "".join(Scenario.slow(100).tokens)


@pytest.mark.cluster
async def test_a_send_while_a_reply_runs_is_refused_as_busy(connect, user, conversation, upstream):
    upstream.script(Scenario.slow(200, delay=0.02))
    async with connect(user) as ws:
        reply_id = await started_reply(ws, conversation)
        refused = await ws.send_message(conversation.pk, "And another thing")
        assert refused["type"] == "error" and refused["code"] == "busy"
        await ws.send({"type": "cancel", "conversation": conversation.pk})
        await ws.reply_text(reply_id)
    assert [m.role for m in await messages_of(conversation)] == ["user", "assistant"]


@pytest.mark.cluster
async def test_the_same_client_id_twice_creates_one_message(connect, user, conversation, upstream):
    async with connect(user) as ws:
        first = await ws.send_message(conversation.pk, "Hi", client_id="c-1")
        await ws.reply_text(first["message"]["id"])
        again = await ws.send_message(conversation.pk, "Hi", client_id="c-1")
    assert again["duplicate"] is True and first["duplicate"] is False
    assert again["message"]["id"] == first["message"]["id"]
    assert [m.role for m in await messages_of(conversation)] == ["user", "assistant"]
    assert len(upstream.requests) == 1


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "invalid"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "send", "conversation": CONV, "client_id": "x", "content": "   "}', "empty_message"),
        ('{"type": "send", "conversation": CONV, "client_id": "x", "content": "LONG"}', "message_too_long"),
        ('{"type": "send", "conversation": CONV, "content": "hi"}', "invalid"),
        ('{"type": "send", "conversation": 999999, "client_id": "x", "content": "hi"}', "not_found"),
        ('{"type": "subscribe", "conversation": "abc"}', "invalid"),
        ('{"type": "cancel", "conversation": CONV}', "not_running"),
    ],
)
async def test_bad_input_gets_an_error_frame_writes_nothing_and_keeps_the_socket(
    connect, user, conversation, upstream, settings, raw, code
):
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    raw = raw.replace("CONV", str(conversation.pk)).replace("LONG", "x" * 101)
    async with connect(user) as ws:
        await ws.send_raw(raw)
        error = await ws.receive_type("error")
        await ws.send({"type": "ping"})
        assert (await ws.receive())["type"] == "pong"
    assert error["code"] == code and error["message"]
    assert await messages_of(conversation) == []
    assert upstream.requests == []


async def test_a_client_frame_and_a_close_make_no_connection_cleanup_trip_to_the_database_thread(
    connect, user, conversation, upstream, monkeypatch
):
    # Channels' cleanup before each message (and after a close) would queue every send twice on the one
    # database thread; the consumer's database calls clean up around themselves. The worker that takes
    # the job (in this process, embedded) makes none either.
    import channels.consumer
    import channels.generic.websocket

    trips = []

    async def cleanup() -> None:
        trips.append(1)

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", cleanup)
    monkeypatch.setattr(channels.generic.websocket, "aclose_old_connections", cleanup)
    async with connect(user) as ws:
        await ws.send({"type": "ping"})
        assert (await ws.receive())["type"] == "pong"
        await ws.send({"type": "send", "conversation": conversation.pk, "client_id": "c-1", "content": "Hi"})
        await ws.receive_type("done")
    assert trips == []


async def test_an_oversized_frame_is_refused(connect, user, settings):
    settings.CHAT_WS_MAX_FRAME_BYTES = 1000
    async with connect(user) as ws:
        await ws.send_raw('{"type": "ping", "pad": "' + "x" * 2000 + '"}')
        assert (await ws.receive_type("error"))["code"] == "frame_too_large"


@pytest.mark.cluster
async def test_another_users_conversation_answers_like_a_missing_one(connect, user, make_user, upstream):
    stranger = await new_user(make_user)
    theirs = await new_conversation(stranger)
    async with connect(user) as ws:
        for frame in (
            {"type": "subscribe", "conversation": theirs.pk},
            {"type": "send", "conversation": theirs.pk, "client_id": "x", "content": "hi"},
            {"type": "cancel", "conversation": theirs.pk},
            {"type": "regenerate", "conversation": theirs.pk, "client_id": "y"},
        ):
            await ws.send(frame)
            error = await ws.receive_type("error")
            assert (error["code"], error["message"]) == ("not_found", "No such conversation.")
    assert await messages_of(theirs) == []


async def test_an_unknown_model_is_refused_before_anything_is_written(connect, user, conversation, settings):
    settings.OPENAI_MODELS = ["gpt-other"]
    from chat.providers import registry

    registry.reset()
    async with connect(user) as ws:
        refused = await ws.send_message(conversation.pk, "Hi")
    assert refused["code"] == "unknown_model"
    assert await messages_of(conversation) == []


@pytest.mark.cluster
async def test_an_anonymous_connection_is_accepted_then_closed_with_4401():
    from config.asgi import application

    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected, "refused at the handshake (HTTP 403), like a foreign Origin"
    assert await communicator.receive_output(timeout=10) == {"type": "websocket.close", "code": 4401}


async def test_a_connection_from_a_foreign_origin_is_refused(user):
    from config.asgi import application
    from tests.engine_fixtures import session_cookie_for

    headers = [
        (b"origin", b"http://evil.example"),
        (b"host", b"localhost"),
        (b"cookie", await session_cookie_for(user)),
    ]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert not connected


@pytest.mark.parametrize(
    ("scenario", "limits", "expected_text"),
    [
        (Scenario.stall(after=0), {"CHAT_TIMEOUT_FIRST_TOKEN": 0.6}, "did not start answering within 0.6 s"),
        (Scenario.stall(after=3), {"CHAT_TIMEOUT_IDLE": 0.6}, "stopped sending text for more than 0.6 s"),
        (Scenario.slow(400, delay=0.02), {"CHAT_TIMEOUT_TOTAL": 0.8}, "longer than the 0.8 s limit"),
    ],
    ids=["first-token", "idle", "total"],
)
async def test_each_timeout_fails_the_reply_and_keeps_its_text(
    connect, user, conversation, upstream, settings, scenario, limits, expected_text
):
    for name, value in limits.items():
        setattr(settings, name, value)
    upstream.script(scenario)
    async with connect(user) as ws:
        reply_id = await started_reply(ws, conversation)
        text, done = await ws.reply_text(reply_id)
    reply = await message(reply_id)
    assert (reply.status, reply.error_code) == ("failed", "timeout")
    assert expected_text in reply.error_message
    assert done["message"]["error"] == {"code": "timeout", "message": reply.error_message}
    assert reply.content == text


@pytest.mark.cluster
async def test_a_provider_error_before_the_first_token_is_retried(connect, user, conversation, upstream):
    upstream.script(Scenario.http_error(503), Scenario.rate_limited(retry_after=0.3), Scenario.text(REPLY))
    async with connect(user) as ws:
        reply_id = await started_reply(ws, conversation)
        text, done = await ws.reply_text(reply_id)
    assert (text, done["message"]["status"]) == (REPLY, "complete")
    assert len(upstream.requests) == 3
    assert upstream.requests[2].at - upstream.requests[1].at >= 0.3, "retry-after was not respected"


async def test_retries_are_bounded(connect, user, conversation, upstream, settings):
    settings.CHAT_RETRY_ATTEMPTS = 2
    upstream.default = Scenario.http_error(503)
    async with connect(user) as ws:
        reply_id = await started_reply(ws, conversation)
        _, done = await ws.reply_text(reply_id)
    assert done["message"]["error"]["code"] == "overloaded"
    assert len(upstream.requests) == 3


@pytest.mark.cluster
async def test_an_error_after_the_first_token_is_not_retried(connect, user, conversation, upstream):
    upstream.script(Scenario.error_mid_stream(after=3))
    async with connect(user) as ws:
        reply_id = await started_reply(ws, conversation)
        text, done = await ws.reply_text(reply_id)
    reply = await message(reply_id)
    assert len(upstream.requests) == 1
    assert reply.status == Message.Status.FAILED and reply.error_code
    assert reply.content == text and text == "".join(Scenario.error_mid_stream(after=3).tokens[:3])
    assert reply.tokens_estimated


@pytest.mark.cluster
async def test_a_planted_api_key_never_reaches_a_frame(connect, user, conversation, upstream):
    from tests.engine_fixtures import PLANTED_KEY

    upstream.script(Scenario.http_error(401))
    async with connect(user) as ws:
        reply_id = await started_reply(ws, conversation)
        await ws.reply_text(reply_id)
        received = repr(ws.received)
    reply = await message(reply_id)
    assert reply.error_code == "auth"
    assert PLANTED_KEY not in received and PLANTED_KEY not in reply.error_message


async def test_a_5000_token_reply_makes_far_fewer_frames_and_a_bounded_number_of_writes(
    connect, user, conversation, upstream, monkeypatch, settings
):
    """Bound: one write to claim the reply, one a second while it streams, one at the end."""
    writes = record_worker_writes(monkeypatch)
    upstream.script(Scenario.slow(5000, delay=0.0002))
    async with connect(user) as ws:
        started = time.monotonic()  # before the send: the reply may stream before `accepted` is read
        reply_id = await started_reply(ws, conversation)
        text, done = await ws.reply_text(reply_id, timeout=60)
        seconds = time.monotonic() - started
    frames = [f for f in ws.received if f["type"] == "delta"]
    assert text == "".join(Scenario.slow(5000).tokens)
    # The coalescer's rules: at most one frame per minimum window of streaming, one more each time the
    # buffered text reaches the size limit, and the last one. The same bound on a controlled clock, where
    # it cannot depend on the machine's speed at all: tests/test_frames.py.
    min_window = settings.CHAT_FRAME_MIN_WINDOW_MS / 1000
    bound = seconds / min_window + len(text) / settings.CHAT_FRAME_MAX_CHARS + 2
    assert len(frames) <= bound, f"{len(frames)} frames for 5000 tokens in {seconds:.1f} s (bound {bound:.0f})"
    assert len(frames) < 5000, "every token made its own frame"
    assert len(writes) <= 2 + int(seconds / 1.0) + 1, writes
    assert writes[0] == "generation_begin" and writes[-1] == "generation_finish"


# --- branches: edit, regenerate, continue and switch over the socket -------------------------------


async def finished(ws, accepted):
    """Wait for the reply an `accepted` frame names to end; returns its `done` frame."""
    assert accepted["type"] == "accepted", accepted
    reply_id = accepted["message"]["id"]
    return await ws.receive_until(lambda f: f["type"] == "done" and f["message"]["id"] == reply_id)


async def ask(ws, conversation, kind, **fields):
    await ws.send({"type": kind, "conversation": conversation.pk, **fields})
    return await ws.receive_until(lambda f: f["type"] in {"accepted", "error", "path"})


async def two_turns(ws, conversation):
    """Question 1 / answer, Question 2 / answer, over the socket; returns the four payloads' ids."""
    ids = []
    for question in ("Question 1", "Question 2"):
        accepted = await ws.send_message(conversation.pk, question)
        await finished(ws, accepted)
        ids += [accepted["user_message"]["id"], accepted["message"]["id"]]
    return ids


@pytest.mark.cluster
async def test_editing_the_first_message_answers_it_as_a_new_branch_with_its_sibling_position(
    connect, user, conversation, upstream
):
    async with connect(user) as ws:
        q1, _, _, _ = await two_turns(ws, conversation)
        accepted = await ask(ws, conversation, "edit", client_id="e-1", content="Question 1, again", message=q1)
        message = await ws.receive_until(lambda f: f["type"] == "message" and f["message"]["role"] == "user")
        await finished(ws, accepted)
    edited = accepted["user_message"]
    assert (edited["parent"], edited["siblings"], edited["index"], edited["count"]) == (None, [q1, edited["id"]], 1, 2)
    assert accepted["message"]["parent"] == edited["id"]
    assert message["message"]["siblings"] == [q1, edited["id"]]
    assert len(await messages_of(conversation)) == 6


@pytest.mark.cluster
async def test_regenerating_a_middle_reply_with_another_model_keeps_the_old_one_as_its_sibling(
    connect, user, conversation, upstream
):
    async with connect(user) as ws:
        q1, a1, _, _ = await two_turns(ws, conversation)
        accepted = await ask(ws, conversation, "regenerate", client_id="r-1", message=a1, model="openai:gpt-other")
        await finished(ws, accepted)
    reply = accepted["message"]
    assert (reply["parent"], reply["siblings"], reply["model"]) == (q1, [a1, reply["id"]], "openai:gpt-other")
    assert [turn["content"] for turn in upstream.requests[-1].body["messages"]] == ["Question 1"]


@pytest.mark.cluster
async def test_regenerating_a_continued_reply_replaces_the_whole_answer(connect, user, conversation, upstream):
    upstream.script(Scenario.stall(after=3), Scenario.text("the rest."), Scenario.text("A whole new answer."))
    async with connect(user) as ws:
        accepted = await ws.send_message(conversation.pk, "Question")
        await ws.receive_type("delta")
        await ws.send({"type": "cancel", "conversation": conversation.pk})
        await finished(ws, accepted)
        continued = await ask(ws, conversation, "continue", client_id="k-1")
        await finished(ws, continued)
        again = await ask(ws, conversation, "regenerate", client_id="r-1", message=continued["message"]["id"])
        await finished(ws, again)
    assert continued["message"]["parent"] == accepted["message"]["id"]
    assert again["message"]["siblings"] == [accepted["message"]["id"], again["message"]["id"]]
    assert [m["role"] for m in upstream.requests[-1].body["messages"]] == ["user"]


@pytest.mark.cluster
async def test_a_repeated_edit_answers_the_first_one_and_creates_nothing(connect, user, conversation, upstream):
    async with connect(user) as ws:
        q1, _, _, _ = await two_turns(ws, conversation)
        first = await ask(ws, conversation, "edit", client_id="e-1", content="Again", message=q1)
        await finished(ws, first)
        again = await ask(ws, conversation, "edit", client_id="e-1", content="Again", message=q1)
    assert (again["duplicate"], again["user_message"]["id"]) == (True, first["user_message"]["id"])
    assert again["user_message"]["siblings"] == [q1, first["user_message"]["id"]]
    assert len(await messages_of(conversation)) == 6


@pytest.mark.cluster
async def test_a_switch_is_seen_live_by_another_tab_and_the_stream_goes_on_on_its_branch(
    connect, user, conversation, upstream
):
    async with connect(user) as first, connect(user) as second:
        path = await two_turns(first, conversation)
        q1, a1, _, a2 = path
        upstream.script(Scenario.slow(40, delay=0.01))
        await second.send({"type": "subscribe", "conversation": conversation.pk, "path": True})
        assert [m["id"] for m in (await second.receive_type("path"))["messages"]] == path
        running = await ask(first, conversation, "regenerate", client_id="r-1", message=a1)
        reply_id = running["message"]["id"]
        await first.receive_type("delta")

        switched = await ask(first, conversation, "switch", message=a1)
        seen = await second.receive_type("path")
        done = await second.receive_until(lambda f: f["type"] == "done" and f["message"]["id"] == reply_id)
    assert switched == seen
    assert (seen["leaf"], [m["id"] for m in seen["messages"]]) == (a2, path)
    assert seen["messages"][1]["siblings"] == [a1, reply_id]
    text = "".join(f["text"] for f in second.received if f["type"] == "delta" and f["message"] == reply_id)
    assert (text, done["message"]["status"]) == ("".join(Scenario.slow(40).tokens), "complete")


@pytest.mark.cluster
async def test_the_switching_socket_gets_its_path_once_and_another_socket_gets_it_too(
    connect, user, conversation, upstream
):
    async with connect(user) as first, connect(user) as second:
        q1, a1, _, _ = await two_turns(first, conversation)
        await second.send({"type": "subscribe", "conversation": conversation.pk})
        await second.receive_type("snapshot")

        switched = await ask(first, conversation, "switch", message=q1)
        seen = await second.receive_type("path")
        await first.send({"type": "ping"})
        after = await first.receive()
    assert switched == seen
    assert after["type"] == "pong", "no second copy of the path frame"


@pytest.mark.cluster
async def test_a_reply_running_on_another_branch_makes_every_branch_busy(connect, user, conversation, upstream):
    async with connect(user) as ws:
        q1, a1, _, _ = await two_turns(ws, conversation)
        upstream.script(Scenario.stall(after=1))
        running = await ask(ws, conversation, "regenerate", client_id="r-1", message=a1)
        await ask(ws, conversation, "switch", message=a1)
        refusals = [
            await ask(ws, conversation, "edit", client_id="e-1", content="x", message=q1),
            await ask(ws, conversation, "regenerate", client_id="r-2"),
            await ws.send_message(conversation.pk, "And another"),
        ]
        await ws.send({"type": "cancel", "conversation": conversation.pk})
        await ws.reply_text(running["message"]["id"])
    assert [refusal.get("code") for refusal in refusals] == ["busy", "busy", "busy"]
    assert len(await messages_of(conversation)) == 5


@pytest.mark.cluster
@pytest.mark.parametrize("kind", ["edit", "regenerate", "switch"])
async def test_a_message_id_of_another_users_conversation_is_not_found_and_writes_nothing(
    kind, connect, user, conversation, make_user, upstream
):
    theirs = await new_conversation(await new_user(make_user))
    foreign = await database_sync_to_async(Message.objects.create)(conversation=theirs, role="assistant", content="x")
    fields = {"edit": {"content": "x"}}.get(kind, {})
    async with connect(user) as ws:
        await two_turns(ws, conversation)
        before = [(m.pk, m.parent_id, m.status) for m in await messages_of(conversation)]
        for message_id in (foreign.pk, foreign.pk + 1000):
            refused = await ask(ws, conversation, kind, client_id=f"x-{message_id}", message=message_id, **fields)
            assert (refused["type"], refused["code"]) == ("error", "not_found")
    assert [(m.pk, m.parent_id, m.status) for m in await messages_of(conversation)] == before


async def test_the_outage_guard_hands_the_servers_own_send_down_for_live_frames():
    from chat.consumers import LIVE_SEND
    from chat.middleware import WebSocketOutageGuard

    seen = {}

    async def consumer(scope, receive, send):
        seen.update(scope=scope, send=send)

    async def server_send(message):
        pass

    await WebSocketOutageGuard(consumer)({"type": "websocket", "path": "/ws/chat/"}, None, server_send)

    assert seen["scope"][LIVE_SEND] is server_send  # live frames: straight to the server
    assert seen["send"] is not server_send  # everything else: through the guard, which watches accept and close
