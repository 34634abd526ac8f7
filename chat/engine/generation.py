"""One reply being generated: provider deltas in, coalesced frames out, checkpoints to the database.

The reply's provider comes resolved with its claim (services.generation_begin): this module only
streams it, saves it and says how it ended.
"""

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat import events, services
from chat.engine.checkpoints import checkpoint_writer
from chat.engine.frames import Clock, FrameCoalescer
from chat.engine.resilience import best_effort, retry_delay, timeout_error, with_database_retry
from chat.engine.resume import ResumePoint, resume_point
from chat.engine.titles import title_in_background
from chat.errors import ChatError
from chat.live import live_log
from chat.models import Message
from chat.providers import registry
from chat.providers.base import ProviderError, ReplyStream, StreamResult

logger = logging.getLogger(__name__)

# A reply handed over by the reaper whose provider response could not be streamed again.
# A reply stopped at a checkpoint because its owner's money budget is spent: its text is kept.
BUDGET_STOP = ChatError(
    "budget_exceeded", "The reply was stopped: your money budget is spent. It renews at midnight UTC or on the 1st."
)
TAKE_UP_FAILED = ChatError(
    "interrupted",
    _("The reply was interrupted (its worker stopped, and it could not be taken up). Continue or retry it."),
)


class Generation:
    """Runs one reply to its end; `stop()` and `interrupt()` end it early with its text kept.

    Every write after the claim is fenced by the claim's lease holder: should the lease be lost (the
    worker stalled past it and another worker reaped the reply), the generation stops, saves nothing
    and announces nothing, since the reaper already saved and announced the reply's end (or handed the
    reply to another worker).

    A reply streaming from a response its provider keeps (background mode) saves that response's id
    with its checkpoints, so that another worker can take it up should this one die (chat.engine.resume);
    a reply so handed over goes on from where the last worker published, reattached to the response.
    Such a response outlives its stream: a reply that ends before the response does cancels it.
    """

    def __init__(
        self, message_id: int, conversation_id: int, *, worker_id: str = "", clock: Clock | None = None
    ) -> None:
        self.message_id = message_id
        self.conversation_id = conversation_id
        self.worker_id = worker_id
        self.lease_holder: str | None = None  # set by the claim
        self.stop_requested = False
        self.over_budget = False  # stopped at a checkpoint: the owner's money budget is spent
        self.shutting_down = False
        self.lease_lost = False
        self.send_to_first_token_ms: int | None = None
        self.response_id = ""  # of the response the provider keeps for this reply, once known
        self.handed_off = False  # to another worker, as this one shut down
        self._id_unsaved = False  # learnt since the last checkpoint: save it at once
        self._streaming = False
        self._clock = clock
        self.task: asyncio.Task[None] | None = None
        self._checkpointing: asyncio.Task[None] | None = None
        self._context: services.GenerationContext | None = None

    def stop(self) -> None:
        self.stop_requested = True
        self._cancel_stream()

    def interrupt(self) -> None:
        """The worker is shutting down and cannot wait for this reply."""
        self.shutting_down = True
        self._cancel_stream()

    def lose_lease(self) -> None:
        """The reply is no longer this worker's: end the stream, keep nothing."""
        self.lease_lost = True
        self._cancel_stream()

    @property
    def ending_early(self) -> bool:
        return self.stop_requested or self.shutting_down or self.lease_lost

    def _cancel_stream(self) -> None:
        if self._streaming and self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        self.task = asyncio.current_task()
        # A short database outage must not lose the job: the reply would wait for the pending expiry.
        context = await with_database_retry(
            services.generation_begin, message_id=self.message_id, worker_id=self.worker_id
        )
        if context is None:
            # Another worker claimed it (a job can be delivered twice), or it was stopped or reaped meanwhile.
            logger.info("job for reply %s dropped: the reply is no longer pending", self.message_id)
            return
        self.lease_holder = context.lease_holder
        logger.info("reply %s claimed by %s", self.message_id, self.worker_id)
        reply = context.reply
        resume = await resume_point(reply)
        if resume is None:
            frames = FrameCoalescer(conversation_id=reply.conversation_id, message_id=reply.pk, clock=self._clock)
            await best_effort(live_log().begin(reply.pk))
            await events.publish_start(reply)  # not for a reply taken up: its followers keep what they have
        else:
            logger.info("reply %s taken up again (time %s) at %s", reply.pk, reply.resumes, resume)
            self.response_id = resume.response_id
            frames = resume.frames(reply, clock=self._clock)
        await events.publish_conversation_of(reply)
        self._context = context
        status, result, error = await self._stream(context, frames, resume)
        if self.over_budget and status == Message.Status.CANCELLED:
            error = BUDGET_STOP
        if self._checkpointing is not None:
            if not self._checkpointing.done():
                checkpoint_writer().hurry()  # its last frames and final save wait for it
            await self._checkpointing  # the final save must come after it
        if self.lease_lost:
            await frames.discard()  # the reaper announced the end: no text may follow it
            final = None
        else:
            await frames.close()
            if await self._hand_off(frames, status):
                return  # another worker goes on with it: nothing ends here
            if self.response_id and status != Message.Status.COMPLETE:  # it would go on (and bill)
                await registry.cancel_response(context.reply.model, self.response_id)
            final = await self._finish(context, frames, status, result, error)
        if final is None:
            logger.warning("reply %s: lease lost (another worker reaped it); nothing saved", reply.pk)
            if not self.response_id:  # else another worker may be going on with it, from the live log
                await best_effort(live_log().end(reply.pk))
            return
        await events.publish_done(final)
        await best_effort(live_log().end(reply.pk))
        await events.publish_conversation_of(final)
        title_in_background(final)

    async def _hand_off(self, frames: FrameCoalescer, status: str) -> bool:
        """Interrupted as this worker shuts down, a reply streaming from a response its provider keeps goes
        to another worker (ChatWorker.shutdown sends its job again). False if it does not."""
        if not (status == Message.Status.INTERRUPTED and self.shutting_down and self.response_id):
            return False
        self.handed_off = await with_database_retry(services.reply_hand_off, **self._progress(frames))
        if self.handed_off:
            logger.info("reply %s handed to another worker: this one is shutting down", self.message_id)
        return self.handed_off

    def _open_stream(self, context: services.GenerationContext, resume: ResumePoint | None) -> ReplyStream:
        if resume is None:
            return context.provider.stream(context.request)
        return context.provider.reattach(context.request, response_id=resume.response_id, after=resume.cursor)

    async def _finish(
        self,
        context: services.GenerationContext,
        frames: FrameCoalescer,
        status: str,
        result: StreamResult,
        error: ProviderError | ChatError | None,
    ) -> Message | None:
        """The final save, fenced by the lease: None when the lease was lost meanwhile."""
        _settle_usage(result, context, frames.parts)
        kwargs = {
            "message_id": context.reply.pk,
            "parts": frames.records,
            "part_ms": frames.durations_ms(),
            "seq": frames.seq,
            "result": result,
            "lease_holder": context.lease_holder,
            "send_to_first_token_ms": self.send_to_first_token_ms,
        }
        if status == Message.Status.INTERRUPTED:
            return await with_database_retry(services.reply_mark_interrupted, error=error, **kwargs)
        return await with_database_retry(services.generation_finish, status=status, error=error, **kwargs)

    async def _stream(
        self, context: services.GenerationContext, frames: FrameCoalescer, resume: ResumePoint | None
    ) -> tuple[str, StreamResult, ProviderError | ChatError | None]:
        loop = asyncio.get_running_loop()
        clock = self._clock or loop
        started = loop.time()
        total_deadline = started + settings.CHAT_TIMEOUT_TOTAL
        result = StreamResult()
        first_token_at: float | None = None
        self._streaming = True
        try:
            async with asyncio.timeout(min(started + settings.CHAT_TIMEOUT_FIRST_TOKEN, total_deadline)) as deadline:
                attempt = 0
                next_checkpoint = clock.time() + settings.CHAT_CHECKPOINT_SECONDS
                while True:
                    if self.ending_early:
                        raise asyncio.CancelledError
                    stream = self._open_stream(context, resume)
                    result = stream.result
                    try:
                        async with stream:
                            async for delta in stream:
                                now = loop.time()
                                if first_token_at is None:
                                    first_token_at = now
                                    if resume is None:  # a reply taken up had its first token long ago
                                        self.send_to_first_token_ms = _ms_since(context.reply.created_at)
                                deadline.reschedule(min(now + settings.CHAT_TIMEOUT_IDLE, total_deadline))
                                if delta.text:
                                    await frames.add(delta.text, kind=delta.kind, cursor=delta.cursor)
                                if delta.keeps:
                                    frames.keep(delta.kind, signature=delta.signature, redacted=delta.redacted)
                                if stream.response_id != self.response_id:
                                    self.response_id, self._id_unsaved = stream.response_id, True
                                now = clock.time()
                                if (now >= next_checkpoint or self._id_unsaved) and self._checkpoint_done():
                                    next_checkpoint = now + settings.CHAT_CHECKPOINT_SECONDS
                                    self._id_unsaved = False
                                    # In the background: the stream must not wait for the database.
                                    self._checkpointing = loop.create_task(self._checkpoint(frames))
                        return Message.Status.COMPLETE, result, None
                    except ProviderError as exc:
                        # Never log the SDK's exception: upstream error texts can quote the API key.
                        logger.info("reply %s: provider error %s", self.message_id, exc.code)
                        if self.ending_early:
                            # The HTTP library may report our own cancellation as a read timeout.
                            raise asyncio.CancelledError from exc
                        if exc.code == "timeout":
                            raise TimeoutError from exc
                        if first_token_at is not None or not exc.retryable or attempt >= settings.CHAT_RETRY_ATTEMPTS:
                            if resume is not None and first_token_at is None:
                                return Message.Status.INTERRUPTED, result, TAKE_UP_FAILED
                            return Message.Status.FAILED, result, exc
                        attempt += 1
                        await asyncio.sleep(retry_delay(attempt, exc))
        except TimeoutError:
            return Message.Status.FAILED, result, timeout_error(loop.time(), started, total_deadline, first_token_at)
        except asyncio.CancelledError:
            if not self.ending_early:
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

    def _progress(self, frames: FrameCoalescer) -> dict[str, object]:
        """What a checkpoint (or a hand-off) saves, read at one instant: the published parts, their seq and
        the cursor they reach, fenced by this claim's lease."""
        return {
            "message_id": self.message_id,
            "parts": frames.records,
            "part_ms": frames.durations_ms(),
            "seq": frames.seq,
            "lease_holder": self.lease_holder,
            "response_id": self.response_id,
            "cursor": frames.cursor,
        }

    def _budget_probe(self, frames: FrameCoalescer) -> services.BudgetProbe | None:
        """The money budget check of this checkpoint, when the owner has a money budget and the model a price."""
        context = self._context
        if context is None or context.limits is None or context.price is None or not context.limits.has_money_budget:
            return None
        running = context.running_cost(frames.parts)
        return services.BudgetProbe(user_id=context.conversation.owner_id, limits=context.limits, running=running)

    async def _checkpoint(self, frames: FrameCoalescer) -> None:
        progress = {**self._progress(frames), "budget": self._budget_probe(frames)}
        try:
            # Written with every other reply's checkpoint of the moment, in one transaction (chat.engine.checkpoints).
            outcome = await checkpoint_writer().save(progress)
        except Exception:  # noqa: BLE001 - a missed checkpoint is retried a second later
            logger.warning("checkpoint of reply %s failed", self.message_id, exc_info=True)
            return
        if outcome == services.Checkpoint.STOP_REQUESTED:
            # The stop signal over the channel layer was lost; the database says stop.
            self.stop()
        elif outcome == services.Checkpoint.BUDGET_EXCEEDED:
            logger.info("reply %s stopped: its owner's money budget is spent", self.message_id)
            self.over_budget = True
            self.stop()
        elif outcome == services.Checkpoint.LEASE_LOST:
            self.lose_lease()

    def _checkpoint_done(self) -> bool:
        return self._checkpointing is None or self._checkpointing.done()


def _ms_since(moment: datetime) -> int:
    return max(0, int((timezone.now() - moment).total_seconds() * 1000))


def _settle_usage(result: StreamResult, context: services.GenerationContext, parts: Sequence[tuple[str, str]]) -> None:
    """A reply that ended early has no reported usage: estimate it from every part (its reasoning is
    output too), and say so."""
    result.estimate_missing(
        context.request,
        output_chars=sum(len(text) for _, text in parts),
        reasoning_chars=sum(len(text) for kind, text in parts if kind == "reasoning"),
    )
