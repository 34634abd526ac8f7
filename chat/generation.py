"""One reply being generated: provider deltas in, coalesced frames out, checkpoints to the database."""

import asyncio
import logging
import math
import weakref

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings

from chat import events, services
from chat.errors import ChatError
from chat.live import live_log
from chat.models import Message
from chat.providers import registry
from chat.providers.base import ProviderError, StreamResult, estimate_tokens

logger = logging.getLogger(__name__)


class FrameCoalescer:
    """Turns deltas into frames: the first delta after a quiet spell goes at once, a burst is batched.

    The batching window adapts to load: the replies streaming in this process share a budget of
    CHAT_FRAME_RATE frames a second (200 replies: about 130 ms), from CHAT_FRAME_MIN_WINDOW_MS (a
    model slower than one token per that window has every token sent at once) up to CHAT_FRAME_WINDOW_MS. Every frame costs the same on the channel layer and in every consumer,
    however few characters it carries, so this keeps the relay's cost per token flat as load grows.
    A frame is written to the live log before it is published, so a snapshot read after
    subscribing always meets the live frames without a gap.
    """

    def __init__(self, *, conversation_id: int, message_id: int) -> None:
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.window = settings.CHAT_FRAME_WINDOW_MS / 1000
        self.min_window = settings.CHAT_FRAME_MIN_WINDOW_MS / 1000
        self.max_chars = settings.CHAT_FRAME_MAX_CHARS
        self.seq = 0
        self.length = 0
        self._sent: list[str] = []
        self._ends: list[int] = []  # where each frame ended: enough to rebuild a lost live log
        self._pending: list[str] = []
        self._pending_chars = 0
        self._last_flush = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._flushes: set[asyncio.Task[None]] = set()
        self.frames_published = 0
        _open.add(self)

    @property
    def content(self) -> str:
        """Everything published so far (what clients may have seen)."""
        if len(self._sent) > 1:
            self._sent[:] = ["".join(self._sent)]
        return self._sent[0] if self._sent else ""

    async def add(self, text: str) -> None:
        self._pending.append(text)
        self._pending_chars += len(text)
        now = self._loop.time()
        window = min(self.window, max(self.min_window, len(_open) / settings.CHAT_FRAME_RATE))
        if now - self._last_flush >= window or self._pending_chars >= self.max_chars:
            await self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_at(self._last_flush + window, self._flush_later)

    def _flush_later(self) -> None:
        self._timer = None
        task = self._loop.create_task(self.flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        async with self._lock:
            if not self._pending:
                return
            text = "".join(self._pending)
            self._pending.clear()
            self._pending_chars = 0
            offset, self.length, self.seq = self.length, self.length + len(text), self.seq + 1
            self._sent.append(text)
            self._ends.append(self.length)
            self._last_flush = self._loop.time()
            try:
                await self._log_and_publish(offset, text)
                self.frames_published += 1
            except Exception:  # noqa: BLE001 - the layer is best effort; clients resync from the snapshot
                logger.warning("could not publish frame %s of reply %s", self.seq, self.message_id, exc_info=True)

    async def _log_and_publish(self, offset: int, text: str) -> None:
        frame = {"conversation_id": self.conversation_id, "message_id": self.message_id, "seq": self.seq}
        wire = events.delta_wire(**frame, offset=offset, text=text)
        # On Redis pub/sub, one script appends then publishes, batched with other replies' frames.
        if wire is not None and await live_log().append_and_publish(self.message_id, text, self.length, self.seq, wire):
            return
        if await live_log().append(self.message_id, text, self.length) != self.seq:
            # Redis restarted (the log is gone) or missed a frame while away: rewrite it whole,
            # so snapshots taken from now on are right again.
            await live_log().restore(self.message_id, self.content, self._ends)
        await events.publish_delta(**frame, offset=offset, text=text)

    async def close(self) -> None:
        """Publish whatever is still buffered."""
        _open.discard(self)
        await self.flush()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)


_open: weakref.WeakSet[FrameCoalescer] = weakref.WeakSet()  # replies streaming in this process


class Generation:
    """Runs one reply to its end; `stop()` and `interrupt()` end it early with its text kept."""

    def __init__(self, message_id: int, conversation_id: int) -> None:
        self.message_id = message_id
        self.conversation_id = conversation_id
        self.stop_requested = False
        self.shutting_down = False
        self._streaming = False
        self.task: asyncio.Task[None] | None = None
        self.db_writes = 0
        self._checkpointing: asyncio.Task[None] | None = None

    def stop(self) -> None:
        self.stop_requested = True
        self._cancel_stream()

    def interrupt(self) -> None:
        """The worker is shutting down and cannot wait for this reply."""
        self.shutting_down = True
        self._cancel_stream()

    def _cancel_stream(self) -> None:
        if self._streaming and self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        self.task = asyncio.current_task()
        # A short database outage must not lose the job: the reply would wait for the pending expiry.
        context = await _with_database_retry(services.generation_begin, message_id=self.message_id)
        self.db_writes += 1
        if context is None:
            return
        reply = context.reply
        frames = FrameCoalescer(conversation_id=reply.conversation_id, message_id=reply.pk)
        await _best_effort(live_log().begin(reply.pk))
        await events.publish_start(reply)
        await _announce_conversation(reply)
        status, result, error = await self._stream(context, frames)
        if self._checkpointing is not None:
            await self._checkpointing  # the final save must come after it
        await frames.close()
        _settle_usage(result, context, frames.content)
        finish = services.reply_mark_interrupted if status == Message.Status.INTERRUPTED else services.generation_finish
        kwargs = {"message_id": reply.pk, "content": frames.content, "seq": frames.seq, "result": result}
        if finish is services.generation_finish:
            kwargs.update(status=status, error=error)
        final = await _with_database_retry(finish, **kwargs)
        self.db_writes += 1
        await events.publish_done(final)
        await _best_effort(live_log().end(reply.pk))
        await _announce_conversation(final)

    async def _stream(
        self, context: services.GenerationContext, frames: FrameCoalescer
    ) -> tuple[str, StreamResult, ProviderError | ChatError | None]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        total_deadline = started + settings.CHAT_TIMEOUT_TOTAL
        result = StreamResult()
        first_token_at: float | None = None
        self._streaming = True
        try:
            async with asyncio.timeout(min(started + settings.CHAT_TIMEOUT_FIRST_TOKEN, total_deadline)) as deadline:
                provider, _ = registry.resolve(context.reply.model)
                attempt = 0
                next_checkpoint = started + settings.CHAT_CHECKPOINT_SECONDS
                while True:
                    if self.stop_requested:
                        raise asyncio.CancelledError
                    stream = provider.stream(context.request)
                    result = stream.result
                    try:
                        async with stream:
                            async for delta in stream:
                                now = loop.time()
                                if first_token_at is None:
                                    first_token_at = now
                                deadline.reschedule(min(now + settings.CHAT_TIMEOUT_IDLE, total_deadline))
                                await frames.add(delta)
                                if now >= next_checkpoint and self._checkpoint_done():
                                    next_checkpoint = now + settings.CHAT_CHECKPOINT_SECONDS
                                    # In the background: the stream must not wait for the database.
                                    self._checkpointing = loop.create_task(self._checkpoint(frames))
                        return Message.Status.COMPLETE, result, None
                    except ProviderError as exc:
                        # Never log the SDK's exception: upstream error texts can quote the API key.
                        logger.info("reply %s: provider error %s", self.message_id, exc.code)
                        if self.stop_requested or self.shutting_down:
                            # The HTTP library may report our own cancellation as a read timeout.
                            raise asyncio.CancelledError from exc
                        if exc.code == "timeout":
                            raise TimeoutError from exc
                        if first_token_at is not None or not exc.retryable or attempt >= settings.CHAT_RETRY_ATTEMPTS:
                            return Message.Status.FAILED, result, exc
                        attempt += 1
                        await asyncio.sleep(_backoff(attempt, exc))
        except TimeoutError:
            return Message.Status.FAILED, result, _timeout_error(loop.time(), started, total_deadline, first_token_at)
        except asyncio.CancelledError:
            if not (self.stop_requested or self.shutting_down):
                raise
            task = asyncio.current_task()
            while task.cancelling():
                task.uncancel()
            status = Message.Status.CANCELLED if self.stop_requested else Message.Status.INTERRUPTED
            return status, result, None
        except Exception:  # noqa: BLE001 - a bug must not leave a reply streaming forever
            logger.exception("reply %s failed unexpectedly", self.message_id)
            return Message.Status.FAILED, result, ProviderError("upstream_error")
        finally:
            self._streaming = False
            if first_token_at is not None:
                result.time_to_first_token_ms = int((first_token_at - started) * 1000)
            result.duration_ms = int((loop.time() - started) * 1000)

    async def _checkpoint(self, frames: FrameCoalescer) -> None:
        try:
            still_wanted = await database_sync_to_async(services.generation_checkpoint)(
                message_id=self.message_id, content=frames.content, seq=frames.seq
            )
        except Exception:  # noqa: BLE001 - a missed checkpoint is retried a second later
            logger.warning("checkpoint of reply %s failed", self.message_id, exc_info=True)
            return
        self.db_writes += 1
        if not still_wanted:
            # The stop signal over the channel layer was lost; the database says stop.
            self.stop()

    def _checkpoint_done(self) -> bool:
        return self._checkpointing is None or self._checkpointing.done()


def _backoff(attempt: int, error: ProviderError) -> float:
    if error.retry_after is not None:
        return min(error.retry_after, settings.CHAT_RETRY_MAX_DELAY)
    return min(settings.CHAT_RETRY_BASE_DELAY * 2 ** (attempt - 1), settings.CHAT_RETRY_MAX_DELAY)


def _timeout_error(now: float, started: float, total_deadline: float, first_token_at: float | None) -> ProviderError:
    if now >= total_deadline - 0.01:
        limit = settings.CHAT_TIMEOUT_TOTAL
        return ProviderError("timeout", f"The reply took longer than the {limit:g} s limit and was stopped.")
    if first_token_at is None:
        limit = settings.CHAT_TIMEOUT_FIRST_TOKEN
        return ProviderError("timeout", f"The model did not start answering within {limit:g} s.")
    limit = settings.CHAT_TIMEOUT_IDLE
    return ProviderError("timeout", f"The model stopped sending text for more than {limit:g} s.")


def _settle_usage(result: StreamResult, context: services.GenerationContext, content: str) -> None:
    """A reply that ended early has no reported usage: estimate it, and say so."""
    if result.output_tokens is None:
        result.output_tokens = estimate_tokens(content)
        result.tokens_estimated = True
    if result.input_tokens is None:
        request = context.request
        result.input_tokens = estimate_tokens(request.system + "".join(turn.content for turn in request.turns))
        result.tokens_estimated = True


async def _with_database_retry(func, /, **kwargs):  # noqa: ANN001, ANN202
    """The claim and the final save must land: retry through a short database outage (about a minute)."""
    delay = 0.25
    for _ in range(40):
        try:
            return await database_sync_to_async(func)(**kwargs)
        except Exception:  # noqa: BLE001
            logger.warning("database call %s for reply %s failed; retrying", func.__name__, kwargs.get("message_id"))
            await sync_to_async(_close_connections)()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    return await database_sync_to_async(func)(**kwargs)


def _close_connections() -> None:
    from django.db import connections

    connections.close_all()


async def _best_effort(awaitable) -> None:  # noqa: ANN001
    """Live-log, group and heartbeat operations: Redis may be away; the database stays the truth."""
    try:
        await awaitable
    except Exception:  # noqa: BLE001
        logger.warning("live operation failed", exc_info=True)


async def _announce_conversation(reply: Message) -> None:
    conversation = reply.conversation
    frame = events.conversation_frame(conversation, running=reply.is_active)
    await events.publish_to_user(conversation.owner_id, frame)
