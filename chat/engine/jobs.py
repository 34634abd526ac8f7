"""The engine's door for the web side: submit a reply's job, ask for a stop, tell a queued reply's
followers, and run the worker in-process in embedded mode. Consumers, views and actions import
this module only; everything else in chat.engine is the worker's own."""

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings

from chat import events, limits, services
from chat.engine import heartbeat
from chat.engine.worker import ChatWorker, generation_job
from chat.errors import ChatError

logger = logging.getLogger(__name__)

QUEUED_NOTICE_SECONDS = 0.5
_in_process: dict[asyncio.AbstractEventLoop, tuple[ChatWorker, asyncio.Task[None]]] = {}
_notices: set[asyncio.Task[None]] = set()


def ensure_in_process_worker() -> None:
    """Embedded mode: run the worker inside this server process, once per event loop."""
    loop = asyncio.get_running_loop()
    running = _in_process.get(loop)
    if running is None or running[1].done():
        worker = ChatWorker(handle_signals=False)
        _in_process[loop] = (worker, loop.create_task(worker.arun()))


def _in_process_workers() -> list[ChatWorker]:
    return [worker for worker, task in _in_process.values() if not task.done()]


async def workers_alive() -> int:
    """How many workers can take a job: those beating (Redis), or this process's own (embedded)."""
    if settings.REDIS_URL:
        return await heartbeat.workers_beating()
    return len(_in_process_workers())


async def free_slots() -> int:
    """How many replies the workers could start now: by their heartbeats (Redis), or this process's own."""
    if settings.REDIS_URL:
        return await heartbeat.free_slots()
    return sum(worker.runner.free for worker in _in_process_workers())


def with_in_process_worker(application: Any) -> Any:
    """Embedded mode: the ASGI application that starts the in-process worker with its first connection
    (Daphne has no start-up hook), so the providers are loaded before the first send."""
    if not settings.CHAT_WORKER_IN_PROCESS:
        return application

    async def app(scope: dict, receive: Any, send: Any) -> None:
        ensure_in_process_worker()
        await application(scope, receive, send)

    return app


async def submit(*, message_id: int, conversation_id: int) -> None:
    """Queue a generation job; its followers are told `queued` if no worker has a free slot for it."""
    if settings.CHAT_WORKER_IN_PROCESS:
        ensure_in_process_worker()
    try:
        job = generation_job(message_id=message_id, conversation_id=conversation_id)
        await get_channel_layer("jobs").send(settings.CHAT_WORKER_CHANNEL, job)
    except Exception as exc:
        # The job queue is full (every worker busy) or Redis is away: fail the reply now, clearly,
        # rather than let it wait for the pending expiry with no job behind it.
        full = isinstance(exc, ChannelFull)
        if not full:
            logger.warning("could not queue reply %s", message_id, exc_info=True)
        code = "queue_full" if full else "unavailable"
        reply = await database_sync_to_async(services.reply_refuse_job)(message_id=message_id, code=code)
        await events.publish_done(reply)
        await events.publish_conversation_of(reply)
        raise ChatError(code, retry_after=limits.SLOT_RETRY_AFTER_SECONDS if full else None) from None
    notice = asyncio.get_running_loop().create_task(_notice_if_queued(message_id, conversation_id))
    _notices.add(notice)
    notice.add_done_callback(_notices.discard)


async def _notice_if_queued(message_id: int, conversation_id: int) -> None:
    """A reply still pending after half a second while no worker has a free slot waits for one: mark it
    queued and tell its followers. One merely slow to be claimed (a free worker has its job) gets nothing."""
    await asyncio.sleep(QUEUED_NOTICE_SECONDS)
    try:
        if await free_slots() > 0:
            return
        ahead = await database_sync_to_async(services.reply_mark_queued)(message_id=message_id)
    except Exception:  # noqa: BLE001 - a notice only; the reply goes on regardless
        logger.warning("could not tell whether reply %s is queued", message_id, exc_info=True)
        return
    if ahead is not None:
        await events.publish_queued(conversation_id=conversation_id, message_id=message_id, ahead=ahead)


async def request_stop(*, conversation_id: int) -> None:
    """Tell whichever worker runs this conversation's reply to stop (the database flag backs this up)."""
    await events.publish_stop_request(conversation_id)
