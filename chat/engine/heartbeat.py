"""The worker heartbeat behind `/readyz` and the `queued` notice: with Redis every worker writes a key
with a TTL each round (every 2 s, and at once when its slots fill up or free up again), saying how
many slots it has free, so a killed worker drops out within the TTL.

Also the job queue's epoch marker: a key that tells a worker the Redis holding the jobs is new."""

import json
import os
import socket
import time
import uuid
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from chat.redis_clients import key, probe_client


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def worker_beat(*, worker_id: str, running: int, free: int) -> None:
    """Record that this worker is alive and how many replies it could start now (a key expiring after the TTL)."""
    if settings.REDIS_URL:
        value = json.dumps({"running": running, "free": free, "at": time.time()})
        ttl_ms = int(settings.CHAT_WORKER_HEARTBEAT_TTL_SECONDS * 1000)
        await probe_client.get().set(key("worker", worker_id), value, px=ttl_ms)


async def worker_gone(*, worker_id: str) -> None:
    """A worker that stops cleanly stops counting at once, not after the TTL."""
    if settings.REDIS_URL:
        await probe_client.get().delete(key("worker", worker_id))


async def _beating_keys() -> list[bytes]:
    return [name async for name in probe_client.get().scan_iter(match=key("worker", "*"), count=100)]


async def workers_beating() -> int:
    """How many workers beat within the TTL."""
    return len(await _beating_keys())


async def free_slots() -> int:
    """How many replies the beating workers could start now, by their last beats."""
    names = await _beating_keys()
    if not names:
        return 0
    beats = [json.loads(value) for value in await probe_client.get().mget(names) if value is not None]
    # A worker of an older version does not say: count it as full rather than guess.
    return sum(beat.get("free", 0) for beat in beats)


# Embedded, the job queue lives in this process's memory: it is new when the process starts, and the
# replies pending from before then (a previous run of the server) have lost their jobs.
PROCESS_STARTED_AT = timezone.now()
_process_queue_claimed = False


async def jobs_queue_is_new(*, worker_id: str) -> datetime | None:
    """When the job queue is new, the moment from which it holds every job: the pending replies created
    before it lost theirs. With Redis, told to the one worker that first sees Redis without the epoch
    marker (a new or restarted Redis: a non-persistent one keeps no jobs across a restart); embedded,
    to the first in-process worker of this process. None otherwise."""
    global _process_queue_claimed
    if not settings.REDIS_URL:
        if _process_queue_claimed:
            return None
        _process_queue_claimed = True
        return PROCESS_STARTED_AT
    if await probe_client.get().set(key("jobs-epoch"), worker_id, nx=True):
        return timezone.now()
    return None
