"""Fixtures for driving the streaming engine: users with real sessions, WebSocket clients, settings
that point the OpenAI provider at the fake upstream."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from chat import live
from chat.engine import jobs
from chat.providers import registry

PLANTED_KEY = "sk-test-PLANTED-SECRET-1234567890"
TEST_MODEL = "openai:gpt-test"


@pytest.fixture
def engine(request, settings, upstream) -> Any:
    """Settings for engine tests: the fake upstream as OpenAI, short timeouts, fresh layers and worker.

    In cluster mode (REDIS_URL set) the worker is a separate `runworker` process with the same settings.
    """
    if settings.REDIS_URL:
        request.getfixturevalue("cluster_worker")
    settings.OPENAI_API_KEY = PLANTED_KEY
    settings.OPENAI_BASE_URL = upstream.base_url_openai
    settings.OPENAI_MODELS = ["gpt-test", "gpt-other"]
    settings.ANTHROPIC_API_KEY = ""
    settings.OPENAI_COMPATIBLE_SERVERS = []
    settings.LOCAL_MODEL_ENABLED = False
    settings.CHAT_DEFAULT_MODEL = TEST_MODEL
    settings.CHAT_RETRY_BASE_DELAY = 0.05
    settings.CHAT_TIMEOUT_FIRST_TOKEN = 20
    settings.CHAT_TIMEOUT_IDLE = 20
    settings.CHAT_TIMEOUT_TOTAL = 60
    registry.reset()
    channel_layers.backends.clear()
    live._log = None
    jobs._in_process.clear()
    yield settings
    registry.reset()
    channel_layers.backends.clear()
    live._log = None
    jobs._in_process.clear()


@pytest.fixture
def frozen_now(monkeypatch) -> datetime:
    """Django's clock stopped at 23:00 UTC, for rules that depend on time: set rows' timestamps around it."""
    instant = datetime(2030, 6, 1, 23, 0, tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: instant)
    return instant


@pytest.fixture
def make_user(django_user_model) -> Callable[..., Any]:
    def make(username: str = "") -> Any:
        return django_user_model.objects.create_user(username=username or f"u-{uuid.uuid4().hex[:8]}", password="pw")

    return make


async def session_cookie_for(user: Any) -> bytes:
    client = Client()
    await sync_to_async(client.force_login)(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


class ChatSocket:
    """A WebSocket client of the chat protocol, with helpers that read like the protocol doc."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.received: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any]) -> None:
        await self.communicator.send_json_to(frame)

    async def send_raw(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        frame = await self.communicator.receive_json_from(timeout=timeout)
        self.received.append(frame)
        return frame

    async def receive_until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive(timeout=timeout)
                if predicate(frame):
                    return frame

    async def receive_type(self, kind: str, timeout: float = 20) -> dict[str, Any]:
        return await self.receive_until(lambda f: f["type"] == kind, timeout)

    async def send_message(self, conversation: int, content: str, client_id: str = "") -> dict[str, Any]:
        client_id = client_id or uuid.uuid4().hex
        await self.send({"type": "send", "conversation": conversation, "client_id": client_id, "content": content})
        return await self.receive_until(lambda f: f["type"] in {"accepted", "error"})

    async def reply_text(
        self, message_id: int | None = None, timeout: float = 30, *, text: str = ""
    ) -> tuple[str, dict[str, Any]]:
        """Collect a reply from the frames that follow `text`, checking offsets; returns (text, done frame)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive(timeout=timeout)
                if frame["type"] == "snapshot" and frame["message"] is not None:
                    text = frame["message"]["content"]
                elif frame["type"] == "delta" and (message_id is None or frame["message"] == message_id):
                    assert frame["offset"] == len(text), f"gap or overlap at {frame['offset']} != {len(text)}"
                    text += frame["text"]
                elif frame["type"] == "done" and (message_id is None or frame["message"]["id"] == message_id):
                    return text, frame

    async def reply_parts(
        self, message_id: int, timeout: float = 30, *, parts: list[tuple[str, str]] | None = None
    ) -> tuple[list[tuple[str, str]], dict[str, Any]]:
        """Protocol 2: collect a reply's parts by the resume rules, checking every offset within its part;
        returns ([(kind, text)], done frame)."""
        parts = list(parts or [])
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive(timeout=timeout)
                if (
                    frame["type"] == "snapshot"
                    and frame["message"] is not None
                    and frame["message"]["id"] == message_id
                ):
                    parts = [(part["kind"], part["text"]) for part in frame["message"]["parts"]]
                elif frame["type"] == "delta" and frame["message"] == message_id:
                    index = frame["part"]
                    if index == len(parts):
                        parts.append((frame["kind"], ""))
                    kind, text = parts[index]
                    assert index == len(parts) - 1, f"a delta for part {index} after part {len(parts) - 1} began"
                    assert kind == frame["kind"] and frame["offset"] == len(text), (frame, parts)
                    parts[index] = (kind, text + frame["text"])
                elif frame["type"] == "done" and frame["message"]["id"] == message_id:
                    return parts, frame

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
def connect() -> Callable[..., Any]:
    """`async with connect(user) as ws:` a logged-in WebSocket to the real ASGI application."""

    @asynccontextmanager
    async def open_socket(
        user: Any = None, *, origin: bytes = b"http://localhost", protocol: int | None = None
    ) -> AsyncIterator[ChatSocket]:
        from config.asgi import application

        headers = [(b"origin", origin), (b"host", b"localhost")]
        if user is not None:
            headers.append((b"cookie", await session_cookie_for(user)))
        path = "/ws/chat/" if protocol is None else f"/ws/chat/?protocol={protocol}"
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect(timeout=10)
        assert connected, "the socket was refused"
        socket = ChatSocket(communicator)
        hello = await socket.receive()
        assert hello["type"] == "hello"
        socket.received.clear()
        try:
            yield socket
        finally:
            await socket.close()

    return open_socket
