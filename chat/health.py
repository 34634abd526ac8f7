"""Liveness and readiness for load balancers and orchestrators.

`/healthz` says the process answers. `/readyz` says it can serve a chat: the database answers, the
channel layer answers, and at least one generation worker is alive (chat.engine.heartbeat with
Redis; embedded, the in-process worker, alive while its task runs).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from chat.engine import jobs
from chat.redis_clients import PROBE_TIMEOUT_SECONDS, probe_client

logger = logging.getLogger(__name__)


def _database_answers() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _channel_layer_answers() -> None:
    if settings.REDIS_URL:
        await probe_client.get().ping()


async def _workers_present() -> None:
    if await jobs.workers_alive() < 1:
        raise RuntimeError("no generation worker sent a heartbeat recently")


async def _check(name: str, probe: Callable[[], Awaitable[object]]) -> tuple[str, str | None]:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await probe()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
        logger.warning("readiness check %s failed: %s", name, exc.__class__.__name__)
        return name, exc.__class__.__name__  # not the text: it may name hosts and users
    return name, None


async def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the channel layer and at least one worker answer; 503 says which did not."""
    results = await asyncio.gather(
        # Off the request's thread; database_sync_to_async hands the connection back (to the pool) after.
        _check("database", database_sync_to_async(_database_answers, thread_sensitive=False)),
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
