"""Fixtures for the OpenAI-compatible API: the app served over loopback, API keys, and the official
openai SDK as the client (sync and async), never retrying on its own so every answer is seen."""

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from chat import services
from tests.harness.servers import ThreadedServer


@pytest.fixture
def v1_url(engine) -> Iterator[str]:
    """The base URL of /v1 on a real server of this process (with the engine's settings)."""
    from config.asgi import application

    server = ThreadedServer(application).start()
    try:
        yield f"{server.url}/v1"
    finally:
        server.stop()


@pytest.fixture
def make_key(make_user) -> Callable[..., str]:
    """`make_key(user=None, **fields)`: a new API key's secret (a new user's unless one is given)."""

    def make(user: Any = None, name: str = "test key", **fields: Any) -> str:
        owner = user or make_user()
        return services.api_key_create(user=owner, name=name, **fields).secret

    return make


@pytest.fixture
def sdk(v1_url) -> Callable[..., openai.OpenAI]:
    def client(api_key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=v1_url, api_key=api_key, max_retries=0, timeout=30)

    return client


@pytest.fixture
def async_sdk(v1_url) -> Callable[..., openai.AsyncOpenAI]:
    def client(api_key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=v1_url, api_key=api_key, max_retries=0, timeout=30)

    return client
