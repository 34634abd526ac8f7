"""HTTP: security headers Django does not set itself, the outage answers, JSON-only API bodies.
WebSocket (ASGI): the handshake's Origin check and its outage answer. ASGI: the upload size guard."""

import io
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, QueryDict
from django.template.loader import render_to_string
from django.utils.decorators import sync_and_async_middleware

from chat import api
from chat.consumers import CLOSE_UNAVAILABLE, LIVE_SEND
from chat.errors import ChatError
from chat.services.attachments import file_too_large

logger = logging.getLogger(__name__)

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[..., Awaitable[None]]], Any]

# No 'unsafe-inline' anywhere: every script and style is a static file, model output is inert text.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def _add_headers(response: HttpResponse) -> HttpResponse:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    return response


class ContentSecurityPolicyMiddleware:
    """Adds the CSP to every response, sync or async (the SSE endpoint is async)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if iscoroutinefunction(self):
            return self._acall(request)
        return _add_headers(self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return _add_headers(await self.get_response(request))


# --- a database outage -------------------------------------------------------------------------


def unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 for a request the database cannot serve: the API's JSON error, or a plain page."""
    if api.is_api_request(request):
        return api.error_response(api.unavailable())
    # Rendered without the request: its context processors would reach for the session, so the database.
    response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = str(api.OUTAGE_RETRY_SECONDS)
    return response


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's session middleware, which also answers a database outage with a 503 (never Django's 500
    page, whose DEBUG form is a traceback): in the view (where the session and user are loaded, lazily)
    and in saving the session after it."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DatabaseError):
            return None
        logger.warning("database unavailable on %s: %s", request.path, exception)
        return unavailable_response(request)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        try:
            return super().process_response(request, response)
        except (DatabaseError, SessionInterrupted) as error:
            # A failed save of an existing session is re-raised by Django as "the session was deleted".
            if not _caused_by_database(error):
                raise
            logger.warning("could not save the session on %s: %s", request.path, error)
            return unavailable_response(request)


def _caused_by_database(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, DatabaseError):
            return True
        error = error.__cause__ or error.__context__
    return False


# --- API bodies are JSON -----------------------------------------------------------------------


@sync_and_async_middleware
def json_api_bodies(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """An API body is JSON, never a form: CSRF checking (which reads a POST's form fields before the view
    runs) must not parse it as one. A bad multipart boundary, a body over DATA_UPLOAD_MAX_MEMORY_SIZE or
    too many fields would otherwise answer Django's HTML 400; the API's own limits answer in JSON."""

    def no_form(request: HttpRequest) -> None:
        if api.is_api_request(request):
            request.POST = QueryDict()

    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            no_form(request)
            return await get_response(request)

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            no_form(request)
            return get_response(request)

    return middleware


# --- WebSocket handshakes (ASGI) ---------------------------------------------------------------


def handshake_origin_allowed(scope: dict[str, Any]) -> bool:
    """The Origin is this site's own (scheme, host and port of the request, the host in ALLOWED_HOSTS)
    or listed in CSRF_TRUSTED_ORIGINS: the rule Django's CSRF check applies to a POST's Origin."""
    # Django's own request object reads the Host (or X-Forwarded-Host) header and the proxy's
    # SECURE_PROXY_SSL_HEADER exactly as it does for pages.
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    request = ASGIRequest({**scope, "method": "GET", "scheme": scheme}, io.BytesIO())
    origin = request.headers.get("Origin")
    if not origin:
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    try:
        return origin == f"{request.scheme}://{request.get_host()}"
    except DisallowedHost:
        return False


class WebSocketOriginValidator:
    """Refuses (HTTP 403) a WebSocket handshake whose Origin is not allowed (`handshake_origin_allowed`)."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and not handshake_origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


class WebSocketOutageGuard:
    """A database outage while a socket opens (its session and user are loaded first): the socket is
    accepted, then closed with 4503 "unavailable, retry", instead of a bare HTTP 500.

    It also leaves the server's `send` in the scope (LIVE_SEND): the consumer sends live frames with it,
    past the send wrappers of this guard and of Channels' session middleware, which only act on an
    accept or a close (a live frame is neither). At 50 tokens a second a socket gets tens of frames a
    second, and each wrapper was a coroutine call per frame."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        connected = answered = False

        async def tracked_receive() -> dict[str, Any]:
            nonlocal connected
            message = await receive()
            connected = connected or message["type"] == "websocket.connect"
            return message

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal answered
            answered = answered or message["type"] in {"websocket.accept", "websocket.close"}
            await send(message)

        try:
            return await self.application({**scope, LIVE_SEND: send}, tracked_receive, tracked_send)
        except DatabaseError as error:
            if answered:
                raise
            logger.warning("database unavailable while a socket opened: %s", error)
        if not connected:
            await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_UNAVAILABLE, "reason": "unavailable, retry"})


# --- Upload bodies (ASGI) ---------------------------------------------------------------------

UPLOAD_PATH = re.compile(r"^/api/conversations/\d+/attachments$")
# The multipart envelope around one file: its headers and boundaries.
UPLOAD_OVERHEAD_BYTES = 64 * 1024


class UploadSizeGuard:
    """Refuses an attachment upload larger than one file may be before Django reads it: Django's ASGI
    handler spools a whole body to disk before any view runs. A body that says its length is refused at
    once (413); one sent without a length is cut off when it passes the limit."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not UPLOAD_PATH.match(scope["path"]):
            return await self.application(scope, receive, send)
        limit = settings.CHAT_ATTACHMENT_MAX_BYTES + UPLOAD_OVERHEAD_BYTES
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await _refuse(send, ChatError("file_too_large", _file_too_large_message()))
        received = 0
        over = answered = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal received, over
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                over = True
                return {"type": "http.disconnect"}  # Django stops reading and answers nothing
            return message

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal answered
            answered = True
            await send(message)

        await self.application(scope, counted_receive, tracked_send)
        if over and not answered:
            await _refuse(send, ChatError("file_too_large", _file_too_large_message()))


def _file_too_large_message() -> str:
    return file_too_large(settings.CHAT_ATTACHMENT_MAX_BYTES).message


async def _refuse(send: Any, error: ChatError) -> None:
    response = api.error_response(error)
    headers = [(b"content-type", b"application/json"), (b"x-content-type-options", b"nosniff")]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
