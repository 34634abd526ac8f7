"""The contract every SDK-based provider keeps, whatever its wire format: each test runs the real SDK of
OpenAI, of Anthropic and of an OpenAI-compatible server against the fake upstream on 127.0.0.1, sending
with aiohttp and with httpx2 (CHAT_PROVIDER_TRANSPORT).

These failures also walk the error ladder of chat/providers/sdk.py: an HTTP status (APIStatusError), a
server that never answers (APITimeoutError), one that refuses (APIConnectionError), transport errors
while reading, a garbled payload, and an exception that is not the SDK's. What one provider alone does
(its request body, its own error shapes) is tested in that provider's file."""

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import anthropic
import httpx2
import openai
import pytest

from chat.providers.anthropic import AnthropicProvider
from chat.providers.base import ChatTurn, GenerationRequest, Provider, ProviderError
from chat.providers.openai import OpenAIProvider
from tests.fake_upstream import Scenario
from tests.harness.ports import free_port


@dataclass(frozen=True)
class Case:
    """One provider under the contract, and what it calls the things the contract checks."""

    name: str
    sdk: ModuleType
    api_key: str  # planted, so tests can check that no error shows it
    model: str
    context_tokens: int
    finished: str  # the finish reason of a complete reply
    hit_the_limit: str  # the finish reason of a reply cut by the output limit

    def provider_at(self, root_url: str) -> Provider:
        """This provider, talking to the server at `root_url` under the path its API lives at."""
        if self.sdk is anthropic:
            return AnthropicProvider(api_key=self.api_key, base_url=f"{root_url}/anthropic", model_names=[self.model])
        return OpenAIProvider(
            name=self.name, label=self.name, api_key=self.api_key, base_url=f"{root_url}/v1", model_names=[self.model]
        )

    @property
    def request(self) -> GenerationRequest:
        return GenerationRequest(self.model, "You are brief.", [ChatTurn("user", "Say hello.")], max_output_tokens=64)


CASES = [
    Case(
        name="openai",
        sdk=openai,
        api_key="sk-test-planted-secret-0123456789",
        model="gpt-4o-mini",
        context_tokens=128_000,
        finished="stop",
        hit_the_limit="length",
    ),
    Case(
        name="anthropic",
        sdk=anthropic,
        api_key="sk-ant-test-planted-secret-0123456789",
        model="claude-haiku-4-5",
        context_tokens=200_000,
        finished="end_turn",
        hit_the_limit="max_tokens",
    ),
    # Any name but "openai" is a compatible server (Ollama, vLLM, llama.cpp); some are set up with a key.
    Case(
        name="ollama",
        sdk=openai,
        api_key="compatible-test-planted-secret-0123456789",
        model="llama3",
        context_tokens=8_192,
        finished="stop",
        hit_the_limit="length",
    ),
]


@pytest.fixture(params=CASES, ids=[case.name for case in CASES])
def case(request) -> Case:
    return request.param


@pytest.fixture(autouse=True, params=["aiohttp", "httpx"])
def transport(request, settings) -> str:
    """Every case keeps the contract on either HTTP client the SDKs may send with (CHAT_PROVIDER_TRANSPORT)."""
    settings.CHAT_PROVIDER_TRANSPORT = request.param
    return request.param


@pytest.fixture
def provider(case, upstream) -> Provider:
    return case.provider_at(upstream.base_url)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """The root URL of a server on 127.0.0.1 whose backlog takes connections that no one ever answers."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"


# --- A reply -------------------------------------------------------------------------------------


async def test_streams_the_reply_with_its_finish_reason_and_reported_usage(case, provider, read_reply):
    stream = provider.stream(case.request)

    assert await read_reply(stream) == "Hello, world!"
    assert stream.result.finish_reason == case.finished
    assert (stream.result.input_tokens, stream.result.output_tokens) == (12, 4)
    assert not stream.result.tokens_estimated
    assert stream.result.time_to_first_token_ms is not None
    assert stream.result.duration_ms >= stream.result.time_to_first_token_ms


async def test_returns_exactly_the_text_the_upstream_sent(case, provider, upstream, read_reply):
    upstream.script(Scenario.text("Bonjour, le monde! Ça va? 🙂"))

    assert await read_reply(provider.stream(case.request)) == "Bonjour, le monde! Ça va? 🙂"


async def test_a_reply_cut_by_the_output_limit_reports_the_providers_own_finish_reason(
    case, provider, upstream, read_reply
):
    upstream.script(Scenario.text("Once upon a", finish_reason="length"))
    stream = provider.stream(case.request)

    assert await read_reply(stream) == "Once upon a"
    assert stream.result.finish_reason == case.hit_the_limit


def test_offers_its_models_by_provider_qualified_reference_with_their_context_window(case, provider):
    assert [(model.ref, model.context_tokens) for model in provider.models()] == [
        (f"{case.name}:{case.model}", case.context_tokens)
    ]


# --- HTTP error statuses (the SDK's APIStatusError) ----------------------------------------------


@pytest.mark.parametrize("status", [503, 529])
async def test_the_sdk_itself_never_retries(case, provider, upstream, read_reply, status):
    upstream.script(Scenario.http_error(status), Scenario())

    with pytest.raises(ProviderError):
        await read_reply(provider.stream(case.request))

    assert len(upstream.requests) == 1
    assert upstream.requests[0].retry_count == 0


async def test_a_rejected_key_is_an_auth_error_that_does_not_show_the_key(case, provider, upstream, read_reply):
    upstream.script(Scenario.http_error(401))  # the fake echoes the key, as the worst upstream would

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(case.request))

    assert caught.value.code == "auth"
    assert case.api_key not in str(caught.value)
    assert upstream.base_url not in str(caught.value)


@pytest.mark.parametrize(
    ("scenario", "retry_after"),
    [
        (Scenario.rate_limited(retry_after=3), 3.0),
        (Scenario.http_error(429, headers={"retry-after": "2"}), 2.0),
        (Scenario.http_error(429, headers={"retry-after-ms": "1500", "retry-after": "9"}), 1.5),
        (Scenario.http_error(429), None),
    ],
    ids=["seconds", "other-seconds", "milliseconds-first", "no-header"],
)
async def test_rate_limiting_carries_the_servers_retry_after(
    case, provider, upstream, read_reply, scenario, retry_after
):
    upstream.script(scenario)

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(case.request))

    assert caught.value.code == "rate_limited"
    assert caught.value.retry_after == retry_after
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "bad_request"),
        (403, "auth"),
        (404, "bad_request"),
        (408, "timeout"),
        (409, "upstream_error"),
        (413, "bad_request"),
        (422, "bad_request"),
        (500, "upstream_error"),
        (502, "upstream_error"),
        (503, "overloaded"),
        (504, "upstream_error"),
        (529, "overloaded"),
    ],
)
async def test_http_errors_map_to_the_apps_codes(case, provider, upstream, read_reply, status, code):
    upstream.script(Scenario.http_error(status))

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(case.request))

    assert caught.value.code == code
    assert f"HTTP {status}" in caught.value.message
    assert isinstance(caught.value.__cause__, case.sdk.APIStatusError)


# --- Failures mid-stream -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_type", "code"),
    [("overloaded_error", "overloaded"), ("rate_limit_error", "rate_limited"), ("api_error", "upstream_error")],
)
async def test_an_error_the_upstream_reports_mid_stream_fails_after_the_text_before_it(
    case, provider, upstream, read_reply, error_type, code
):
    upstream.script(Scenario.error_mid_stream(after=2, error_type=error_type))
    received: list[str] = []

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(case.request), received)

    assert caught.value.code == code
    assert "".join(received) == "Hello,"


async def test_a_garbled_event_mid_stream_is_an_upstream_error_after_the_text_before_it(
    case, provider, upstream, read_reply
):
    upstream.script(Scenario.garbled(after=2))
    received: list[str] = []

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(case.request), received)

    assert caught.value.code == "upstream_error"
    assert "".join(received) == "Hello,"


async def test_a_connection_cut_mid_stream_is_a_connection_error(case, provider, upstream, read_reply):
    upstream.script(Scenario.cut(after=2))
    received: list[str] = []

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(case.request), received)

    assert caught.value.code == "connection"
    assert "".join(received) == "Hello,"
    assert isinstance(caught.value.__cause__, httpx2.TransportError)  # the SDKs do not wrap errors while reading


async def test_a_stalled_stream_is_a_timeout_and_the_connection_is_closed(
    case, provider, upstream, read_reply, settings
):
    settings.CHAT_TIMEOUT_IDLE = 0.5
    upstream.script(Scenario.stall(after=2))

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(case.request))

    assert caught.value.code == "timeout"
    assert isinstance(caught.value.__cause__, httpx2.TimeoutException)
    assert await upstream.wait_closed_async()


async def test_a_stream_that_ends_without_a_finish_reason_is_truncated(case, provider, upstream, read_reply):
    upstream.script(Scenario.no_finish())

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(case.request))

    assert caught.value.code == "truncated"


async def test_closing_the_stream_early_closes_the_upstream_connection(case, provider, upstream):
    upstream.script(Scenario.slow(200, delay=0.05))

    async with provider.stream(case.request) as stream:
        async for _ in stream:
            break

    assert await upstream.wait_closed_async(within=15)
    assert upstream.requests[0].closed_early


# --- Before any response -------------------------------------------------------------------------


async def test_a_server_that_never_answers_is_a_timeout(case, silent_server, read_reply, settings):
    settings.CHAT_TIMEOUT_IDLE = 0.5

    with pytest.raises(ProviderError) as caught:
        await read_reply(case.provider_at(silent_server).stream(case.request))

    assert caught.value.code == "timeout"
    assert isinstance(caught.value.__cause__, case.sdk.APITimeoutError)


async def test_a_server_that_refuses_the_connection_is_a_connection_error(case, read_reply):
    nothing_listens = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(ProviderError) as caught:
        await read_reply(case.provider_at(nothing_listens).stream(case.request))

    assert caught.value.code == "connection"
    assert isinstance(caught.value.__cause__, case.sdk.APIConnectionError)
    assert not isinstance(caught.value.__cause__, case.sdk.APITimeoutError)


async def test_an_exception_that_is_not_the_sdks_propagates_unchanged(case, provider, upstream, read_reply):
    # Content the SDK cannot encode is a bug of ours: it must not pass for a provider failure.
    unencodable = GenerationRequest(case.model, "", [ChatTurn("user", object())], max_output_tokens=64)

    with pytest.raises(TypeError, match="not JSON serializable"):
        await read_reply(provider.stream(unencodable))

    assert upstream.requests == []
