"""The Anthropic provider, with the real SDK, against the fake upstream on 127.0.0.1."""

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


async def test_streams_the_reply_with_its_stop_reason_and_reported_usage(provider, upstream, read_reply):
    stream = provider.stream(REQUEST)

    assert await read_reply(stream) == "Hello, world!"
    assert stream.result.finish_reason == "end_turn"
    assert (stream.result.input_tokens, stream.result.output_tokens) == (12, 4)
    assert not stream.result.tokens_estimated
    assert stream.result.time_to_first_token_ms is not None
    assert stream.result.duration_ms >= stream.result.time_to_first_token_ms


async def test_reports_max_tokens_when_the_reply_hit_the_limit(provider, upstream, read_reply):
    upstream.script(Scenario.text("Once upon a", finish_reason="length"))
    stream = provider.stream(REQUEST)

    assert await read_reply(stream) == "Once upon a"
    assert stream.result.finish_reason == "max_tokens"


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


def test_offers_its_models_by_reference():
    provider = AnthropicProvider(api_key=API_KEY, base_url=None, model_names=["claude-sonnet-4-5"])

    assert [(model.ref, model.context_tokens) for model in provider.models()] == [
        ("anthropic:claude-sonnet-4-5", 200_000)
    ]


async def test_the_sdk_itself_never_retries(provider, upstream, read_reply):
    upstream.script(Scenario.http_error(529), Scenario())

    with pytest.raises(ProviderError):
        await read_reply(provider.stream(REQUEST))

    assert len(upstream.requests) == 1
    assert upstream.requests[0].retry_count == 0


async def test_a_rejected_key_is_an_auth_error_that_does_not_show_the_key(provider, upstream, read_reply):
    upstream.script(Scenario.http_error(401))  # the fake echoes the key, as the worst upstream would

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST))

    assert caught.value.code == "auth"
    assert API_KEY not in str(caught.value)
    assert upstream.base_url not in str(caught.value)


async def test_rate_limiting_carries_the_servers_retry_after(provider, upstream, read_reply):
    upstream.script(Scenario.rate_limited(retry_after=3))

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST))

    assert caught.value.code == "rate_limited"
    assert caught.value.retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "upstream_error"),
        (504, "upstream_error"),
        (503, "overloaded"),
        (529, "overloaded"),
        (403, "auth"),
        (400, "bad_request"),
        (413, "bad_request"),
    ],
)
async def test_http_errors_map_to_the_apps_codes(provider, upstream, read_reply, status, code):
    upstream.script(Scenario.http_error(status))

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST))

    assert caught.value.code == code
    assert f"HTTP {status}" in caught.value.message


@pytest.mark.parametrize(
    ("error_type", "code"),
    [("overloaded_error", "overloaded"), ("rate_limit_error", "rate_limited"), ("api_error", "upstream_error")],
)
async def test_an_error_event_mid_stream_fails_after_the_text_before_it(
    provider, upstream, read_reply, error_type, code
):
    upstream.script(Scenario.error_mid_stream(after=2, error_type=error_type))
    received: list[str] = []

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST), received)

    assert caught.value.code == code
    assert "".join(received) == "Hello,"


async def test_a_connection_cut_mid_stream_is_a_connection_error(provider, upstream, read_reply):
    upstream.script(Scenario.cut(after=2))
    received: list[str] = []

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST), received)

    assert caught.value.code == "connection"
    assert "".join(received) == "Hello,"


async def test_a_stalled_stream_is_a_timeout_and_the_connection_is_closed(provider, upstream, read_reply, settings):
    settings.CHAT_TIMEOUT_IDLE = 0.5
    upstream.script(Scenario.stall(after=2))

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST))

    assert caught.value.code == "timeout"
    assert await upstream.wait_closed_async()


async def test_a_stream_that_ends_without_a_stop_reason_is_truncated(provider, upstream, read_reply):
    upstream.script(Scenario.no_finish())

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST))

    assert caught.value.code == "truncated"


async def test_closing_the_stream_early_closes_the_upstream_connection(provider, upstream):
    upstream.script(Scenario.slow(200, delay=0.05))

    async with provider.stream(REQUEST) as stream:
        async for _ in stream:
            break

    assert await upstream.wait_closed_async(within=15)
    assert upstream.requests[0].closed_early
