"""What only the Anthropic provider does: its request body, alternating turns, and errors sent as an
`event: error` in a 200 response. What every provider does is in tests/test_provider_contract.py."""

import anthropic
import pytest

from chat.providers.anthropic import AnthropicProvider, alternating_turns
from chat.providers.base import ChatTurn, GenerationRequest, ProviderError
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
    assert isinstance(caught.value.__cause__, anthropic.APIStatusError)
    assert caught.value.__cause__.status_code == 200
    assert "".join(received) == "Hello,"


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
