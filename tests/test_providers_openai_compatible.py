"""The OpenAI provider against a real third-party OpenAI-compatible server: llama-cpp-python's own."""

import sys
from collections.abc import Iterator

import pytest

from chat.providers.base import ChatTurn, GenerationRequest
from chat.providers.local import model_path
from chat.providers.openai import OpenAIProvider
from tests.harness.ports import free_port, wait_until_answering
from tests.harness.processes import Process

GREETING = GenerationRequest(
    model="smollm2", system="You are brief.", turns=[ChatTurn("user", "Say hi.")], max_output_tokens=8
)
COUNTING = GenerationRequest(
    model="smollm2",
    system="",
    turns=[ChatTurn("user", "Count from 1 to 500, separated by commas.")],
    max_output_tokens=1000,
)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the shipped model; yields its base URL."""
    port = free_port()
    # `python -m llama_cpp.server`, with the models it loads built as the local provider builds them.
    serve = (
        "import runpy; from chat.providers.local import without_extra_buffer_types\n"
        "with without_extra_buffer_types(): runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)"
    )
    command = [sys.executable, "-c", serve, "--model", str(model_path())]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"]
    server = Process(command, tmp_path_factory.mktemp("llama-server") / "server.log")
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        wait_until_answering(f"{base_url}/models", server, timeout=120)
        yield base_url
    finally:
        server.stop()


@pytest.fixture
def provider(llama_server):
    return OpenAIProvider(
        name="llamacpp", label="llamacpp", api_key="not-needed", base_url=llama_server, model_names=["smollm2"]
    )


async def test_streams_a_short_reply_from_a_real_compatible_server(provider, read_reply):
    stream = provider.stream(GREETING)

    text = await read_reply(stream)

    assert text.strip()
    assert stream.result.finish_reason in ("stop", "length")
    assert stream.result.time_to_first_token_ms is not None
    # This server sends no usage chunk, so the counts are estimates.
    assert stream.result.tokens_estimated
    assert 0 < stream.result.output_tokens <= 8 * 4


async def test_a_reply_cut_by_the_output_limit_finishes_with_length(provider, read_reply):
    stream = provider.stream(GenerationRequest("smollm2", "", COUNTING.turns, max_output_tokens=4))

    await read_reply(stream)

    assert stream.result.finish_reason == "length"


async def test_after_closing_a_reply_early_the_server_answers_the_next_one(provider, read_reply):
    async with provider.stream(COUNTING) as stream:
        async for _ in stream:
            break

    assert (await read_reply(provider.stream(GREETING))).strip()
