"""The worker heartbeat behind `/readyz`: with Redis every worker writes a key with a TTL each
maintenance round (every 2 s), so a killed worker drops out within the TTL."""

import json
import os
import socket
import time
import uuid

from django.conf import settings

from chat.redis_clients import key, probe_client


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def worker_beat(*, worker_id: str, running: int) -> None:
    """Record that this worker is alive (a Redis key expiring after the heartbeat TTL)."""
    if settings.REDIS_URL:
        value = json.dumps({"running": running, "at": time.time()})
        ttl_ms = int(settings.CHAT_WORKER_HEARTBEAT_TTL_SECONDS * 1000)
        await probe_client.get().set(key("worker", worker_id), value, px=ttl_ms)


async def worker_gone(*, worker_id: str) -> None:
    """A worker that stops cleanly stops counting at once, not after the TTL."""
    if settings.REDIS_URL:
        await probe_client.get().delete(key("worker", worker_id))


async def workers_beating() -> int:
    """How many workers beat within the TTL."""
    count = 0
    async for _ in probe_client.get().scan_iter(match=key("worker", "*"), count=100):
        count += 1
    return count
