"""What only the OpenAI provider does: its request body, compatible servers' token-limit field, Ollama's
deltas, vLLM-style error objects, compatible servers' reasoning (in a delta field, or inline in <think>
tags). What every provider does is in tests/test_provider_contract.py."""

import pytest

from chat.providers.base import ChatTurn, Delta, GenerationRequest, ProviderError, ReplyStream
from chat.providers.openai import OpenAIProvider
from tests.fake_upstream import Scenario, split_text
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


@pytest.fixture
def compatible(upstream):
    """A compatible server (any provider name but "openai"), serving a thinking model."""
    return OpenAIProvider(
        name="llamacpp",
        label="llama.cpp",
        api_key="not-needed",
        base_url=upstream.base_url_openai,
        model_names=["qwen3"],
    )


async def deltas_of(stream: ReplyStream) -> list[Delta]:
    async with stream:
        return [delta async for delta in stream]


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


# --- Reasoning -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "extra_delta"),
    [
        ("reasoning_content", {}),  # vLLM, llama.cpp
        ("reasoning_content", {"content": None, "reasoning_content": None}),  # DeepSeek: the other field null
        ("reasoning", {"role": "assistant", "content": ""}),  # Ollama: role in every delta, empty content
        ("reasoning_text", {}),
    ],
    ids=["vllm", "deepseek", "ollama", "reasoning_text"],
)
async def test_reasoning_in_a_delta_field_streams_as_reasoning_deltas_in_order_before_the_text(
    compatible, upstream, field, extra_delta
):
    upstream.script(Scenario.with_reasoning("Two and two.", "Four.", field=field, extra_delta=extra_delta))
    stream = compatible.stream(REQUEST)

    assert await deltas_of(stream) == [
        *(Delta(token, "reasoning") for token in split_text("Two and two.")),
        Delta("Four"),
        Delta("."),
    ]
    assert stream.result.output_tokens == 6  # reasoning is output: the server counts it in completion_tokens


async def test_openais_own_stream_reads_the_reasoning_fields_too(provider, upstream, read_reply):
    upstream.script(Scenario.with_reasoning("Two and two.", "Four.", field="reasoning"))
    reasoning: list[str] = []

    assert await read_reply(provider.stream(REQUEST), None, reasoning) == "Four."
    assert "".join(reasoning) == "Two and two."


async def test_a_chunk_with_both_reasoning_and_content_gives_the_reasoning_first(compatible, upstream):
    upstream.script(Scenario.reply("Four.", extra_delta={"reasoning_content": "Two and two."}))

    assert await deltas_of(compatible.stream(REQUEST)) == [Delta("Two and two.", "reasoning"), Delta("Four.")]


async def test_the_same_reasoning_sent_under_two_field_names_counts_once(compatible, upstream, read_reply):
    # vLLM sent both names while it renamed reasoning_content to reasoning.
    upstream.script(
        Scenario.reply("Four.", extra_delta={"reasoning_content": "Two and two.", "reasoning": "Two and two."})
    )
    reasoning: list[str] = []

    assert await read_reply(compatible.stream(REQUEST), None, reasoning) == "Four."
    assert reasoning == ["Two and two."]


@pytest.mark.parametrize(
    ("open_cut", "close_cut"),
    [(None, None), (3, None), (None, 4), (1, 7), (6, 1)],
    ids=["whole-tags", "open-cut", "close-cut", "cut-at-first-and-last", "cut-at-last-and-first"],
)
async def test_an_inline_think_block_is_reasoning_even_with_its_tags_cut_across_chunks(
    compatible, upstream, read_reply, open_cut, close_cut
):
    upstream.script(Scenario.think_inline("Two and two.", "Four.", open_cut=open_cut, close_cut=close_cut))
    reasoning: list[str] = []

    assert await read_reply(compatible.stream(REQUEST), None, reasoning) == "Four."
    assert "".join(reasoning) == "Two and two."


async def test_reasoning_cut_off_by_the_output_limit_inside_its_think_block_stays_reasoning(
    compatible, upstream, read_reply
):
    upstream.script(Scenario.reply("<think>", "Two and", " two.</th", finish_reason="length"))
    reasoning: list[str] = []
    stream = compatible.stream(REQUEST)

    assert await read_reply(stream, None, reasoning) == ""
    assert "".join(reasoning) == "Two and two.</th"
    assert stream.result.finish_reason == "length"


async def test_openais_own_models_keep_think_tags_in_their_answer(provider, upstream, read_reply):
    upstream.script(Scenario.think_inline("Two and two.", "Four."))

    assert await read_reply(provider.stream(REQUEST)) == "<think>Two and two.</think>\n\nFour."


# --- Usage -----------------------------------------------------------------------------------------


async def test_usage_details_are_kept_as_reported_cached_tokens_inside_the_prompt_tokens(provider, upstream):
    upstream.script(
        Scenario.with_reasoning("Two and two.", "Four.", input_tokens=321, cached_tokens=200, cache_write_tokens=50)
    )
    stream = provider.stream(REQUEST)
    await deltas_of(stream)

    result = stream.result
    assert (result.input_tokens, result.cached_input_tokens, result.cache_write_tokens) == (321, 200, 50)
    assert (result.output_tokens, result.reasoning_tokens) == (6, 4)  # completion_tokens includes the reasoning
    assert not result.tokens_estimated


async def test_usage_details_a_server_does_not_report_stay_unknown(provider, upstream, read_reply):
    stream = provider.stream(REQUEST)
    await read_reply(stream)

    result = stream.result
    assert (result.input_tokens, result.output_tokens) == (12, 4)
    assert (result.cached_input_tokens, result.cache_write_tokens, result.reasoning_tokens) == (None, None, None)
