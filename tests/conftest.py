"""Shared fixtures. One section per concern; keep each section's fixtures together."""

import contextlib
from collections.abc import Awaitable, Callable, Iterator

import pytest

from chat.providers.base import ReplyStream
from tests.fake_upstream import FakeUpstream
from tests.harness import communicators

communicators.install()

pytest_plugins = [
    "tests.engine_fixtures",
    "tests.cluster_fixtures",
    "tests.browser_fixtures",
    "tests.api_fixtures",
    "tests.attachment_fixtures",
]

# --- Providers: the fake upstream HTTP server -----------------------------------------------------


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    """One fake provider server on 127.0.0.1 for the whole run; use `upstream` in tests."""
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(fake_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    """The fake provider server with no scenarios scripted and no requests recorded."""
    fake_upstream.reset()
    yield fake_upstream
    fake_upstream.reset()


@pytest.fixture
def read_reply() -> Callable[..., Awaitable[str]]:
    """Reads a provider stream to its end and closes it; returns the answer text. Pass a list to see the
    text deltas received before a failure, and another for the reasoning deltas."""

    async def read(stream: ReplyStream, received: list[str] | None = None, reasoning: list[str] | None = None) -> str:
        received = [] if received is None else received
        reasoning = [] if reasoning is None else reasoning
        async with stream:
            async for delta in stream:
                (received if delta.kind == "text" else reasoning).append(delta.text)
        return "".join(received)

    return read


@pytest.fixture(autouse=True)
def database_cleanup_on() -> None:
    """Every test starts with database_sync_to_async handing its connections back (see
    tests/harness/communicators.py for how channels' test clients could leave that off for good)."""
    communicators.reset()


@pytest.fixture(autouse=True)
def group_policies_read_afresh() -> None:
    """Every test reads group policies from its own database: a rolled-back test fires no signal, and
    the next test's user may have the same id."""
    from chat import teams

    teams.policies_forget()


def pytest_unconfigure(config):
    """The test database is a SQLite file in WAL mode (config/settings.py): Django deletes the file at the
    end, and its -wal and -shm companions go with it here (the worker's thread may still hold them open)."""
    import os

    from django.conf import settings

    name = settings.DATABASES["default"].get("TEST", {}).get("NAME") if settings.configured else None
    for path in (f"{name}-wal", f"{name}-shm") if name and not name.startswith("file:") else ():
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


# --- Modes ---------------------------------------------------------------------------------------


def pytest_collection_modifyitems(config, items):
    """In cluster mode (REDIS_URL set) only tests marked for it are collected; the rest ran embedded."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    keep = [item for item in items if item.get_closest_marker("cluster") or item.get_closest_marker("cluster_only")]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
