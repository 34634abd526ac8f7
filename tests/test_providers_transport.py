"""The HTTP plumbing of the SDK-based providers (chat/providers/transport.py): which client the SDKs send
with, that every client a loop opened is closed before the loop is, and SSE lines read whole however
the network splits them. The errors in the app's terms are kept by tests/test_provider_contract.py."""

import asyncio
import gc

import pytest

from chat.providers import registry, transport
from chat.providers.anthropic import AnthropicProvider
from chat.providers.base import ChatTurn, GenerationRequest
from chat.providers.openai import OpenAIProvider

REQUEST = GenerationRequest("m", "", [ChatTurn("user", "Hi")], max_output_tokens=16)


def providers_at(upstream):
    return (
        OpenAIProvider(
            name="openai", label="OpenAI", api_key="k", base_url=upstream.base_url_openai, model_names=["m"]
        ),
        AnthropicProvider(api_key="k", base_url=upstream.base_url_anthropic, model_names=["m"]),
    )


async def streamed_with(providers, read_reply):
    """Reads one reply from each provider; returns the SDK clients they used."""
    for provider in providers:
        assert await read_reply(provider.stream(REQUEST)) == "Hello, world!"
    return [transport.loop_client(provider, lambda: None) for provider in providers]


@pytest.mark.parametrize(
    ("setting", "transport_class"), [("aiohttp", "AiohttpTransport"), ("httpx", "AsyncHTTPTransport")]
)
async def test_both_sdks_send_with_the_configured_http_client(settings, upstream, read_reply, setting, transport_class):
    settings.CHAT_PROVIDER_TRANSPORT = setting

    clients = await streamed_with(providers_at(upstream), read_reply)

    assert [type(client._client._transport).__name__ for client in clients] == [transport_class, transport_class]


def test_the_clients_a_loop_opened_are_closed_before_the_loop_closes(upstream, read_reply, recwarn):
    providers = providers_at(upstream)

    clients = asyncio.run(streamed_with(providers, read_reply))
    gc.collect()

    assert all(client.is_closed() for client in clients)
    assert [client._client._transport.client.closed for client in clients] == [True, True]  # aiohttp's sessions
    assert not [warning for warning in recwarn if "Unclosed" in str(warning.message)]
    assert not transport._loop_clients  # nor is the closed loop kept alive


async def test_close_clients_closes_this_loops_clients_and_the_next_stream_opens_new_ones(upstream, read_reply):
    providers = providers_at(upstream)
    first = await streamed_with(providers, read_reply)

    await registry.close_clients()
    second = await streamed_with(providers, read_reply)

    assert all(client.is_closed() for client in first)
    assert not any(client.is_closed() for client in second)


async def test_each_loop_has_its_own_client():
    owner = object()
    here = transport.loop_client(owner, object)

    elsewhere = await asyncio.to_thread(asyncio.run, _client_of(owner))

    assert transport.loop_client(owner, object) is here
    assert elsewhere is not here


async def _client_of(owner):
    return transport.loop_client(owner, object)


class ChunkedBody:
    """An SDK response whose body arrives in the given chunks."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def iter_bytes(self):
        for chunk in self.chunks:
            yield chunk


STREAM = b'data: {"a": 1}\r\n\r\nevent: ping\ndata: {"b": "x\xc3\xa9"}\n\n: comment\ndata: [DONE]\n\n'


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
async def test_sse_data_reads_every_data_line_whole_wherever_the_body_is_split(cut):
    payloads = [data async for data in transport.sse_data(ChunkedBody(STREAM[:cut], STREAM[cut:]))]

    assert payloads == [b'{"a": 1}', b'{"b": "x\xc3\xa9"}', b"[DONE]"]


async def test_sse_data_reads_a_body_that_comes_one_byte_at_a_time():
    body = ChunkedBody(*(STREAM[index : index + 1] for index in range(len(STREAM))))

    assert [data async for data in transport.sse_data(body)] == [b'{"a": 1}', b'{"b": "x\xc3\xa9"}', b"[DONE]"]
