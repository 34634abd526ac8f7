"""The live log of replies in flight: text streamed so far and where each frame ended.

The worker appends to it before publishing a frame, so a client that subscribes, then reads a
snapshot from here, misses nothing: every frame is either in the snapshot or arrives after it.
Embedded mode keeps it in process memory (the worker runs in the server process); with Redis it
lives in Redis, shared by every Daphne process and worker. The database stays the truth: the log
only covers the second between checkpoints, and expires on its own.
"""

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

from chat.per_loop import PerLoop
from chat.redis_clients import key, log_client

LOG_TTL_SECONDS = 3600

# Append a frame and publish it, in that order, if it is the next one the log expects (the writer's
# seq); otherwise change nothing and return -1, and the writer rewrites the log before publishing.
# The TTL is set on the first frame and refreshed every 256 (APPEND and RPUSH keep it).
APPEND_PUBLISH_SCRIPT = b"""
local n = redis.call('LLEN', KEYS[2])
if n + 1 ~= tonumber(ARGV[3]) then return -1 end
redis.call('APPEND', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
if n % 256 == 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return n + 1
"""
APPEND_PUBLISH_SHA = hashlib.sha1(APPEND_PUBLISH_SCRIPT).hexdigest()  # Redis names scripts by SHA-1


@dataclass(frozen=True)
class LiveState:
    content: str
    seq: int


class LiveLog(Protocol):
    async def begin(self, message_id: int) -> None: ...
    async def append(self, message_id: int, text: str, end_offset: int) -> int: ...
    async def append_and_publish(
        self, message_id: int, text: str, end_offset: int, seq: int, wire: tuple[str, bytes]
    ) -> bool: ...
    async def publish(self, channel: str, payload: bytes) -> bool: ...
    async def restore(self, message_id: int, content: str, ends: list[int]) -> None: ...
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

    async def append(self, message_id: int, text: str, end_offset: int) -> int:
        """Add a frame; returns how many frames the log now holds (the writer checks it against its seq)."""
        reply = self._replies.setdefault(message_id, _Reply())
        reply.parts.append(text)
        reply.ends.append(end_offset)
        return len(reply.ends)

    async def append_and_publish(
        self, message_id: int, text: str, end_offset: int, seq: int, wire: tuple[str, bytes]
    ) -> bool:
        return False  # frames in memory travel the in-memory layer: the writer publishes them

    async def publish(self, channel: str, payload: bytes) -> bool:
        return False

    async def restore(self, message_id: int, content: str, ends: list[int]) -> None:
        self._replies[message_id] = _Reply(parts=[content], ends=list(ends))

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

    def __init__(self) -> None:
        self._batchers: PerLoop[_Batcher] = PerLoop(lambda: _Batcher(log_client.get()))

    def _client(self) -> Any:
        return log_client.get()

    def _keys(self, message_id: int) -> tuple[str, str]:
        return key("live", message_id, "text"), key("live", message_id, "ends")

    async def begin(self, message_id: int) -> None:
        text_key, ends_key = self._keys(message_id)
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.delete(text_key, ends_key).set(text_key, "", ex=LOG_TTL_SECONDS)
            await pipe.execute()

    async def append(self, message_id: int, text: str, end_offset: int) -> int:
        text_key, ends_key = self._keys(message_id)
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.append(text_key, text.encode()).rpush(ends_key, end_offset)
            pipe.expire(text_key, LOG_TTL_SECONDS).expire(ends_key, LOG_TTL_SECONDS)
            _, frames, _, _ = await pipe.execute()
        return int(frames)

    async def append_and_publish(
        self, message_id: int, text: str, end_offset: int, seq: int, wire: tuple[str, bytes]
    ) -> bool:
        """Append the frame, then publish it on the pub/sub layer's channel: one script, in one round trip
        shared with every other reply of this process. False (nothing done) if the log lacks earlier frames."""
        channel, payload = wire
        args = (text.encode(), end_offset, seq, channel, payload, LOG_TTL_SECONDS)
        return await self._batcher().run("EVALSHA", APPEND_PUBLISH_SHA, 2, *self._keys(message_id), *args) == seq

    async def publish(self, channel: str, payload: bytes) -> bool:
        """PUBLISH on the same batched connection as the frames, so this process's messages keep their order."""
        await self._batcher().run("PUBLISH", channel, payload)
        return True

    def _batcher(self) -> "_Batcher":
        return self._batchers.get()

    async def restore(self, message_id: int, content: str, ends: list[int]) -> None:
        """Rewrite a log that Redis lost (a restart) or that missed frames (an outage)."""
        text_key, ends_key = self._keys(message_id)
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.delete(text_key, ends_key).set(text_key, content.encode(), ex=LOG_TTL_SECONDS)
            if ends:
                pipe.rpush(ends_key, *ends).expire(ends_key, LOG_TTL_SECONDS)
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


class _Batcher:
    """Sends every command queued while the previous batch was in flight as one pipeline: when the
    process is busy, a round trip carries many replies' frames; when idle, a frame goes at once.
    (channels_redis' pub/sub layer publishes one message per round trip, under a lock.)"""

    def __init__(self, client: Any) -> None:  # redis.asyncio.Redis
        self._client = client
        self._queue: list[tuple[tuple, asyncio.Future]] = []
        self._sending = False

    async def run(self, *command: object) -> object:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        if not self._sending:
            self._sending = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self._execute([command for command, _ in batch])
                except Exception as exc:  # noqa: BLE001 - handed to every writer waiting on this batch
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._sending = False

    async def _execute(self, commands: list[tuple]) -> list:
        from redis.exceptions import NoScriptError

        results = await self._send(commands)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            # First use, or Redis restarted: those scripts did nothing. Load it, send them again.
            await self._client.script_load(APPEND_PUBLISH_SCRIPT)
            for i, result in zip(missing, await self._send([commands[i] for i in missing]), strict=True):
                results[i] = result
        return results

    async def _send(self, commands: list[tuple]) -> list:
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute(raise_on_error=False)


_log: LiveLog | None = None


def live_log() -> LiveLog:
    global _log
    if _log is None:
        _log = RedisLiveLog() if settings.REDIS_URL else MemoryLiveLog()
    return _log
