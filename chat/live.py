"""The live log of replies in flight: the parts streamed so far and where each frame ended.

The worker appends to it before publishing a frame, so a client that subscribes, then reads a
snapshot from here, misses nothing: every frame is either in the snapshot or arrives after it.
Embedded mode keeps it in process memory (the worker runs in the server process); with Redis it
lives in Redis, shared by every Daphne process and worker. The database stays the truth: the log
only covers the second between checkpoints, and expires on its own.

A reply is a list of parts (answer `text`, the model's `reasoning`); every frame belongs to one part,
the last one or a new one after it, and `seq` counts the frames of all parts together.
"""

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

from chat.models import answer_text
from chat.per_loop import PerLoop
from chat.redis_clients import key, log_client

LOG_TTL_SECONDS = 3600

# One letter a part in the Redis log's `kinds` string.
KIND_CODES = {"text": "t", "reasoning": "r"}
KINDS_BY_CODE = {code: kind for kind, code in KIND_CODES.items()}

# Append a frame and publish it, in that order, if it is the next one the log expects (the writer's
# seq) and belongs to its last part or opens the next; otherwise change nothing and return -1, and the
# writer rewrites the log before publishing. KEYS: the part's text, the frame ends, the parts' kinds,
# the reply's cursor (ARGV[9], set with the frame when not empty: the log's text and cursor always agree).
# The TTL is set on a part's first frame and refreshed every 256 frames (APPEND and RPUSH keep it).
APPEND_PUBLISH_SCRIPT = b"""
local n = redis.call('LLEN', KEYS[2])
if n + 1 ~= tonumber(ARGV[3]) then return -1 end
local parts = redis.call('STRLEN', KEYS[3])
local part = tonumber(ARGV[7])
if part == parts then
  redis.call('APPEND', KEYS[3], ARGV[8])
elseif part ~= parts - 1 then
  return -1
end
redis.call('APPEND', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
if ARGV[9] ~= '' then redis.call('SET', KEYS[4], ARGV[9], 'EX', ARGV[6]) end
if n % 256 == 0 or part == parts then
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
  redis.call('EXPIRE', KEYS[3], ARGV[6])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return n + 1
"""
APPEND_PUBLISH_SHA = hashlib.sha1(APPEND_PUBLISH_SCRIPT).hexdigest()  # Redis names scripts by SHA-1

# Delete a reply's log (every part's text: their count is the length of `kinds`) and, with a TTL in
# ARGV[2], start it again empty. KEYS: kinds, ends, cursor; ARGV[1]: the text keys' prefix.
CLEAR_SCRIPT = b"""
local stale = {KEYS[1], KEYS[2], KEYS[3]}
for part = 0, redis.call('STRLEN', KEYS[1]) - 1 do
  stale[#stale + 1] = ARGV[1] .. part
end
redis.call('DEL', unpack(stale))
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], '', 'EX', ARGV[2]) end
return 1
"""
CLEAR_SHA = hashlib.sha1(CLEAR_SCRIPT).hexdigest()
# The scripts the batcher runs by SHA: loaded when Redis does not know them (first use, a restart).
BATCHED_SCRIPTS = (APPEND_PUBLISH_SCRIPT, CLEAR_SCRIPT)

# A reply's parts, seq and cursor at one instant: the text keys are named `<prefix><part index>`.
STATE_SCRIPT = b"""
local kinds = redis.call('GET', KEYS[1])
if not kinds then return nil end
local found = {kinds, redis.call('LLEN', KEYS[2]), redis.call('GET', KEYS[3]) or ''}
for part = 0, string.len(kinds) - 1 do
  found[#found + 1] = redis.call('GET', ARGV[1] .. part) or ''
end
return found
"""

Part = tuple[str, str]  # (kind, text)
FrameEnd = tuple[int, int]  # (part index, offset in that part where the frame ended)


@dataclass(frozen=True)
class LiveState:
    parts: list[Part]
    seq: int
    # The provider's number of the last event whose text the parts hold, for a reply streaming from a
    # response its provider keeps (chat.engine.resume); None for any other.
    cursor: int | None = None

    @property
    def content(self) -> str:
        """The answer text: every text part, joined."""
        return answer_text(self.parts)


@dataclass(frozen=True)
class LiveFrame:
    """One frame as the log keeps it: its part (index and kind), text, and the part's length after it;
    the reply's cursor with it (the provider's event number its text reaches), if it has one."""

    part: int
    kind: str
    text: str
    end: int
    cursor: int | None = None


class LiveLog(Protocol):
    async def begin(self, message_id: int) -> None: ...
    async def append(self, message_id: int, frame: LiveFrame) -> int: ...
    async def append_and_publish(
        self, message_id: int, frame: LiveFrame, seq: int, wire: tuple[str, bytes]
    ) -> bool: ...
    async def publish(self, channel: str, payload: bytes) -> bool: ...
    async def restore(
        self, message_id: int, parts: list[Part], ends: list[FrameEnd], cursor: int | None = None
    ) -> None: ...
    async def state(self, message_id: int) -> LiveState | None: ...
    async def ends(self, message_id: int) -> list[FrameEnd]: ...
    async def position_after(self, message_id: int, seq: int) -> FrameEnd | None: ...
    async def end(self, message_id: int) -> None: ...


@dataclass
class _Reply:
    kinds: list[str] = field(default_factory=list)
    texts: list[list[str]] = field(default_factory=list)  # per part, its frames' texts (joined lazily)
    ends: list[FrameEnd] = field(default_factory=list)
    cursor: int | None = None


class MemoryLiveLog:
    def __init__(self) -> None:
        self._replies: dict[int, _Reply] = {}

    async def begin(self, message_id: int) -> None:
        self._replies[message_id] = _Reply()

    async def append(self, message_id: int, frame: LiveFrame) -> int:
        """Add a frame; returns how many frames the log now holds (the writer checks it against its seq),
        or -1 when the frame's part is neither the last one nor the next."""
        reply = self._replies.setdefault(message_id, _Reply())
        if frame.part == len(reply.kinds):
            reply.kinds.append(frame.kind)
            reply.texts.append([])
        elif frame.part != len(reply.kinds) - 1:
            return -1
        reply.texts[frame.part].append(frame.text)
        reply.ends.append((frame.part, frame.end))
        if frame.cursor is not None:
            reply.cursor = frame.cursor
        return len(reply.ends)

    async def append_and_publish(self, message_id: int, frame: LiveFrame, seq: int, wire: tuple[str, bytes]) -> bool:
        return False  # frames in memory travel the in-memory layer: the writer publishes them

    async def publish(self, channel: str, payload: bytes) -> bool:
        return False

    async def restore(
        self, message_id: int, parts: list[Part], ends: list[FrameEnd], cursor: int | None = None
    ) -> None:
        kinds = [kind for kind, _ in parts]
        texts = [[text] for _, text in parts]
        self._replies[message_id] = _Reply(kinds=kinds, texts=texts, ends=list(ends), cursor=cursor)

    async def state(self, message_id: int) -> LiveState | None:
        reply = self._replies.get(message_id)
        if reply is None:
            return None
        for texts in reply.texts:
            texts[:] = ["".join(texts)]  # keep later joins cheap
        parts = [(kind, texts[0]) for kind, texts in zip(reply.kinds, reply.texts, strict=True)]
        return LiveState(parts=parts, seq=len(reply.ends), cursor=reply.cursor)

    async def ends(self, message_id: int) -> list[FrameEnd]:
        reply = self._replies.get(message_id)
        return list(reply.ends) if reply is not None else []

    async def position_after(self, message_id: int, seq: int) -> FrameEnd | None:
        reply = self._replies.get(message_id)
        if reply is None or seq > len(reply.ends) or seq < 0:
            return None
        return reply.ends[seq - 1] if seq else (0, 0)

    async def end(self, message_id: int) -> None:
        self._replies.pop(message_id, None)


def _end_entry(part: int, end: int) -> bytes:
    return f"{part}:{end}".encode()


def _parse_end(entry: bytes) -> FrameEnd:
    part, _, end = entry.partition(b":")
    return int(part), int(end)


class RedisLiveLog:
    """Per reply: the parts' kinds (a string, one letter a part), each part's text (APPEND) and where
    every frame ended (RPUSH of `part:offset`); seq = that list's length."""

    def __init__(self) -> None:
        self._batchers: PerLoop[_Batcher] = PerLoop(lambda: _Batcher(log_client.get()))

    def _client(self) -> Any:
        return log_client.get()

    def _kinds_key(self, message_id: int) -> str:
        return key("live", message_id, "kinds")

    def _ends_key(self, message_id: int) -> str:
        return key("live", message_id, "ends")

    def _text_key(self, message_id: int, part: int) -> str:
        return key("live", message_id, "text", part)

    def _cursor_key(self, message_id: int) -> str:
        return key("live", message_id, "cursor")

    async def _all_keys(self, message_id: int) -> list[str]:
        parts = await self._client().strlen(self._kinds_key(message_id))
        texts = [self._text_key(message_id, part) for part in range(parts)]
        return [self._kinds_key(message_id), self._ends_key(message_id), self._cursor_key(message_id), *texts]

    async def begin(self, message_id: int) -> None:
        await self._clear(message_id, ttl=LOG_TTL_SECONDS)

    async def _clear(self, message_id: int, *, ttl: int | None) -> None:
        """One script on the batched connection (a frame's): in order with the reply's frames and
        publishes, and no round trip of its own to learn how many parts there are."""
        base = key("live", message_id)
        args = (f"{base}:kinds", f"{base}:ends", f"{base}:cursor", f"{base}:text:", "" if ttl is None else ttl)
        await self._batcher().run(_CLEAR_HEAD + _pack_args(*args))

    async def append(self, message_id: int, frame: LiveFrame) -> int:
        """Without the script (another channel layer): the same append in a transaction. Returns the
        frame count, or -1 if the part was neither the last nor the next (the writer restores the log)."""
        kinds_key, ends_key = self._kinds_key(message_id), self._ends_key(message_id)
        parts = await self._client().strlen(kinds_key)
        if frame.part not in (parts - 1, parts):
            return -1
        text_key = self._text_key(message_id, frame.part)
        async with self._client().pipeline(transaction=True) as pipe:
            if frame.part == parts:
                pipe.append(kinds_key, KIND_CODES[frame.kind])
            pipe.append(text_key, frame.text.encode()).rpush(ends_key, _end_entry(frame.part, frame.end))
            if frame.cursor is not None:
                pipe.set(self._cursor_key(message_id), frame.cursor, ex=LOG_TTL_SECONDS)
            for each in (kinds_key, ends_key, text_key):
                pipe.expire(each, LOG_TTL_SECONDS)
            results = await pipe.execute()
        return int(results[2 if frame.part == parts else 1])

    async def append_and_publish(self, message_id: int, frame: LiveFrame, seq: int, wire: tuple[str, bytes]) -> bool:
        """Append the frame, then publish it on the pub/sub layer's channel: one script, in one round trip
        shared with every other reply of this process. False (nothing done) if the log lacks earlier frames."""
        channel, payload = wire
        base = key("live", message_id)  # the keys as _text_key & co. name them, with one settings read
        command = _EVALSHA_HEAD + _pack_args(
            f"{base}:text:{frame.part}",
            f"{base}:ends",
            f"{base}:kinds",
            f"{base}:cursor",
            frame.text,
            _end_entry(frame.part, frame.end),
            seq,
            channel,
            payload,
            LOG_TTL_SECONDS,
            frame.part,
            KIND_CODES[frame.kind],
            "" if frame.cursor is None else frame.cursor,
        )
        return await self._batcher().run(command) == seq

    async def publish(self, channel: str, payload: bytes) -> bool:
        """PUBLISH on the same batched connection as the frames, so this process's messages keep their order."""
        await self._batcher().run(_PUBLISH_HEAD + _pack_args(channel, payload))
        return True

    def _batcher(self) -> "_Batcher":
        return self._batchers.get()

    async def restore(
        self, message_id: int, parts: list[Part], ends: list[FrameEnd], cursor: int | None = None
    ) -> None:
        """Rewrite a log that Redis lost (a restart) or that missed frames (an outage), or start it again
        from a checkpoint (a reply taken up by another worker)."""
        stale = await self._all_keys(message_id)
        kinds = "".join(KIND_CODES[kind] for kind, _ in parts)
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.delete(*stale).set(self._kinds_key(message_id), kinds, ex=LOG_TTL_SECONDS)
            for part, (_, text) in enumerate(parts):
                pipe.set(self._text_key(message_id, part), text.encode(), ex=LOG_TTL_SECONDS)
            if ends:
                pipe.rpush(self._ends_key(message_id), *(_end_entry(*end) for end in ends))
                pipe.expire(self._ends_key(message_id), LOG_TTL_SECONDS)
            if cursor is not None:
                pipe.set(self._cursor_key(message_id), cursor, ex=LOG_TTL_SECONDS)
            await pipe.execute()

    async def state(self, message_id: int) -> LiveState | None:
        """Every part and the seq they cover, read at one instant (a script: nothing lands in between)."""
        script = self._client().register_script(STATE_SCRIPT)
        keys = [self._kinds_key(message_id), self._ends_key(message_id), self._cursor_key(message_id)]
        found = await script(keys=keys, args=[key("live", message_id, "text") + ":"])
        if found is None:
            return None
        kinds, seq, cursor, *texts = found
        codes = kinds.decode()
        parts = [(KINDS_BY_CODE[code], text.decode()) for code, text in zip(codes, texts, strict=True)]
        return LiveState(parts=parts, seq=int(seq), cursor=int(cursor) if cursor else None)

    async def ends(self, message_id: int) -> list[FrameEnd]:
        return [_parse_end(entry) for entry in await self._client().lrange(self._ends_key(message_id), 0, -1)]

    async def position_after(self, message_id: int, seq: int) -> FrameEnd | None:
        if seq == 0:
            return (0, 0) if await self._client().exists(self._kinds_key(message_id)) else None
        entry = await self._client().lindex(self._ends_key(message_id), seq - 1)
        return _parse_end(entry) if entry is not None else None

    async def end(self, message_id: int) -> None:
        await self._clear(message_id, ttl=None)


def _pack_args(*args: str | bytes | int) -> bytes:
    """Arguments of a command in RESP, the protocol's bulk strings (what redis-py's pack_command makes,
    without its per-argument encoder and buffer logic): str as UTF-8, int in decimal."""
    packed = []
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        packed.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(packed)


# The fixed start of the commands the batcher sends: RESP array header, name, and for EVALSHA the
# script's SHA and its number of keys (the frame's script: 4 keys and 9 arguments follow; the clearing
# script: 3 keys and 2 arguments).
_EVALSHA_HEAD = b"*16\r\n" + _pack_args("EVALSHA", APPEND_PUBLISH_SHA, 4)
_PUBLISH_HEAD = b"*3\r\n" + _pack_args("PUBLISH")
_CLEAR_HEAD = b"*8\r\n" + _pack_args("EVALSHA", CLEAR_SHA, 3)


class _Batcher:
    """Sends every command queued while the previous batch was in flight in one write: when the
    process is busy, a round trip carries many replies' frames; when idle, a frame goes at once.
    (channels_redis' pub/sub layer publishes one message per round trip, under a lock.)

    Commands come packed (RESP bytes) and go on a connection of the client's pool, without redis-py's
    pipeline objects: a frame costs one pack and one reply read. Each reply is read in order, an error
    reply becomes that command's result; a dropped connection is retried as the client's own commands
    are (its Retry: reconnect, send the batch again)."""

    def __init__(self, client: Any) -> None:  # redis.asyncio.Redis
        self._client = client
        self._queue: list[tuple[bytes, asyncio.Future]] = []
        self._sending = False

    async def run(self, command: bytes) -> object:
        """Send one packed command with the next batch; its reply, or the error Redis answered it with."""
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

    async def _execute(self, commands: list[bytes]) -> list:
        from redis.exceptions import NoScriptError

        results = await self._send(commands)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            # First use, or Redis restarted: those scripts did nothing. Load them, send them again.
            for script in BATCHED_SCRIPTS:
                await self._client.script_load(script)
            for i, result in zip(missing, await self._send([commands[i] for i in missing]), strict=True):
                results[i] = result
        return results

    async def _send(self, commands: list[bytes]) -> list:
        pool = self._client.connection_pool
        connection = await pool.get_connection()
        try:
            return await connection.retry.call_with_retry(
                lambda: self._round_trip(connection, commands), lambda error: connection.disconnect()
            )
        finally:
            await pool.release(connection)

    @staticmethod
    async def _round_trip(connection: Any, commands: list[bytes]) -> list:
        from redis.exceptions import ResponseError

        await connection.send_packed_command(commands)
        results: list = []
        for _ in commands:
            try:
                results.append(await connection.read_response())
            except ResponseError as error:  # this command's answer; the next replies follow it
                results.append(error)
        return results


_log: LiveLog | None = None


def live_log() -> LiveLog:
    global _log
    if _log is None:
        _log = RedisLiveLog() if settings.REDIS_URL else MemoryLiveLog()
    return _log
