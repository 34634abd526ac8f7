"""How the engine rides out what it does not control: a backoff for retry loops, best-effort live
operations (Redis may be away; the database stays the truth) and database calls that must land."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connections

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Backoff:
    """Exponential delays for a retry loop: `base`, twice that, … up to `cap`; `reset()` after a success."""

    def __init__(self, *, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    @staticmethod
    def delay_for(attempt: int, *, base: float, cap: float) -> float:
        """The wait before retry number `attempt` (1 for the first)."""
        return min(base * 2 ** max(attempt - 1, 0), cap)

    def next_delay(self) -> float:
        self.attempt += 1
        return self.delay_for(self.attempt, base=self.base, cap=self.cap)

    def reset(self) -> None:
        self.attempt = 0

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_delay())


async def best_effort(awaitable: Awaitable[object]) -> None:
    """Live-log, group and heartbeat operations: Redis may be away; the database stays the truth."""
    try:
        await awaitable
    except Exception:  # noqa: BLE001 - logged; the caller goes on without it
        logger.warning("live operation failed", exc_info=True)


DATABASE_RETRY_SECONDS = 60.0  # a database restart or failover; longer than that, the call fails


async def with_database_retry(func: Callable[..., T], /, **kwargs: Any) -> T:
    """The claim and the final save must land: retry through a short database outage (about a minute;
    each attempt may itself wait up to the pool timeout for a connection)."""
    backoff = Backoff(base=0.25, cap=2.0)
    deadline = time.monotonic() + DATABASE_RETRY_SECONDS
    while time.monotonic() < deadline:
        try:
            return await database_sync_to_async(func)(**kwargs)
        except Exception:  # noqa: BLE001 - the database may be restarting; the last attempt raises
            logger.warning("database call %s for reply %s failed; retrying", func.__name__, kwargs.get("message_id"))
            await sync_to_async(connections.close_all)()
            await backoff.sleep()
    return await database_sync_to_async(func)(**kwargs)
