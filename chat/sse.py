"""The SSE stream of a conversation: the same frames as the WebSocket, one `event:` each, with
`id: <message>:<seq>` so a reconnecting client resumes with `Last-Event-ID` (docs/protocol.md)."""

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_http_methods

from chat import actions, events, sessions
from chat.api import api_view, unavailable
from chat.errors import ChatError
from chat.fanout import Inbox, fanout

NO_REPLY_ID = 0  # database ids start at 1
STREAM_PATH = re.compile(r"/api/conversations/\d+/events|/v1/chat/completions")

logger = logging.getLogger(__name__)


def parse_last_event_id(value: str | None) -> actions.Position | None:
    """`<message id>:<seq>`, as sent in every `id:` line; anything else means "send a snapshot"."""
    if not value:
        return None
    message, _, seq = value.strip().partition(":")
    if not (message.isdigit() and seq.isdigit()):
        return None
    return actions.Position(message_id=int(message), seq=int(seq))


def sse_event(kind: str, data: str, *, message_id: int | None = None, seq: int | None = None) -> bytes:
    lines = [f"event: {kind}"]
    if message_id is not None:
        lines.insert(0, f"id: {message_id}:{seq or 0}")
    lines.append(f"data: {data}")
    return ("\n".join(lines) + "\n\n").encode()


@require_http_methods(["GET"])
@api_view
async def conversation_stream(request: HttpRequest, user: Any, body: dict[str, Any], pk: int) -> HttpResponse:
    target = await actions.conversation_for(user, pk)
    protocol = events.protocol_from(request.GET.get("protocol"))
    position = parse_last_event_id(request.headers.get("Last-Event-ID") or request.GET.get("last_event_id"))
    stream = _event_stream(
        target.pk, position, session_key=request.session.session_key, user_id=user.pk, protocol=protocol
    )
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def release_database() -> None:
    """An SSE stream lasts for hours: the thread its database work ran in (the process's shared one,
    config.asgi.StreamingASGIHandler) must not keep a connection open for it meanwhile."""
    await database_sync_to_async(connections.close_all)()


async def next_event(inbox: Inbox) -> dict[str, Any] | None:
    """The inbox's next event, or None when none came for a heartbeat's time.

    Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that lands as the wait completes
    (cpython gh-86296), so a client's disconnect (Django cancels the stream) would be lost and the stream
    would go on without it, to the reply's end or forever. `asyncio.timeout` never swallows one.
    """
    try:
        async with asyncio.timeout(settings.CHAT_SSE_HEARTBEAT_SECONDS):
            return await inbox.get()
    except TimeoutError:
        return None


def is_stream_path(path: str) -> bool:
    """Whether a request may become a long-lived stream (a conversation's events, an API completion):
    config.asgi serves those outside Django's per-request thread (see StreamingASGIHandler)."""
    return STREAM_PATH.fullmatch(path) is not None


async def _snapshot(
    conversation_id: int, position: actions.Position | None, protocol: int
) -> tuple[bytes, int | None, int]:
    """The catch-up event (every snapshot has an id; with no reply yet it is `0:0`, which names no
    reply: resuming from it answers with a snapshot again), the message it covers and up to which seq."""
    frame, message_id, covered = await actions.catch_up(conversation_id, position, protocol=protocol)
    await release_database()
    snapshot_id = message_id if message_id is not None else NO_REPLY_ID
    return sse_event(frame["type"], events.encode(frame), message_id=snapshot_id, seq=covered), message_id, covered


async def _event_stream(
    conversation_id: int, position: actions.Position | None, *, session_key: str | None, user_id: int, protocol: int
) -> AsyncIterator[bytes]:
    inbox = Inbox()
    live = fanout()
    group = events.conversation_group(conversation_id)
    # Logout sends `session.ended` to this group; expiry is caught by the periodic re-check.
    ended_group = events.session_group(session_key or "")
    next_check = time.monotonic() + settings.CHAT_SESSION_CHECK_SECONDS
    try:
        await live.follow(group, inbox)
        await live.follow(ended_group, inbox)
        snapshot, message_id, covered = await _snapshot(conversation_id, position, protocol)
        yield b"retry: 2000\n\n" + snapshot
        while True:
            if settings.CHAT_SESSION_CHECK_SECONDS > 0 and time.monotonic() >= next_check:
                next_check = time.monotonic() + settings.CHAT_SESSION_CHECK_SECONDS
                still_in = await database_sync_to_async(sessions.session_user_is)(
                    session_key=session_key, user_id=user_id
                )
                await release_database()
                if not still_in:
                    yield sse_event("error", events.encode(events.error_frame(ChatError("session_ended"))))
                    return
            event = await next_event(inbox)
            if event is None:
                yield b": heartbeat\n\n"
                continue
            if event.get("type") == "session.ended":
                yield sse_event("error", events.encode(events.error_frame(ChatError("session_ended"))))
                return
            if event.get("type") == "fanout.resync":
                snapshot, message_id, covered = await _snapshot(conversation_id, None, protocol)
                yield snapshot
                continue
            if event.get("type") != "chat.frame":
                continue
            if event["kind"] == "delta" and event["message"] == message_id and event["seq"] <= covered:
                continue
            if protocol < 2 and not events.text_only(event):
                continue
            yield sse_event(event["kind"], event["json"], message_id=event.get("message"), seq=event.get("seq"))
    except DatabaseError:
        # The database went away mid-stream (catch-up, session re-check): say so and end the stream; the
        # browser reconnects after `retry` with its Last-Event-ID and resumes where it was.
        logger.warning("database error in an SSE stream; ending it with `unavailable`")
        yield sse_event("error", events.encode(events.error_frame(unavailable())))
    except ChatError as error:  # the fan-out could not subscribe (Redis away): the browser retries
        yield sse_event("error", events.encode(events.error_frame(error)))
    finally:
        await live.unfollow(group, inbox)
        await live.unfollow(ended_group, inbox)
