"""The frame coalescer, on a controlled clock: how many frames a reply makes follows from its rules alone,
however fast or busy the machine is."""

import asyncio
import math

import orjson
import pytest
from channels.layers import get_channel_layer

from chat import events
from chat.engine import frames as frames_module
from chat.engine.frames import FrameCoalescer, frame_window
from chat.live import live_log
from tests.harness.clock import ManualClock

pytestmark = pytest.mark.usefixtures("engine")

CONVERSATION = 7
MESSAGE = 70


async def follow_conversation() -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.conversation_group(CONVERSATION), channel)
    return channel


async def published_deltas(channel: str) -> list[dict]:
    layer = get_channel_layer()
    received = []
    queue = layer.channels.get(channel)  # the in-memory layer's queue: what was sent so far, no waiting
    while queue is not None and not queue.empty():
        event = await layer.receive(channel)
        received.append(orjson.loads(event["json"]))
    return received


async def stream(coalescer: FrameCoalescer, clock: ManualClock, tokens: list[str], *, every: float) -> None:
    for token in tokens:
        await coalescer.add(token)
        await clock.advance(every)
    await coalescer.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def roomy_layer(settings):
    """An in-memory layer that keeps every frame of a test (its default keeps 100 per channel)."""
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {**settings.CHANNEL_LAYERS, "default": {**settings.CHANNEL_LAYERS["default"]}}
    settings.CHANNEL_LAYERS["default"]["CONFIG"] = {"capacity": 10_000}
    channel_layers.backends.clear()


@pytest.mark.usefixtures("roomy_layer")
async def test_5000_tokens_in_one_second_make_at_most_one_frame_per_minimum_window(settings, clock):
    channel = await follow_conversation()
    await live_log().begin(MESSAGE)
    coalescer = FrameCoalescer(conversation_id=CONVERSATION, message_id=MESSAGE, clock=clock)
    tokens = [f" t{i}" for i in range(5000)]

    await stream(coalescer, clock, tokens, every=0.0002)

    deltas = await published_deltas(channel)
    bound = math.ceil(1.0 / (settings.CHAT_FRAME_MIN_WINDOW_MS / 1000)) + 1
    assert 2 <= len(deltas) <= bound, f"{len(deltas)} frames for 5000 tokens over 1 s (bound {bound})"
    assert "".join(frame["text"] for frame in deltas) == "".join(tokens)
    assert [frame["seq"] for frame in deltas] == list(range(1, len(deltas) + 1))
    assert all(frame["offset"] == sum(len(f["text"]) for f in deltas[:i]) for i, frame in enumerate(deltas))
    assert (await live_log().state(MESSAGE)).content == "".join(tokens)


async def test_tokens_slower_than_the_minimum_window_each_go_out_at_once(settings, clock):
    channel = await follow_conversation()
    coalescer = FrameCoalescer(conversation_id=CONVERSATION, message_id=MESSAGE, clock=clock)
    slower = settings.CHAT_FRAME_MIN_WINDOW_MS / 1000 + 0.001

    await stream(coalescer, clock, ["a", "b", "c", "d"], every=slower)

    assert [frame["text"] for frame in await published_deltas(channel)] == ["a", "b", "c", "d"]


async def test_a_delta_held_back_is_sent_by_the_timer_when_no_more_tokens_come(clock):
    channel = await follow_conversation()
    coalescer = FrameCoalescer(conversation_id=CONVERSATION, message_id=MESSAGE, clock=clock)
    await coalescer.add("first")
    await coalescer.add(" second")  # within the window: held back
    assert [frame["text"] for frame in await published_deltas(channel)] == ["first"]

    await clock.advance(frame_window(1))

    assert [frame["text"] for frame in await published_deltas(channel)] == [" second"]
    await coalescer.close()


async def test_a_timer_that_fired_just_before_another_frame_went_out_does_not_send_a_second_one_early(clock):
    """Under load the timer's flush can run after a later delta already sent a frame; what came after that
    frame must still wait for its own window (once, frames went out 0.3 ms apart under a 15 ms window)."""
    channel = await follow_conversation()
    coalescer = FrameCoalescer(conversation_id=CONVERSATION, message_id=MESSAGE, clock=clock)
    window = frame_window(1)
    await coalescer.add("a")  # sent at once
    await coalescer.add("b")  # held back: the timer is set for the window's end
    clock.move(window)  # the timer fires; its flush has not run yet (a busy loop)
    await coalescer.add("c")  # past the window: sends "bc" itself
    await coalescer.add("d")  # within the new window: held back
    for _ in range(3):
        await asyncio.sleep(0)  # now the stale timer's flush runs

    assert [frame["text"] for frame in await published_deltas(channel)] == ["a", "bc"]
    await clock.advance(window)
    assert [frame["text"] for frame in await published_deltas(channel)] == ["d"]
    await coalescer.close()


async def test_a_frame_goes_at_once_when_its_text_reaches_the_size_limit(settings, clock):
    settings.CHAT_FRAME_MAX_CHARS = 10
    channel = await follow_conversation()
    coalescer = FrameCoalescer(conversation_id=CONVERSATION, message_id=MESSAGE, clock=clock)
    await coalescer.add("x")
    for _ in range(4):
        await coalescer.add("yyy")  # no time passes: only the size limit can send these

    assert [frame["text"] for frame in await published_deltas(channel)] == ["x", "yyyyyyyyyyyy"]
    await coalescer.close()


def test_the_window_grows_with_the_replies_streaming_in_the_process_up_to_its_maximum(settings):
    settings.CHAT_FRAME_RATE = 1500
    settings.CHAT_FRAME_MIN_WINDOW_MS = 15
    settings.CHAT_FRAME_WINDOW_MS = 250

    assert frame_window(1) == pytest.approx(0.015)
    assert frame_window(200) == pytest.approx(200 / 1500)
    assert frame_window(10_000) == pytest.approx(0.25)


@pytest.mark.usefixtures("roomy_layer")
async def test_with_300_replies_streaming_one_reply_makes_at_most_one_frame_per_shared_window(settings, clock):
    settings.CHAT_FRAME_RATE = 1500
    others = [FrameCoalescer(conversation_id=1000 + i, message_id=2000 + i, clock=clock) for i in range(299)]
    channel = await follow_conversation()
    coalescer = FrameCoalescer(conversation_id=CONVERSATION, message_id=MESSAGE, clock=clock)
    assert len(frames_module._open) >= 300  # (and any an earlier test left open)

    await stream(coalescer, clock, [f" t{i}" for i in range(1000)], every=0.001)

    window = frame_window(300)
    assert len(await published_deltas(channel)) <= math.ceil(1.0 / window) + 1
    for other in others:
        await other.close()


# --- Parts -----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("roomy_layer")
async def test_a_delta_of_another_kind_ends_the_part_at_once_and_offsets_restart_in_the_next(clock):
    channel = await follow_conversation()
    await live_log().begin(MESSAGE)
    coalescer = FrameCoalescer(conversation_id=CONVERSATION, message_id=MESSAGE, clock=clock)

    for kind, text in [("reasoning", "Two "), ("reasoning", "and two."), ("text", "Four"), ("text", ".")]:
        await coalescer.add(text, kind=kind)
        await clock.advance(0.0001)  # all within one batching window
    await coalescer.close()

    deltas = await published_deltas(channel)
    assert [(d["seq"], d["part"], d["kind"], d["offset"], d["text"]) for d in deltas] == [
        (1, 0, "reasoning", 0, "Two "),  # the first delta after a quiet spell goes at once
        (2, 0, "reasoning", 4, "and two."),  # the batch ends with its part, not a window later
        (3, 1, "text", 0, "Four."),
    ]
    assert coalescer.parts == [("reasoning", "Two and two."), ("text", "Four.")]
    assert coalescer.content == "Four."
    state = await live_log().state(MESSAGE)
    assert (state.parts, state.seq) == ([("reasoning", "Two and two."), ("text", "Four.")], 3)


async def test_each_part_lasts_from_its_first_delta_to_the_next_parts_first(clock):
    await live_log().begin(MESSAGE)
    coalescer = FrameCoalescer(conversation_id=CONVERSATION, message_id=MESSAGE, clock=clock)

    await coalescer.add("Hmm", kind="reasoning")
    await clock.advance(2.5)
    await coalescer.add(" yes", kind="reasoning")
    await clock.advance(0.5)
    await coalescer.add("Yes.", kind="text")
    await clock.advance(1.25)
    await coalescer.add(" Sure.", kind="text")
    await coalescer.close()

    assert coalescer.durations_ms() == [3000, 1250]


async def test_a_reply_that_never_streamed_has_no_parts_and_no_durations(clock):
    coalescer = FrameCoalescer(conversation_id=CONVERSATION, message_id=MESSAGE, clock=clock)

    await coalescer.close()

    assert (coalescer.parts, coalescer.durations_ms(), coalescer.content) == ([], [], "")


@pytest.mark.usefixtures("roomy_layer")
async def test_signatures_and_redacted_blocks_are_kept_for_the_record_and_never_published(clock):
    channel = await follow_conversation()
    await live_log().begin(MESSAGE)
    coalescer = FrameCoalescer(conversation_id=CONVERSATION, message_id=MESSAGE, clock=clock)

    coalescer.keep("reasoning", signature="sig-omitted")  # thinking with its text omitted: a block of its own
    await coalescer.add("Two and two.", kind="reasoning")
    coalescer.keep("reasoning", signature="sig-1")
    coalescer.keep("reasoning", redacted="opaque==")
    await coalescer.add("Still four.", kind="reasoning")  # a new thinking block: a part of its own
    coalescer.keep("reasoning", signature="sig-2")
    await coalescer.add("Four.", kind="text")
    await coalescer.close()

    deltas = await published_deltas(channel)
    assert [(d["part"], d["kind"], d["text"]) for d in deltas] == [
        (0, "reasoning", "Two and two."),
        (1, "reasoning", "Still four."),
        (2, "text", "Four."),
    ]
    assert coalescer.parts == [("reasoning", "Two and two."), ("reasoning", "Still four."), ("text", "Four.")]
    assert len(coalescer.durations_ms()) == 3
    assert coalescer.records == [
        {"kind": "reasoning", "text": "", "signature": "sig-omitted"},
        {"kind": "reasoning", "text": "Two and two.", "signature": "sig-1"},
        {"kind": "reasoning", "text": "", "redacted": "opaque=="},
        {"kind": "reasoning", "text": "Still four.", "signature": "sig-2"},
        {"kind": "text", "text": "Four."},
    ]
    assert (await live_log().state(MESSAGE)).parts == coalescer.parts
