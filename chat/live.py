"""The live log of replies in flight: text streamed so far and where each frame ended.

The worker appends to it before publishing a frame, so a client that subscribes, then reads a
snapshot from here, misses nothing: every frame is either in the snapshot or arrives after it.
Embedded mode keeps it in process memory (the worker runs in the server process); with Redis it
lives in Redis, shared by every Daphne process and worker. The database stays the truth: the log
only covers the second between checkpoints, and expires on its own.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings

LOG_TTL_SECONDS = 3600


@dataclass(frozen=True)
class LiveState:
    content: str
    seq: int


class LiveLog(Protocol):
    async def begin(self, message_id: int) -> None: ...
    async def append(self, message_id: int, text: str, end_offset: int) -> None: ...
    async def state(self, message_id: int) -> LiveState | None: ...
    async def offset_after(self, message_id: int, seq: int) -> int | None: ...
    async def end(self, message_id: int) -> None: ...


@dataclass
class _Reply:
    parts: list[str] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)


class MemoryLiveLog:
    def __init__(self) -> None:
        self._replies: dict[int, _Reply] = {}

    async def begin(self, message_id: int) -> None:
        self._replies[message_id] = _Reply()

    async def append(self, message_id: int, text: str, end_offset: int) -> None:
        reply = self._replies.setdefault(message_id, _Reply())
        reply.parts.append(text)
        reply.ends.append(end_offset)

    async def state(self, message_id: int) -> LiveState | None:
        reply = self._replies.get(message_id)
        if reply is None:
            return None
        content = "".join(reply.parts)
        reply.parts[:] = [content]  # keep later joins cheap
        return LiveState(content=content, seq=len(reply.ends))

    async def offset_after(self, message_id: int, seq: int) -> int | None:
        reply = self._replies.get(message_id)
        if reply is None or seq > len(reply.ends) or seq < 0:
            return None
        return reply.ends[seq - 1] if seq else 0

    async def end(self, message_id: int) -> None:
        self._replies.pop(message_id, None)


class RedisLiveLog:
    """Two keys a reply: its text (APPEND) and the end offset of every frame (RPUSH); seq = list length."""

    def __init__(self, url: str, prefix: str) -> None:
        self._url = url
        self._prefix = prefix
        self._clients: dict[asyncio.AbstractEventLoop, object] = {}

    def _client(self):  # noqa: ANN202 - redis.asyncio.Redis, imported lazily (embedded mode needs no redis)
        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = redis.Redis.from_url(self._url, health_check_interval=10, retry_on_timeout=True)
            self._clients[loop] = client
        return client

    def _keys(self, message_id: int) -> tuple[str, str]:
        return f"{self._prefix}:live:{message_id}:text", f"{self._prefix}:live:{message_id}:ends"

    async def begin(self, message_id: int) -> None:
        text_key, ends_key = self._keys(message_id)
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.delete(text_key, ends_key).set(text_key, "", ex=LOG_TTL_SECONDS)
            await pipe.execute()

    async def append(self, message_id: int, text: str, end_offset: int) -> None:
        text_key, ends_key = self._keys(message_id)
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.append(text_key, text.encode()).rpush(ends_key, end_offset).expire(ends_key, LOG_TTL_SECONDS)
            await pipe.execute()

    async def state(self, message_id: int) -> LiveState | None:
        text_key, ends_key = self._keys(message_id)
        async with self._client().pipeline(transaction=True) as pipe:
            text, seq = await pipe.get(text_key).llen(ends_key).execute()
        if text is None:
            return None
        return LiveState(content=text.decode(), seq=int(seq))

    async def offset_after(self, message_id: int, seq: int) -> int | None:
        text_key, ends_key = self._keys(message_id)
        if seq == 0:
            return 0 if await self._client().exists(text_key) else None
        end = await self._client().lindex(ends_key, seq - 1)
        return int(end) if end is not None else None

    async def end(self, message_id: int) -> None:
        await self._client().delete(*self._keys(message_id))


_log: LiveLog | None = None


def live_log() -> LiveLog:
    global _log
    if _log is None:
        if settings.REDIS_URL:
            _log = RedisLiveLog(settings.REDIS_URL, settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"])
        else:
            _log = MemoryLiveLog()
    return _log
