"""HTTP plumbing shared by the SDK-based providers: clients, timeouts, and errors in the app's terms."""

from collections.abc import AsyncIterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

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


def request_timeout() -> httpx2.Timeout:
    """Read per request, so a settings change applies at once; `read` is the longest gap between chunks."""
    return httpx2.Timeout(settings.CHAT_TIMEOUT_IDLE, connect=settings.CHAT_TIMEOUT_CONNECT)


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
