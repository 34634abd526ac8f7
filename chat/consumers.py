"""The WebSocket endpoint: parse a frame, check it, hand it to chat.actions; relay live frames."""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest
from django.utils import translation
from django.utils.translation import gettext as _

from chat import actions, events, sessions
from chat.dispatch import DispatchWithoutCleanup
from chat.errors import ChatError
from chat.events import Frame
from chat.fanout import Inbox, fanout
from chat.limits import FrameRate

logger = logging.getLogger(__name__)

CLOSE_BAD_REQUEST = 4400  # the URL asked for a protocol version this server does not speak
CLOSE_UNAUTHENTICATED = 4401
CLOSE_SESSION_ENDED = 4403
CLOSE_FLOODING = 4429
CLOSE_UNAVAILABLE = 4503  # the database could not load the session (chat.middleware.WebSocketOutageGuard), or Redis
# did not confirm the subscription to the user's events (chat.fanout)
# The scope key under which chat.middleware.WebSocketOutageGuard leaves the server's own `send`, for live frames.
LIVE_SEND = "chat.live_send"


class ChatConsumer(DispatchWithoutCleanup, AsyncWebsocketConsumer):
    """One browser tab. It follows the user's sidebar and any conversations it subscribes to.

    Every event it gets (the user's sidebar and `session.ended`, the live frames of the conversations
    it follows) comes from the process's fan-out (chat.fanout: one subscription per group and
    process) into this socket's inbox: it has no channel-layer channel of its own to receive on."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Channels' AsyncConsumer.__call__ (4.3), with the inbox in place of the channel layer and of
        # `await_many_dispatch`: the client's messages join the inbox (first in line, never dropped), and
        # one loop handles everything one at a time, a client frame before the events waiting (a
        # `subscribe` sends its snapshot before any live frame that arrived meanwhile).
        self.scope = scope
        self.inbox = Inbox()
        self.channel_name = f"socket.{uuid.uuid4().hex}"  # names this socket in `answered` frames
        self.base_send = send
        # Live frames go straight to the server (chat.middleware.LIVE_SEND), past the send wrappers.
        self.live_send = scope.get(LIVE_SEND, send)
        client = asyncio.create_task(self._take_client_messages(receive))
        try:
            with contextlib.suppress(StopConsumer):
                while True:
                    await self.dispatch(await self.inbox.get())
        finally:
            client.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client

    async def _take_client_messages(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        while True:
            message = await receive()
            self.inbox.put_own(message)
            if message["type"] == "websocket.disconnect":
                return

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept first: a close before accepting is an HTTP 403, the same answer as a foreign Origin,
            # and the client could not tell "log in" from "wrong site".
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        try:
            query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
            self.protocol = events.protocol_from(query.get("protocol", [None])[-1])
        except ChatError as error:
            await self.accept()
            await self.send_frame(events.error_frame(error))
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        self.fanout = fanout()
        try:
            # The sidebar's frames on the same fan-out as the conversations': one Redis connection, so
            # they keep the order they were published in (`conversation` running, the reply, `done`...).
            await self.fanout.follow(events.user_group(user.pk), self.inbox)
        except ChatError:  # Redis did not confirm the subscription: the client retries, as in an outage
            await self.accept()
            await self.close(code=CLOSE_UNAVAILABLE)
            return
        self.user = user
        # The language of the error frames this socket gets: the page's (cookie, else Accept-Language).
        self.language = _language(self.scope)
        self.following: set[int] = set()
        # Per message: the last seq a snapshot covered; live deltas up to it are dropped.
        self.covered: dict[int, int] = {}
        self.frame_rate = FrameRate(settings.CHAT_WS_FRAMES_PER_SECOND)
        self.session_watch = asyncio.create_task(self._watch_session(self.scope["session"].session_key))
        await self.accept()
        limits = {
            "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
            "max_frame_bytes": settings.CHAT_WS_MAX_FRAME_BYTES,
        }
        await self.send_frame(events.hello_frame(user_id=user.pk, limits=limits, protocol=self.protocol))

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Channels' own ends with a connection cleanup on the one database thread (chat/dispatch.py), and
        # leaves channel-layer groups this consumer never joins (it follows through chat/fanout.py).
        await self.disconnect(message["code"])
        raise StopConsumer

    async def disconnect(self, code: int) -> None:
        # The reply goes on without us: closing a tab never stops a generation.
        if not hasattr(self, "user"):
            return
        self.session_watch.cancel()
        await self.fanout.unfollow(events.user_group(self.user.pk), self.inbox)
        for conversation_id in self.following:
            await self.fanout.unfollow(events.conversation_group(conversation_id), self.inbox)

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] == "chat.frame":  # the live frames, the most frequent by far
            await self.chat_frame(message)
        else:
            await super().dispatch(message)

    async def send_frame(self, frame: Frame) -> None:
        await self.send(text_data=events.encode(frame))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        with translation.override(self.language):
            await self._receive(text_data, bytes_data)

    async def _receive(self, text_data: str | None, bytes_data: bytes | None) -> None:
        ref = None
        conversation_id = None
        try:
            self.frame_rate.take()
            frame = _parse(text_data, bytes_data)
            ref = frame.get("client_id") if isinstance(frame.get("client_id"), str) else frame["type"]
            conversation_id = frame.get("conversation") if isinstance(frame.get("conversation"), int) else None
            handler = HANDLERS.get(frame["type"])
            if handler is None:
                raise ChatError("unknown_type", f"Unknown frame type {frame['type']!r}."[:200])
            await handler(self, frame)
        except ChatError as error:
            await self.send_frame(events.error_frame(error, ref=ref, conversation_id=conversation_id))
            if self.frame_rate.flooding:
                await self.close(code=CLOSE_FLOODING)
        except DatabaseError:
            logger.warning("database error while handling a frame", exc_info=True)
            await self.send_frame(
                events.error_frame(ChatError("unavailable"), ref=ref, conversation_id=conversation_id)
            )

    # --- client frames -----------------------------------------------------------------------

    async def on_subscribe(self, frame: Frame) -> None:
        conversation = await actions.conversation_for(self.user, frame.get("conversation"))
        position = _position(frame.get("after"))
        with_path = frame.get("path", False)
        if not isinstance(with_path, bool):
            raise ChatError("invalid", "`path` must be true or false.")
        await self._follow(conversation.pk)
        if with_path:
            await self.send_frame(await actions.current_path(conversation))
        catch_up, message_id, seq = await actions.catch_up(conversation.pk, position, protocol=self.protocol)
        if message_id is not None:
            self.covered[message_id] = seq
        await self.send_frame(catch_up)

    async def on_unsubscribe(self, frame: Frame) -> None:
        conversation = await actions.conversation_for(self.user, frame.get("conversation"))
        if conversation.pk in self.following:
            self.following.discard(conversation.pk)
            await self.fanout.unfollow(events.conversation_group(conversation.pk), self.inbox)

    async def on_start(self, frame: Frame) -> None:
        """send, regenerate, retry, edit, continue: each starts a reply."""
        # Followed before the new reply's frames are published, so they reach this tab too.
        conversation_id, kind = frame.get("conversation"), frame["type"]
        started = await actions.start_reply(self.user, conversation_id, kind=kind, fields=frame, follow=self._follow)
        await self.send_frame(started.frame(client_id=frame["client_id"]))

    async def on_switch(self, frame: Frame) -> None:
        """Show another branch. The answer is its `path` frame; other followers get it too."""
        conversation = await actions.conversation_for(self.user, frame.get("conversation"))
        await self._follow(conversation.pk)
        message = frame.get("message")
        path = await actions.switch_branch(self.user, conversation.pk, message=message, answered=self.channel_name)
        await self.send_frame(path)

    async def on_cancel(self, frame: Frame) -> None:
        await actions.stop_reply(self.user, frame.get("conversation"))

    async def on_feedback(self, frame: Frame) -> None:
        """Rate a reply (`rating`: up, down, or null to remove it); the answer is the `feedback` frame."""
        if "rating" not in frame:
            raise ChatError("invalid", _("`rating` must be up, down or null."), field="rating")
        answer = await actions.give_feedback(
            self.user,
            frame.get("conversation"),
            message=frame.get("message"),
            rating=frame["rating"],
            comment=frame.get("comment"),
            answered=self.channel_name,
        )
        await self.send_frame(answer)

    async def on_ping(self, frame: Frame) -> None:
        await self.send_frame(events.pong_frame())

    async def _follow(self, conversation_id: int) -> None:
        """Follow a conversation's live frames; returns once they are subscribed to (then read a snapshot)."""
        if conversation_id not in self.following:
            await self.fanout.follow(events.conversation_group(conversation_id), self.inbox)
            self.following.add(conversation_id)

    # --- fan-out events ----------------------------------------------------------------

    async def chat_frame(self, event: dict[str, Any]) -> None:
        if event["kind"] == "delta" and event["seq"] <= self.covered.get(event["message"], 0):
            return
        if event.get("answered") == self.channel_name:  # this socket asked: it has the frame as its answer
            return
        if self.protocol < 2 and not events.text_only(event):
            return
        if event["kind"] == "done":
            self.covered.pop(event["message"], None)
        await self.live_send({"type": "websocket.send", "text": event["json"]})

    async def fanout_resync(self, event: dict[str, Any]) -> None:
        """Live frames were lost (Redis reconnected, or this socket fell far behind): a fresh snapshot of
        each conversation concerned, as after a `subscribe`, and live frames go on from it."""
        for conversation_id in list(self.following):
            if event["group"] not in (None, events.conversation_group(conversation_id)):
                continue
            try:
                catch_up, message_id, seq = await actions.catch_up(conversation_id, None, protocol=self.protocol)
            except DatabaseError:
                logger.warning("could not re-snapshot conversation %s for a socket", conversation_id, exc_info=True)
                continue
            if message_id is not None:
                self.covered[message_id] = seq
            await self.send_frame(catch_up)

    async def _watch_session(self, session_key: str | None) -> None:
        """Close the socket once its login session has expired or was ended elsewhere."""
        interval = settings.CHAT_SESSION_CHECK_SECONDS
        check = database_sync_to_async(sessions.session_user_is)
        while interval > 0:
            await asyncio.sleep(interval)
            try:
                if not await check(session_key=session_key, user_id=self.user.pk):
                    await self.close(code=CLOSE_SESSION_ENDED)
                    return
            except DatabaseError:
                logger.warning("could not re-check a socket's session", exc_info=True)

    async def session_ended(self, event: dict[str, Any]) -> None:
        if event.get("session_key") == getattr(self.scope.get("session"), "session_key", None):
            await self.close(code=CLOSE_SESSION_ENDED)


def _parse(text_data: str | None, bytes_data: bytes | None) -> Frame:
    if text_data is None:
        raise ChatError("bad_json", "Send frames as JSON text, not binary.")
    limit = settings.CHAT_WS_MAX_FRAME_BYTES
    # The limit is in bytes: a character can take four of them in UTF-8.
    if len(text_data) > limit or len(text_data.encode(errors="surrogatepass")) > limit:
        raise ChatError("frame_too_large", f"Frames are limited to {limit:,} bytes.")
    try:
        frame = orjson.loads(text_data)
    except orjson.JSONDecodeError:
        raise ChatError("bad_json") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ChatError("invalid", "A frame is a JSON object with a string `type`.")
    return frame


def _position(after: object) -> actions.Position | None:
    if after is None:
        return None
    if not isinstance(after, dict) or not all(type(after.get(k)) is int for k in ("message", "seq")):  # not bool
        raise ChatError("invalid", "`after` must be an object with integer `message` and `seq`.")
    return actions.Position(message_id=after["message"], seq=after["seq"])


HANDLERS: dict[str, Callable[[ChatConsumer, Frame], Awaitable[None]]] = {
    "subscribe": ChatConsumer.on_subscribe,
    "unsubscribe": ChatConsumer.on_unsubscribe,
    **dict.fromkeys(actions.REPLY_STARTERS, ChatConsumer.on_start),
    "switch": ChatConsumer.on_switch,
    "cancel": ChatConsumer.on_cancel,
    "feedback": ChatConsumer.on_feedback,
    "ping": ChatConsumer.on_ping,
}


def _language(scope: dict[str, Any]) -> str:
    """The language Django's LocaleMiddleware would pick for this handshake's HTTP request."""
    request = HttpRequest()
    request.COOKIES = scope.get("cookies", {})
    headers = dict(scope.get("headers", []))
    request.META["HTTP_ACCEPT_LANGUAGE"] = headers.get(b"accept-language", b"").decode("latin-1")
    return translation.get_language_from_request(request)
