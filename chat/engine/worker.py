"""The provider worker: generation jobs in from the jobs channel, frames out. Thin: Generation does the work.

With Redis it runs as `manage.py runworker --layer jobs chat-generate` (several processes share the
queue: a job normally goes to one, and the claim makes sure a reply runs once even when the layer
delivers a job twice). Embedded, the same worker runs inside the server process.
"""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from channels.consumer import AsyncConsumer
from channels.db import DatabaseSyncToAsync, database_sync_to_async
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels.routing import ChannelNameRouter
from channels.utils import await_many_dispatch
from channels.worker import Worker
from django.conf import settings
from django.utils import timezone

from chat import events, services
from chat.dispatch import DispatchWithoutCleanup
from chat.engine import heartbeat
from chat.engine.generation import Generation
from chat.engine.resilience import Backoff, best_effort
from chat.models import PurgeRecord
from chat.providers import registry

logger = logging.getLogger(__name__)
PURGE_FIRST_DELAY = 60.0  # seconds from a worker's start to its first retention purge


def generation_job(*, message_id: int, conversation_id: int) -> dict[str, object]:
    """A generation job. It carries ids only: the worker reads everything else from the database."""
    return {"type": "generation.start", "message": message_id, "conversation": conversation_id}


class Runner:
    """The replies this process is generating, and the slots that bound how many at once."""

    def __init__(self, concurrency: int, *, worker_id: str = "") -> None:
        self.concurrency = concurrency
        self.worker_id = worker_id
        self.slots = asyncio.Semaphore(concurrency)
        self.running: dict[int, Generation] = {}
        self.idle = asyncio.Event()
        self.idle.set()
        # Set when the last slot is taken or one frees up again, so the heartbeat says so at once.
        self.fullness_changed = asyncio.Event()

    @property
    def free(self) -> int:
        """How many more replies this worker could start now."""
        return self.concurrency - len(self.running)

    def lease_holders(self) -> list[str]:
        return [g.lease_holder for g in self.running.values() if g.lease_holder is not None]

    def start(self, *, message_id: int, conversation_id: int, worker: "GenerationWorker") -> None:
        if message_id in self.running:
            # channels_redis can deliver one job twice (a reader puts back what another has in flight).
            logger.info("job for reply %s dropped: the reply already runs here", message_id)
            self.slots.release()
            return
        generation = Generation(message_id, conversation_id, worker_id=self.worker_id)
        self.running[message_id] = generation
        self.idle.clear()
        if self.free == 0:
            self.fullness_changed.set()
        task = asyncio.get_running_loop().create_task(self._run(generation, worker))
        generation.task = task

    async def _run(self, generation: Generation, worker: "GenerationWorker") -> None:
        try:
            await generation.run()
        except Exception:  # noqa: BLE001 - one reply failing must not take the worker down
            logger.exception("generation of reply %s crashed", generation.message_id)
        finally:
            await best_effort(worker.leave_cancel_group(generation.conversation_id))
            del self.running[generation.message_id]
            self.slots.release()
            if self.free == 1:
                self.fullness_changed.set()
            if not self.running:
                self.idle.set()

    def find(self, conversation_id: int) -> Generation | None:
        return next((g for g in self.running.values() if g.conversation_id == conversation_id), None)


_runner: Runner | None = None


def current_runner() -> Runner:
    assert _runner is not None, "no ChatWorker runs in this process"
    return _runner


class GenerationWorker(DispatchWithoutCleanup, AsyncConsumer):
    """Receives `generation.start` jobs and `generation.cancel` signals; each reply runs as its own task."""

    channel_layer_alias = "jobs"

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        # AsyncConsumer.__call__, except that a failing channel layer (Redis restarting, a read
        # timing out) does not end the instance: jobs queued for it would be lost with it.
        self.scope = scope
        self.base_send = send
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        backoff = Backoff(base=0.1, cap=5.0)
        while True:
            try:
                await await_many_dispatch([receive, self._receive_own], self.dispatch)
            except StopConsumer:
                return
            except Exception:  # noqa: BLE001 - Redis restarting: listen again, or queued jobs are lost
                delay = backoff.next_delay()
                logger.warning("worker channel failed; listening again in %.1fs", delay, exc_info=True)
                await asyncio.sleep(delay)

    async def _receive_own(self) -> dict:
        return await self.channel_layer.receive(self.channel_name)

    async def generation_start(self, event: dict) -> None:
        message_id = int(event["message"])
        conversation_id = int(event["conversation"])
        # Join before starting, so a stop sent the moment the reply starts is not missed.
        await self.channel_layer.group_add(events.cancel_group(conversation_id), self.channel_name)
        current_runner().start(message_id=message_id, conversation_id=conversation_id, worker=self)

    async def generation_cancel(self, event: dict) -> None:
        generation = current_runner().find(int(event["conversation"]))
        if generation is not None:
            generation.stop()

    async def leave_cancel_group(self, conversation_id: int) -> None:
        await self.channel_layer.group_discard(events.cancel_group(conversation_id), self.channel_name)


worker_application = ChannelNameRouter({settings.CHAT_WORKER_CHANNEL: GenerationWorker.as_asgi()})


# Lease renewals run on a thread (and database connection) of their own: the one thread that claims,
# checkpoints and final saves queue on can be busy for seconds under load, and a renewal waiting behind
# them would let the leases of replies that stream fine run out.
_lease_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-leases")


class ChatWorker(Worker):
    """Channels' worker, plus: a job is taken only when a slot is free (so idle workers take the
    rest), a heartbeat with the free slots, leases renewed for running replies, stale replies reaped,
    jobs lost with Redis sent again, and a graceful SIGTERM."""

    maintenance_interval = 2.0

    def __init__(self, *, channels: list[str] | None = None, handle_signals: bool = True) -> None:
        super().__init__(
            application=worker_application,
            channels=channels or [settings.CHAT_WORKER_CHANNEL],
            channel_layer=get_channel_layer("jobs"),
        )
        self.handle_signals = handle_signals
        self.worker_id = heartbeat.new_worker_id()
        self.runner = Runner(settings.CHAT_WORKER_CONCURRENCY, worker_id=self.worker_id)
        self.stopping = asyncio.Event()
        self._requeue_before: datetime | None = None
        self._purge_due_at: float | None = None  # the event loop's time of the next retention purge

    async def arun(self) -> None:
        checker = asyncio.ensure_future(self.application_checker())
        try:
            await self.handle()
        finally:
            checker.cancel()

    async def handle(self) -> None:
        global _runner
        _runner = self.runner
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
            loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        rounds = [asyncio.ensure_future(run()) for run in (self.beating, self.renewing_leases, self.maintenance)]
        # The provider SDKs are imported before the first job is taken, off the event loop: `import
        # anthropic` alone can take seconds on a busy machine, which a first reply must not wait for.
        await asyncio.to_thread(registry.providers)
        listeners = [asyncio.ensure_future(self.listener(channel)) for channel in self.channels]
        logger.info(
            "worker ready: %s, channels %s, %s replies at once",
            self.worker_id,
            self.channels,
            settings.CHAT_WORKER_CONCURRENCY,
        )
        await self.stopping.wait()
        for task in listeners:
            task.cancel()
        await self.shutdown()
        for task in rounds:
            task.cancel()
        await best_effort(heartbeat.worker_gone(worker_id=self.worker_id))
        await registry.close_clients()  # runworker's loop ends without closing what it opened

    async def listener(self, channel: str) -> None:
        backoff = Backoff(base=0.1, cap=5.0)
        while True:
            await self.runner.slots.acquire()
            try:
                message = await self.channel_layer.receive(channel)
            except Exception:  # noqa: BLE001 - Redis restarting: keep listening, or no job is ever taken again
                self.runner.slots.release()
                delay = backoff.next_delay()
                logger.warning("job channel failed; listening again in %.1fs", delay, exc_info=True)
                await asyncio.sleep(delay)
                continue
            except BaseException:
                self.runner.slots.release()
                raise
            backoff.reset()
            instance_queue = self.get_or_create_application_instance(channel, {"type": "channel", "channel": channel})
            await instance_queue.put(message)

    async def shutdown(self) -> None:
        """Stop taking jobs, give running replies the grace period, then interrupt the rest (text kept), or
        hand them to another worker where they can be taken up (background mode: chat.engine.resume)."""
        running = len(self.runner.running)
        logger.info("worker stopping: %s replies running, %ss grace", running, settings.CHAT_SHUTDOWN_GRACE_SECONDS)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for may swallow a cancellation (gh-86296).
            async with asyncio.timeout(settings.CHAT_SHUTDOWN_GRACE_SECONDS):
                await self.runner.idle.wait()
        except TimeoutError:
            generations = list(self.runner.running.values())
            for generation in generations:
                generation.interrupt()
            await asyncio.gather(*(g.task for g in generations if g.task is not None), return_exceptions=True)
            for generation in (g for g in generations if g.handed_off):
                await self.send_job(message_id=generation.message_id, conversation_id=generation.conversation_id)

    async def beating(self) -> None:
        """The heartbeat, apart from the database: a worker waiting out a database outage is still alive."""
        while True:
            self.runner.fullness_changed.clear()
            beat = heartbeat.worker_beat(
                worker_id=self.worker_id, running=len(self.runner.running), free=self.runner.free
            )
            await best_effort(beat)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.maintenance_interval):
                    await self.runner.fullness_changed.wait()

    async def renewing_leases(self) -> None:
        while True:
            await self.renew_leases()
            await asyncio.sleep(self.maintenance_interval)

    async def renew_leases(self) -> None:
        """Renew the lease of every running reply, on the lease thread (see `_lease_thread`)."""
        holders = self.runner.lease_holders()
        if not holders:
            return
        renew = DatabaseSyncToAsync(services.generation_leases_renew, thread_sensitive=False, executor=_lease_thread)
        try:
            await renew(lease_holders=holders)
        except Exception:  # noqa: BLE001 - the database may be away for a while; the next round retries
            logger.warning("lease renewal failed", exc_info=True)

    async def maintenance(self) -> None:
        while True:
            await self.requeue_lost_jobs()
            try:
                await self.reap_stale()
                await self.purge_when_due()
            except Exception:  # noqa: BLE001 - the database may be away for a while; keep trying
                logger.warning("worker maintenance failed", exc_info=True)
            await asyncio.sleep(self.maintenance_interval)

    async def reap_stale(self) -> None:
        """Hand the replies whose worker vanished to another worker where they can be taken up (background
        mode: chat.engine.resume), and mark the others `interrupted` and tell their followers."""
        for reply in await database_sync_to_async(services.replies_hand_off_stale)():
            logger.info("reply %s handed to another worker (time %s): its worker vanished", reply.pk, reply.resumes)
            await self.send_job(message_id=reply.pk, conversation_id=reply.conversation_id)
        for reply in await database_sync_to_async(services.replies_interrupt_stale)():
            if reply.upstream_response_id:  # its dead worker cannot stop what it left running upstream
                await registry.cancel_response(reply.model, reply.upstream_response_id)
            await events.publish_done(reply)
            await events.publish_conversation_of(reply)

    async def purge_when_due(self) -> None:
        """Purge a batch of expired conversations when due: the first PURGE_FIRST_DELAY after the worker
        starts (it has replies to take up first), then every round while full batches come back, else
        CHAT_RETENTION_INTERVAL_SECONDS later."""
        now = asyncio.get_running_loop().time()
        if self._purge_due_at is None:
            self._purge_due_at = now + PURGE_FIRST_DELAY
        if now < self._purge_due_at:
            return
        more = await self.purge_expired()
        self._purge_due_at = now + (0 if more else settings.CHAT_RETENTION_INTERVAL_SECONDS)

    async def purge_expired(self) -> bool:
        """Delete one batch of expired conversations (chat.services.retention); True if more wait."""
        batch_size = settings.CHAT_RETENTION_BATCH_SIZE
        purge = database_sync_to_async(services.purge_expired_batch)
        counts = await purge(now=timezone.now(), batch_size=batch_size, via=PurgeRecord.Via.WORKER)
        if counts.conversations:
            logger.info("retention: purged %s expired conversations", counts.conversations)
        return counts.conversations >= batch_size

    async def requeue_lost_jobs(self) -> None:
        """When the job queue is new (Redis or the embedded server restarted, its jobs lost), send again the
        job of every reply that waited before: the database is the truth. Retried until the database answers."""
        try:
            self._requeue_before = await heartbeat.jobs_queue_is_new(worker_id=self.worker_id) or self._requeue_before
            if self._requeue_before is None:
                return
            lost = await database_sync_to_async(services.replies_requeue_lost)(created_before=self._requeue_before)
            self._requeue_before = None
        except Exception:  # noqa: BLE001 - Redis or the database away: the next round tries again
            logger.warning("could not requeue the jobs lost with the job queue", exc_info=True)
            return
        for reply in lost:
            logger.info("reply %s requeued: its job was lost with the job queue", reply.pk)
            await self.send_job(message_id=reply.pk, conversation_id=reply.conversation_id)

    async def send_job(self, *, message_id: int, conversation_id: int) -> None:
        """Queue a reply's job again (the database says it waits for a worker)."""
        job = generation_job(message_id=message_id, conversation_id=conversation_id)
        await best_effort(self.channel_layer.send(settings.CHAT_WORKER_CHANNEL, job))
