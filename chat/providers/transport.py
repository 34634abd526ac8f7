"""HTTP plumbing shared by the SDK-based providers: clients, timeouts, and errors in the app's terms."""

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import suppress
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import anthropic
import httpx2
from django.conf import settings
from django.utils import timezone

from chat.providers.base import ProviderError

# Error types and codes providers put in error bodies (OpenAI, vLLM, Anthropic), by our code.
_ERROR_KINDS = (
    ("auth", ("authentication", "permission", "invalid_api_key", "unauthorized", "forbidden")),
    ("rate_limited", ("rate_limit", "too_many_requests", "insufficient_quota")),
    ("overloaded", ("overloaded", "service_unavailable", "server_busy")),
    ("timeout", ("timeout",)),
    ("bad_request", ("invalid_request", "badrequest", "bad_request", "not_found", "too_large", "context_length")),
)


logger = logging.getLogger(__name__)
Client = TypeVar("Client")


def request_timeout() -> httpx2.Timeout:
    """Read per request, so a settings change applies at once; `read` is the longest gap between chunks."""
    return httpx2.Timeout(settings.CHAT_TIMEOUT_IDLE, connect=settings.CHAT_TIMEOUT_CONNECT)


def http_client() -> httpx2.AsyncClient | None:
    """The HTTP client both SDKs send with (CHAT_PROVIDER_TRANSPORT): aiohttp's, which reads a streamed body
    with far less Python per chunk (docs/benchmarks.md, *Provider transport*), or None: the SDK's own
    httpx2 client. Anthropic's aiohttp adapter serves the OpenAI SDK too: OpenAI's (openai 3.54) maps
    every aiohttp connection error, a refused connection included, to ConnectTimeout, a "timeout" in
    our terms (tests/test_provider_contract.py would see it)."""
    if settings.CHAT_PROVIDER_TRANSPORT == "httpx":
        return None
    return anthropic.DefaultAioHttpClient(timeout=request_timeout())


class _LoopClients:
    """The SDK clients made on one event loop, and the async generator that closes them with it."""

    def __init__(self) -> None:
        self.clients: dict[object, Any] = {}
        self.closer = _closed_with_the_loop(self)
        # Run it to its `yield` now: the running loop then holds a suspended async generator, which
        # asyncio.run, asyncio.Runner (pytest-asyncio's loops) and asgiref's async_to_sync close
        # (shutdown_asyncgens) before they close the loop, so its `finally` closes the clients first.
        with suppress(StopIteration):
            self.closer.__anext__().send(None)


_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = weakref.WeakKeyDictionary()


async def _closed_with_the_loop(opened: _LoopClients) -> AsyncIterator[None]:
    try:
        yield
    finally:
        # Forgotten first: the generator refers to its loop, which would otherwise never be collected.
        _loop_clients.pop(asyncio.get_running_loop(), None)
        for client in opened.clients.values():
            try:
                await client.close()
            except Exception as exc:  # noqa: BLE001 - one client failing to close must not keep the others open
                logger.warning("could not close a provider client (%s)", type(exc).__name__)


def loop_client(owner: object, make: Callable[[], Client]) -> Client:
    """`owner`'s SDK client on the running event loop (pooled connections belong to the loop that opened
    them), made on first use; closed by close_clients() or when the loop shuts down, whichever is first."""
    loop = asyncio.get_running_loop()
    opened = _loop_clients.get(loop)
    if opened is None:
        opened = _loop_clients[loop] = _LoopClients()
    client = opened.clients.get(owner)
    if client is None:
        client = opened.clients[owner] = make()
    return client


async def close_clients() -> None:
    """Close every SDK client the running loop opened (aiohttp's sessions, the pooled connections)."""
    opened = _loop_clients.get(asyncio.get_running_loop())
    if opened is not None:
        await opened.closer.aclose()


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The server's requested wait: `retry-after-ms`, else `retry-after` in seconds or as an HTTP date."""
    try:
        if milliseconds := headers.get("retry-after-ms"):
            return max(float(milliseconds) / 1000, 0.0)
        if value := headers.get("retry-after"):
            try:
                return max(float(value), 0.0)
            except ValueError:
                return max((parsedate_to_datetime(value) - timezone.now()).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None
    return None


def error_for_status(status: int, headers: Mapping[str, str] | None = None) -> ProviderError:
    """An HTTP error status in the app's terms; the status is safe detail for the user."""
    if status in (401, 403):
        code = "auth"
    elif status == 429:
        code = "rate_limited"
    elif status in (503, 529):
        code = "overloaded"
    elif status == 408:
        code = "timeout"
    elif status >= 500 or status == 409:
        code = "upstream_error"
    else:
        code = "bad_request"
    retry_after = retry_after_seconds(headers) if headers is not None else None
    return ProviderError(code, f"{ProviderError.DEFAULT_MESSAGES[code]} (HTTP {status})", retry_after=retry_after)


def error_for_kind(*kinds: object) -> ProviderError:
    """An error reported inside a stream, from its `type` and `code` fields (a number is an HTTP status)."""
    for kind in kinds:
        if isinstance(kind, int) and 400 <= kind < 600:
            return error_for_status(kind)
    words = " ".join(str(kind).lower() for kind in kinds if kind)
    for code, markers in _ERROR_KINDS:
        if any(marker in words for marker in markers):
            return ProviderError(code)
    return ProviderError("upstream_error")


def error_for_transport(exc: httpx2.HTTPError) -> ProviderError:
    """A network failure: the SDKs do not wrap those raised while reading a stream."""
    return ProviderError("timeout" if isinstance(exc, httpx2.TimeoutException) else "connection")


async def sse_data(response: Any) -> AsyncIterator[bytes]:
    """The `data:` payloads of a server-sent event stream (an SDK's raw streaming response); other fields
    (event:, error:, comments) are skipped."""
    pending = b""
    async for chunk in response.iter_bytes():
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip()
    if pending.startswith(b"data:"):
        yield pending[5:].strip()
