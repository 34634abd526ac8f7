"""What only the OpenAI provider does: its request body, compatible servers' token-limit field, Ollama's
deltas, vLLM-style error objects. What every provider does is in tests/test_provider_contract.py."""

import pytest

from chat.providers.base import ChatTurn, GenerationRequest, ProviderError
from chat.providers.openai import OpenAIProvider
from tests.fake_upstream import Scenario
from tests.harness.ports import free_port

API_KEY = "sk-test-planted-secret-0123456789"
REQUEST = GenerationRequest(
    model="gpt-4o-mini", system="You are brief.", turns=[ChatTurn("user", "Say hello.")], max_output_tokens=64
)


@pytest.fixture
def provider(upstream):
    return OpenAIProvider(
        name="openai", label="OpenAI", api_key=API_KEY, base_url=upstream.base_url_openai, model_names=["gpt-4o-mini"]
    )


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


async def test_ignores_ollama_extra_fields_in_deltas(provider, upstream, read_reply):
    upstream.script(Scenario.text("Hi there", extra_delta={"role": "assistant", "reasoning": ""}))

    assert await read_reply(provider.stream(REQUEST)) == "Hi there"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ({"error_type": "BadRequestError", "error_code": 400}, "bad_request"),
        ({"error_type": "ServiceUnavailableError", "error_code": 503}, "overloaded"),
        ({"error_type": "rate_limit_exceeded"}, "rate_limited"),
        ({"error_type": "server_error"}, "upstream_error"),
    ],
)
async def test_an_error_object_mid_stream_maps_by_its_vllm_status_code_or_its_openai_type(
    provider, upstream, read_reply, error, code
):
    upstream.script(Scenario.error_mid_stream(after=2, **error))
    received: list[str] = []

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST), received)

    assert caught.value.code == code
    assert "".join(received) == "Hello,"


async def test_an_unreachable_server_is_a_connection_error(read_reply):
    port = free_port()  # a port on 127.0.0.1 that nothing listens on
    provider = OpenAIProvider(
        name="openai", label="OpenAI", api_key=API_KEY, base_url=f"http://127.0.0.1:{port}/v1", model_names=["m"]
    )

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST))

    assert caught.value.code == "connection"
