"""What only the Anthropic provider does: its request body, alternating turns, and errors sent as an
`event: error` in a 200 response. What every provider does is in tests/test_provider_contract.py."""

import pytest

from chat.providers.anthropic import AnthropicProvider, alternating_turns
from chat.providers.base import ChatTurn, Delta, GenerationRequest, ProviderError
from tests.fake_upstream import Scenario

API_KEY = "sk-ant-test-planted-secret-0123456789"
REQUEST = GenerationRequest(
    model="claude-haiku-4-5", system="You are brief.", turns=[ChatTurn("user", "Say hello.")], max_output_tokens=64
)


@pytest.fixture
def provider(upstream):
    return AnthropicProvider(api_key=API_KEY, base_url=upstream.base_url_anthropic, model_names=["claude-haiku-4-5"])


async def test_sends_the_system_prompt_apart_and_the_output_limit(provider, upstream, read_reply):
    await read_reply(provider.stream(REQUEST))

    (request,) = upstream.requests
    assert request.path == "/anthropic/v1/messages"
    assert request.body["system"] == "You are brief."
    assert request.body["max_tokens"] == 64
    assert request.body["stream"] is True
    assert request.body["messages"] == [{"role": "user", "content": "Say hello."}]


async def test_sends_turns_that_alternate_from_a_user_turn(provider, upstream, read_reply):
    turns = [
        ChatTurn("assistant", "Welcome!"),
        ChatTurn("user", "First question"),
        ChatTurn("user", "and a second one"),
        ChatTurn("assistant", ""),
        ChatTurn("assistant", "An answer"),
        ChatTurn("user", "Thanks"),
    ]

    await read_reply(provider.stream(GenerationRequest("claude-haiku-4-5", "", turns, 64)))

    assert "system" not in upstream.requests[0].body
    assert upstream.requests[0].body["messages"] == [
        {"role": "user", "content": "First question\n\nand a second one"},
        {"role": "assistant", "content": "An answer"},
        {"role": "user", "content": "Thanks"},
    ]


def test_alternating_turns_drops_a_trailing_assistant_turn():
    turns = [ChatTurn("user", "Hi"), ChatTurn("assistant", "Hello")]

    assert alternating_turns(turns) == [ChatTurn("user", "Hi")]


async def test_an_error_event_in_a_200_response_maps_by_its_type_and_shows_no_http_status(
    provider, upstream, read_reply
):
    upstream.script(Scenario.error_mid_stream(after=2, error_type="never_heard_of_error"))
    received: list[str] = []

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST), received)

    assert caught.value.code == "upstream_error"  # not "bad_request", as HTTP 200 would map to
    assert "HTTP" not in caught.value.message
    assert "".join(received) == "Hello,"


async def test_an_overloaded_error_event_mid_stream_is_overloaded(provider, upstream, read_reply):
    upstream.script(Scenario.error_mid_stream(after=2, error_type="overloaded_error"))

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST))

    assert caught.value.code == "overloaded"


async def test_usage_keeps_the_uncached_input_and_the_cache_reads_and_writes_apart(provider, upstream, read_reply):
    upstream.script(Scenario.text("Hello there", input_tokens=21, cached_tokens=200, cache_write_tokens=50))
    stream = provider.stream(REQUEST)
    await read_reply(stream)

    result = stream.result
    assert (result.input_tokens, result.cached_input_tokens, result.cache_write_tokens) == (21, 200, 50)
    assert (result.output_tokens, result.reasoning_tokens, result.tokens_estimated) == (2, None, False)


async def test_the_cumulative_counts_of_message_delta_replace_those_of_message_start(provider, upstream, read_reply):
    delta_usage = {
        "input_tokens": 30,
        "cache_read_input_tokens": 210,
        "cache_creation_input_tokens": 0,
        "output_tokens_details": {"thinking_tokens": 40},
    }
    upstream.script(Scenario.text("Hello there", input_tokens=21, cached_tokens=200, delta_usage=delta_usage))
    stream = provider.stream(REQUEST)
    await read_reply(stream)

    result = stream.result
    assert (result.input_tokens, result.cached_input_tokens, result.cache_write_tokens) == (30, 210, 0)
    assert (result.output_tokens, result.reasoning_tokens) == (2, 40)  # output_tokens includes the thinking


async def test_usage_details_not_reported_stay_unknown(provider, upstream, read_reply):
    stream = provider.stream(REQUEST)
    await read_reply(stream)

    result = stream.result
    assert (result.input_tokens, result.output_tokens) == (12, 4)
    assert (result.cached_input_tokens, result.cache_write_tokens, result.reasoning_tokens) == (None, None, None)


# --- Extended thinking ------------------------------------------------------------------------

REASONING = "The user says hello. A short greeting back is enough."
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds+4u/Qo=="


@pytest.fixture
def thinking_provider(upstream):
    return AnthropicProvider(
        api_key=API_KEY,
        base_url=upstream.base_url_anthropic,
        model_names=["claude-haiku-4-5", "claude-thinker"],
        thinking_budget=1024,
        thinking_models=["claude-thinker"],
    )


async def deltas_of(stream):
    async with stream:
        return [delta async for delta in stream]


def thinking_request(*turns: ChatTurn, model: str = "claude-thinker") -> GenerationRequest:
    return GenerationRequest(model, "", list(turns or [ChatTurn("user", "Hi")]), 2048)


async def test_a_thinking_model_is_sent_its_budget_and_others_are_not(thinking_provider, upstream, read_reply):
    await read_reply(thinking_provider.stream(thinking_request()))
    await read_reply(thinking_provider.stream(thinking_request(model="claude-haiku-4-5")))

    thinking, plain = (request.body for request in upstream.requests)
    assert thinking["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert thinking["max_tokens"] == 2048
    assert "thinking" not in plain


async def test_thinking_streams_as_reasoning_then_its_signature_then_redacted_blocks_then_the_answer(
    thinking_provider, upstream
):
    upstream.script(Scenario.anthropic_thinking(REASONING, "Hello!", signature=SIGNATURE, redacted=("opaque==",)))

    deltas = await deltas_of(thinking_provider.stream(thinking_request()))

    reasoning = [delta for delta in deltas if delta.kind == "reasoning" and delta.text]
    assert "".join(delta.text for delta in reasoning) == REASONING
    assert deltas[: len(reasoning)] == reasoning, "the reasoning comes first"
    assert deltas[len(reasoning) : len(reasoning) + 2] == [
        Delta("", "reasoning", signature=SIGNATURE),
        Delta("", "reasoning", redacted="opaque=="),
    ]
    assert deltas[len(reasoning) + 2 :] == [Delta("Hello"), Delta("!")]


async def test_omitted_thinking_is_only_a_signature(thinking_provider, upstream):
    upstream.script(Scenario.anthropic_thinking("", "Hello!", signature=SIGNATURE))

    deltas = await deltas_of(thinking_provider.stream(thinking_request()))

    assert deltas == [Delta("", "reasoning", signature=SIGNATURE), Delta("Hello"), Delta("!")]


async def test_a_turn_with_blocks_is_sent_as_those_blocks_unchanged(thinking_provider, upstream, read_reply):
    blocks = (
        {"type": "thinking", "thinking": REASONING, "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": "opaque=="},
        {"type": "text", "text": "Hello!"},
    )
    turns = [ChatTurn("user", "Hi"), ChatTurn("assistant", "Hello!", blocks), ChatTurn("user", "Bye")]

    await read_reply(thinking_provider.stream(thinking_request(*turns)))

    assert upstream.requests[0].body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": list(blocks)},
        {"role": "user", "content": "Bye"},
    ]


def test_merging_a_turn_with_blocks_keeps_its_blocks():
    signed = ({"type": "thinking", "thinking": "Hm.", "signature": SIGNATURE}, {"type": "text", "text": "One"})
    turns = [ChatTurn("user", "Hi"), ChatTurn("assistant", "One", signed), ChatTurn("assistant", "Two")]

    merged = alternating_turns([*turns, ChatTurn("user", "More")])

    assert merged[1] == ChatTurn("assistant", "One\n\nTwo", (*signed, {"type": "text", "text": "Two"}))
    assert alternating_turns([turns[0], ChatTurn("user", "there")]) == [ChatTurn("user", "Hi\n\nthere")]


@pytest.mark.parametrize(
    ("stop_reason", "code", "says"),
    [
        ("refusal", "refused", "declined"),
        ("pause_turn", "truncated", "paused"),
        ("model_context_window_exceeded", "truncated", "context window"),
    ],
)
async def test_stop_reasons_without_a_whole_answer_fail_the_reply_with_its_text_kept(
    provider, upstream, read_reply, stop_reason, code, says
):
    upstream.script(Scenario.text("I can start", finish_reason=stop_reason))
    received: list[str] = []
    stream = provider.stream(REQUEST)

    with pytest.raises(ProviderError) as caught:
        await read_reply(stream, received)

    assert (caught.value.code, caught.value.retryable) == (code, False)
    assert says in caught.value.message
    assert "".join(received) == "I can start"
    assert stream.result.finish_reason == stop_reason


async def test_max_tokens_is_a_finished_reply_that_used_its_budget(provider, upstream, read_reply):
    upstream.script(Scenario.text("Cut here", finish_reason="length"))
    stream = provider.stream(REQUEST)

    assert await read_reply(stream) == "Cut here"
    assert stream.result.finish_reason == "max_tokens"
