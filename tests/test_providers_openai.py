"""The OpenAI provider, with the real SDK, against the fake upstream on 127.0.0.1."""

import socket

import pytest

from chat.providers.base import ChatTurn, GenerationRequest, ProviderError
from chat.providers.openai import OpenAIProvider
from tests.fake_upstream import Scenario

API_KEY = "sk-test-planted-secret-0123456789"
REQUEST = GenerationRequest(
    model="gpt-4o-mini", system="You are brief.", turns=[ChatTurn("user", "Say hello.")], max_output_tokens=64
)


@pytest.fixture
def provider(upstream):
    return OpenAIProvider(
        name="openai", label="OpenAI", api_key=API_KEY, base_url=upstream.base_url_openai, model_names=["gpt-4o-mini"]
    )


async def test_streams_the_reply_with_its_finish_reason_and_reported_usage(provider, upstream, read_reply):
    stream = provider.stream(REQUEST)

    assert await read_reply(stream) == "Hello, world!"
    assert stream.result.finish_reason == "stop"
    assert (stream.result.input_tokens, stream.result.output_tokens) == (12, 4)
    assert not stream.result.tokens_estimated
    assert stream.result.time_to_first_token_ms is not None
    assert stream.result.duration_ms >= stream.result.time_to_first_token_ms


async def test_asks_for_a_stream_with_usage_and_the_output_limit(provider, upstream, read_reply):
    await read_reply(provider.stream(REQUEST))

    (request,) = upstream.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["max_completion_tokens"] == 64
    assert request.body["messages"] == [
        {"role": "system", "content": "You are brief."},
        {"role": "user", "content": "Say hello."},
    ]


async def test_sends_no_system_message_when_the_system_prompt_is_empty(provider, upstream, read_reply):
    await read_reply(provider.stream(GenerationRequest("gpt-4o-mini", "", [ChatTurn("user", "Hi")], 64)))

    assert upstream.requests[0].body["messages"] == [{"role": "user", "content": "Hi"}]


async def test_compatible_servers_get_max_tokens_which_they_all_understand(upstream, read_reply):
    ollama = OpenAIProvider(
        name="ollama", label="ollama", api_key="not-needed", base_url=upstream.base_url_openai, model_names=["llama3"]
    )

    await read_reply(ollama.stream(REQUEST))

    assert upstream.requests[0].body["max_tokens"] == 64
    assert "max_completion_tokens" not in upstream.requests[0].body
    assert [model.ref for model in ollama.models()] == ["ollama:llama3"]


async def test_returns_exactly_the_text_the_upstream_sent(provider, upstream, read_reply):
    upstream.script(Scenario.text("Bonjour, le monde! Ça va? 🙂"))

    assert await read_reply(provider.stream(REQUEST)) == "Bonjour, le monde! Ça va? 🙂"


async def test_ignores_ollama_extra_fields_in_deltas(provider, upstream, read_reply):
    upstream.script(Scenario.text("Hi there", extra_delta={"role": "assistant", "reasoning": ""}))

    assert await read_reply(provider.stream(REQUEST)) == "Hi there"


async def test_the_sdk_itself_never_retries(provider, upstream, read_reply):
    upstream.script(Scenario.http_error(503), Scenario())

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


async def test_a_forbidden_key_is_an_auth_error(provider, upstream, read_reply):
    upstream.script(Scenario.http_error(403))

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST))

    assert caught.value.code == "auth"


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [({"retry-after": "2"}, 2.0), ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5), ({}, None)],
)
async def test_rate_limiting_carries_the_servers_retry_after(provider, upstream, read_reply, headers, retry_after):
    upstream.script(Scenario.http_error(429, headers=headers))

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST))

    assert caught.value.code == "rate_limited"
    assert caught.value.retry_after == retry_after
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "upstream_error"),
        (502, "upstream_error"),
        (503, "overloaded"),
        (529, "overloaded"),
        (400, "bad_request"),
        (404, "bad_request"),
        (413, "bad_request"),
        (422, "bad_request"),
    ],
)
async def test_http_errors_map_to_the_apps_codes(provider, upstream, read_reply, status, code):
    upstream.script(Scenario.http_error(status))

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST))

    assert caught.value.code == code
    assert f"HTTP {status}" in caught.value.message


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ({"error_type": "overloaded_error"}, "overloaded"),
        ({"error_type": "BadRequestError", "error_code": 400}, "bad_request"),
        ({"error_type": "ServiceUnavailableError", "error_code": 503}, "overloaded"),
        ({"error_type": "rate_limit_exceeded"}, "rate_limited"),
        ({"error_type": "server_error"}, "upstream_error"),
    ],
)
async def test_an_error_object_mid_stream_fails_after_the_text_before_it(provider, upstream, read_reply, error, code):
    upstream.script(Scenario.error_mid_stream(after=2, **error))
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


async def test_a_stream_that_ends_without_a_finish_reason_is_truncated(provider, upstream, read_reply):
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


async def test_an_unreachable_server_is_a_connection_error(read_reply):
    with socket.socket() as probe:  # a port on 127.0.0.1 that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = OpenAIProvider(
        name="openai", label="OpenAI", api_key=API_KEY, base_url=f"http://127.0.0.1:{port}/v1", model_names=["m"]
    )

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST))

    assert caught.value.code == "connection"
