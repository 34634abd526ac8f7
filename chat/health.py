"""Liveness and readiness for load balancers and orchestrators, and the worker heartbeat behind them.

`/healthz` says the process answers. `/readyz` says it can serve a chat: the database answers, the
channel layer answers, and at least one generation worker is alive. With Redis every worker writes a
key with a TTL each maintenance round (every 2 s), so a killed worker drops out within the TTL;
embedded, the worker runs inside this process and is alive while its task runs.
"""

import asyncio
import json
import logging
import os
import socket
import time
import uuid

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 3.0
_clients: dict[asyncio.AbstractEventLoop, object] = {}


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _redis():  # noqa: ANN202 - redis.asyncio.Redis, imported lazily (embedded mode needs no redis)
    import redis.asyncio as redis

    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT_SECONDS, socket_connect_timeout=2
        )
        _clients[loop] = client
    return client


def _heartbeat_key(worker_id: str) -> str:
    return f"{settings.CHANNEL_LAYERS['default']['CONFIG']['prefix']}:worker:{worker_id}"


async def worker_beat(*, worker_id: str, running: int) -> None:
    """Record that this worker is alive (a Redis key expiring after the heartbeat TTL)."""
    if settings.REDIS_URL:
        value = json.dumps({"running": running, "at": time.time()})
        await _redis().set(_heartbeat_key(worker_id), value, px=int(settings.CHAT_WORKER_HEARTBEAT_TTL_SECONDS * 1000))


async def worker_gone(*, worker_id: str) -> None:
    """A worker that stops cleanly stops counting at once, not after the TTL."""
    if settings.REDIS_URL:
        await _redis().delete(_heartbeat_key(worker_id))


async def workers_alive() -> int:
    """How many workers beat within the TTL (embedded: 1 while the in-process worker runs)."""
    if not settings.REDIS_URL:
        from chat import worker

        worker.ensure_in_process_worker()
        return sum(1 for task in worker._in_process.values() if not task.done())
    count = 0
    async for _ in _redis().scan_iter(match=_heartbeat_key("*"), count=100):
        count += 1
    return count


def _database_answers() -> None:
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _channel_layer_answers() -> None:
    if settings.REDIS_URL:
        await _redis().ping()


async def _check(name: str, probe) -> tuple[str, str | None]:  # noqa: ANN001 - an awaitable factory
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await probe()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
        logger.warning("readiness check %s failed: %s", name, exc.__class__.__name__)
        return name, exc.__class__.__name__  # not the text: it may name hosts and users
    return name, None


async def _workers_present() -> None:
    if await workers_alive() < 1:
        raise RuntimeError("no generation worker sent a heartbeat recently")


async def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the channel layer and at least one worker answer; 503 says which did not."""
    results = await asyncio.gather(
        _check("database", sync_to_async(_database_answers, thread_sensitive=False)),
        _check("channel_layer", _channel_layer_answers),
        _check("workers", _workers_present),
    )
    failed = {name: error for name, error in results if error is not None}
    checks = {name: ("ok" if error is None else "failed") for name, error in results}
    body = {"status": "unavailable" if failed else "ok", "checks": checks, "errors": failed}
    return JsonResponse(body, status=503 if failed else 200)


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process serves requests (nothing else is checked, so a database outage restarts nothing)."""
    return JsonResponse({"status": "ok"})
