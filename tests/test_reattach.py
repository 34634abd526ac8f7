"""A Responses API model end to end, and background mode: the cursor travels with every published frame
(live log and checkpoints), a stop cancels the response upstream, and a reply whose worker died is taken
up by the next worker from the live log or from its last checkpoint, every character once.

The upstream holds each reply at a chosen delta (`hold_after`) until the test releases it, so where a
reply stands when something happens never depends on the machine's speed."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat import actions, services
from chat.engine import jobs
from chat.engine.frames import FrameCoalescer
from chat.live import LiveFrame, live_log
from chat.models import Message
from chat.providers import registry
from chat.providers.base import ChatTurn, GenerationRequest
from tests.engine_fixtures import TEST_MODEL
from tests.fake_upstream import Scenario, split_text
from tests.harness.clock import ManualClock
from tests.harness.waiting import wait_for
from tests.test_reply_parts import new_conversation, parts_so_far, saved, sent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

SUMMARIES = ("The user wants a story.", "A short one, about a lighthouse keeper.")
REASONING = "\n\n".join(SUMMARIES)
ANSWER = " ".join(f"word{i}" for i in range(40))
EXPECTED = [("reasoning", REASONING), ("text", ANSWER)]
REASONING_DELTAS = sum(len(split_text(summary)) for summary in SUMMARIES)  # the separator is no delta upstream


@pytest.fixture
def responses_model(engine):
    """gpt-test streams from the Responses API."""
    engine.OPENAI_RESPONSES_MODELS = ["gpt-test"]
    return engine


@pytest.fixture
def background_model(responses_model):
    """gpt-test streams from the Responses API in background mode."""
    responses_model.OPENAI_BACKGROUND_MODELS = ["gpt-test"]
    return responses_model


@pytest.fixture
async def conversation(make_user):
    return await new_conversation(make_user)


def deltas_in(frames):
    return [frame for frame in frames if frame["type"] == "delta"]


def assert_frames_continue(frames):
    """Every delta follows the one before: seq up by one, each part's offsets without gap or overlap."""
    deltas = deltas_in(frames)
    assert [frame["seq"] for frame in deltas] == list(range(1, len(deltas) + 1))
    lengths: dict[int, int] = {}
    for frame in deltas:
        assert frame["offset"] == lengths.get(frame["part"], 0), frame
        lengths[frame["part"]] = frame["offset"] + len(frame["text"])


# --- The cursor goes with each published frame ------------------------------------------------------


@pytest.mark.cluster
async def test_the_live_log_keeps_the_cursor_of_the_last_frame_with_it_and_after_a_rewrite(conversation):
    reply_id = 9_000 + conversation.pk
    await live_log().begin(reply_id)
    await live_log().append(reply_id, LiveFrame(part=0, kind="reasoning", text="Hmm", end=3, cursor=4))
    await live_log().append(reply_id, LiveFrame(part=1, kind="text", text="Four", end=4, cursor=9))

    state = await live_log().state(reply_id)
    assert (state.parts, state.seq, state.cursor) == ([("reasoning", "Hmm"), ("text", "Four")], 2, 9)
    assert await live_log().ends(reply_id) == [(0, 3), (1, 4)]

    await live_log().restore(reply_id, [("text", "Four.")], [(0, 5)], 12)
    assert (await live_log().state(reply_id)).cursor == 12
    await live_log().end(reply_id)


async def test_a_frame_carries_the_cursor_of_its_last_delta_and_buffered_text_does_not_move_it(conversation):
    clock = ManualClock()
    frames = FrameCoalescer(conversation_id=conversation.pk, message_id=9_100, clock=clock)
    await live_log().begin(9_100)

    await frames.add("Once", cursor=5)  # the first delta after a quiet spell goes at once
    await frames.add(" upon", cursor=6)  # within the window: buffered
    await frames.add(" a", cursor=7)
    assert (frames.cursor, (await live_log().state(9_100)).cursor) == (5, 5)

    await frames.close()
    state = await live_log().state(9_100)
    assert (frames.cursor, state.cursor, state.parts) == (7, 7, [("text", "Once upon a")])


# --- A Responses model through the consumer ---------------------------------------------------------


@pytest.mark.usefixtures("responses_model")
async def test_a_responses_model_streams_its_summaries_then_its_answer_as_parts_with_their_offsets(
    connect, conversation, upstream
):
    upstream.script(Scenario.with_summaries(SUMMARIES, ANSWER))
    async with connect(conversation.owner, protocol=2) as ws:
        reply_id = await sent(ws, conversation)
        parts, done = await ws.reply_parts(reply_id)

    assert parts == EXPECTED
    assert_frames_continue(ws.received)
    assert upstream.requests[0].path == "/v1/responses" and upstream.requests[0].body["store"] is False
    reply = await saved(reply_id)
    assert (reply.status, reply.content, reply.reasoning) == ("complete", ANSWER, REASONING)
    assert reply.reasoning_tokens == REASONING_DELTAS and not reply.tokens_estimated
    assert reply.upstream_response_id == "", "a response OpenAI does not keep has no id worth saving"


@pytest.mark.usefixtures("responses_model")
async def test_a_tab_reloaded_mid_reasoning_gets_every_character_once(connect, conversation, upstream):
    upstream.script(Scenario.with_summaries(SUMMARIES, ANSWER, hold_after=REASONING_DELTAS // 2))
    async with connect(conversation.owner, protocol=2) as first:
        reply_id = await sent(first, conversation)
        await first.receive_until(lambda frame: frame["type"] == "delta" and frame["kind"] == "reasoning")
        assert await upstream.wait_held_async()
        async with connect(conversation.owner, protocol=2) as reloaded:
            await reloaded.send({"type": "subscribe", "conversation": conversation.pk})
            snapshot = await reloaded.receive_type("snapshot")
            assert snapshot["message"]["parts"] and snapshot["message"]["parts"][0]["kind"] == "reasoning"
            upstream.release()
            so_far = [(part["kind"], part["text"]) for part in snapshot["message"]["parts"]]
            parts, _ = await reloaded.reply_parts(reply_id, timeout=60, parts=so_far)
        first_parts, _ = await first.reply_parts(reply_id, timeout=60, parts=parts_so_far(first.received))

    assert parts == first_parts == EXPECTED


# --- Background mode --------------------------------------------------------------------------------


@pytest.mark.usefixtures("background_model")
async def test_stop_on_a_background_reply_cancels_its_response_upstream(connect, conversation, upstream):
    upstream.script(Scenario.with_summaries(SUMMARIES, ANSWER, hold_after=3))
    async with connect(conversation.owner, protocol=2) as ws:
        reply_id = await sent(ws, conversation)
        await ws.receive_until(lambda frame: frame["type"] == "delta")
        assert await upstream.wait_held_async()
        await ws.send({"type": "cancel", "conversation": conversation.pk})
        _, done = await ws.reply_parts(reply_id, parts=parts_so_far(ws.received))

    reply = await saved(reply_id)
    assert done["message"]["status"] == reply.status == "cancelled"
    (kept,) = upstream.responses.values()
    assert reply.upstream_response_id == kept.response_id
    assert kept.cancelled, "closing the stream does not stop a background response: the cancel call does"
    assert [r.method for r in upstream.requests_to(f"/v1/responses/{kept.response_id}/cancel")] == ["POST"]


async def _published(reply_id, text_so_far):
    state = await live_log().state(reply_id)
    return state is not None and "".join(text for _, text in state.parts) == text_so_far


async def _worker_dies_at_hold(reply_id, upstream, held_text):
    """The in-process worker's generation of the reply vanishes (as a killed worker's would) once what
    the upstream sent before its hold is all published; its lease is then run out."""
    assert await upstream.wait_held_async()
    await wait_for(lambda: _published(reply_id, held_text))
    worker, _ = next(iter(jobs._in_process.values()))
    generation = worker.runner.running[reply_id]
    generation.task.cancel()
    await asyncio.gather(generation.task, return_exceptions=True)
    await database_sync_to_async(Message.objects.filter(pk=reply_id).update)(lease_expires_at="2000-01-01T00:00:00Z")
    return worker


@database_sync_to_async
def _has_response_id(reply_id):
    return bool(Message.objects.get(pk=reply_id).upstream_response_id)


@pytest.mark.usefixtures("background_model")
async def test_a_reply_whose_worker_died_is_taken_up_from_the_live_log_and_followers_see_every_character_once(
    connect, conversation, upstream
):
    hold = REASONING_DELTAS + 5  # inside the answer
    upstream.script(Scenario.with_summaries(SUMMARIES, ANSWER, hold_after=hold, delay=0.01))
    held_text = REASONING + "".join(split_text(ANSWER)[:5])
    async with connect(conversation.owner, protocol=2) as ws:
        reply_id = await sent(ws, conversation)
        worker = await _worker_dies_at_hold(reply_id, upstream, held_text)
        assert await _has_response_id(reply_id), "the response id is saved with the first checkpoint"

        await worker.reap_stale()
        (kept,) = upstream.responses.values()
        assert await asyncio.to_thread(upstream.wait_request_to, f"/v1/responses/{kept.response_id}")
        upstream.release()
        parts, done = await ws.reply_parts(reply_id, parts=parts_so_far(ws.received), timeout=60)

    assert parts == EXPECTED
    assert_frames_continue(ws.received)
    assert [frame["type"] for frame in ws.received].count("start") == 1, "the follower's text is not reset"
    reply = await saved(reply_id)
    assert (reply.status, reply.content, reply.reasoning, reply.resumes) == ("complete", ANSWER, REASONING, 1)
    assert done["message"]["length"] == len(ANSWER)
    (retrieve,) = upstream.requests_to(f"/v1/responses/{kept.response_id}", "GET")
    last_published = [event.payload["sequence_number"] for event in kept.planned if event.delta][hold - 1]
    assert retrieve.query["starting_after"] == str(last_published), "on from the event after the last frame"


@pytest.mark.usefixtures("background_model")
async def test_a_reply_whose_worker_died_with_its_live_log_gone_is_taken_up_from_its_last_checkpoint(
    connect, conversation, upstream, settings
):
    settings.CHAT_CHECKPOINT_SECONDS = 0  # a checkpoint after every delta the last one has finished by
    hold = REASONING_DELTAS + 5
    upstream.script(Scenario.with_summaries(SUMMARIES, ANSWER, hold_after=hold, delay=0.01))
    held_text = REASONING + "".join(split_text(ANSWER)[:5])
    async with connect(conversation.owner, protocol=2) as ws:
        reply_id = await sent(ws, conversation)
        worker = await _worker_dies_at_hold(reply_id, upstream, held_text)
        await live_log().end(reply_id)  # Redis lost it meanwhile
        checkpoint = await saved(reply_id)

        await worker.reap_stale()
        (kept,) = upstream.responses.values()
        assert await asyncio.to_thread(upstream.wait_request_to, f"/v1/responses/{kept.response_id}")
        upstream.release()
        await ws.receive_until(lambda frame: frame["type"] == "done", timeout=60)

    (retrieve,) = upstream.requests_to(f"/v1/responses/{kept.response_id}", "GET")
    assert int(retrieve.query["starting_after"]) == checkpoint.upstream_cursor
    reply = await saved(reply_id)
    assert (reply.status, reply.content, reply.reasoning) == ("complete", ANSWER, REASONING)
    assert reply.seq > checkpoint.seq


@pytest.mark.usefixtures("background_model")
async def test_a_reply_that_cannot_be_taken_up_ends_interrupted_with_its_text(connect, conversation, upstream):
    upstream.script(Scenario.with_summaries(SUMMARIES, ANSWER, hold_after=4))
    async with connect(conversation.owner, protocol=2) as ws:
        reply_id = await sent(ws, conversation)
        held_text = "".join(split_text(SUMMARIES[0])[:4])
        worker = await _worker_dies_at_hold(reply_id, upstream, held_text)
        upstream.reset()  # the provider no longer has the response

        await worker.reap_stale()
        done = await ws.receive_until(lambda frame: frame["type"] == "done", timeout=60)

    reply = await saved(reply_id)
    assert done["message"]["status"] == reply.status == "interrupted"
    assert "could not be taken up" in reply.error_message
    assert reply.reasoning == held_text


@database_sync_to_async
def handed_over_reply(conversation, response_id):
    """A reply a dead worker left: handed over, waiting for the next worker, its response kept upstream."""
    reply = services.message_send(conversation=conversation, client_id="c1", content="Hi").reply
    Message.objects.filter(pk=reply.pk).update(upstream_response_id=response_id, upstream_cursor=3, resumes=1)
    return reply


@pytest.mark.usefixtures("background_model")
async def test_stop_on_a_handed_over_reply_no_worker_took_yet_cancels_its_response_upstream(conversation, upstream):
    upstream.script(Scenario.text(ANSWER, hold_after=2))
    provider, _ = registry.resolve(TEST_MODEL)
    stream = provider.stream(GenerationRequest("gpt-test", "", [ChatTurn("user", "Hi")], 64))
    async with stream:
        async for _ in stream:
            break
    reply = await handed_over_reply(conversation, stream.response_id)
    assert reply.status == "pending"

    stopped = await actions.stop_reply(conversation.owner, conversation.pk)

    assert stopped.status == "cancelled"
    assert upstream.responses[stream.response_id].cancelled


@pytest.mark.usefixtures("background_model")
async def test_a_reply_taken_up_as_often_as_allowed_is_interrupted_and_its_response_cancelled(
    connect, conversation, upstream, settings
):
    settings.CHAT_RESUME_ATTEMPTS = 0
    upstream.script(Scenario.with_summaries(SUMMARIES, ANSWER, hold_after=4))
    async with connect(conversation.owner, protocol=2) as ws:
        reply_id = await sent(ws, conversation)
        worker = await _worker_dies_at_hold(reply_id, upstream, "".join(split_text(SUMMARIES[0])[:4]))

        await worker.reap_stale()
        done = await ws.receive_until(lambda frame: frame["type"] == "done", timeout=60)

    assert done["message"]["status"] == (await saved(reply_id)).status == "interrupted"
    (kept,) = upstream.responses.values()
    assert kept.cancelled and not upstream.requests_to(f"/v1/responses/{kept.response_id}", "GET")
