"""Fixtures for the OpenAI-compatible API: the app served over loopback, API keys, and the official
openai SDK as the client (sync and async), never retrying on its own so every answer is seen."""

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from django.db import connection
from django.db.backends.signals import connection_created

from chat import services
from tests.harness.servers import ThreadedServer


def _readers_take_no_table_locks(connection: Any, **kwargs: Any) -> None:
    """Embedded, the test database is SQLite in memory with a shared cache, where a read of a table the
    worker is writing fails at once ("database table is locked": shared-cache table locks are not waited
    for, unlike the file database's busy timeout). The server, the worker and the test read and write
    from several threads at once here, so readers read without table locks, as WAL readers do."""
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA read_uncommitted = 1")


@pytest.fixture
def v1_url(engine) -> Iterator[str]:
    """The base URL of /v1 on a real server of this process (with the engine's settings)."""
    from config.asgi import application

    connection_created.connect(_readers_take_no_table_locks)
    if connection.connection is not None:
        _readers_take_no_table_locks(connection)
    server = ThreadedServer(application).start()
    try:
        yield f"{server.url}/v1"
    finally:
        server.stop()
        connection_created.disconnect(_readers_take_no_table_locks)


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
