"""How the engine rides out what it does not control: a backoff for retry loops, the retry delay and
timeout errors of a provider's stream, best-effort live operations (Redis may be away; the database
stays the truth) and database calls that must land, on the worker's own database thread where the
database lets two threads write."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from channels.db import DatabaseSyncToAsync, database_sync_to_async
from django.conf import settings
from django.db import connection, connections

from chat.providers.base import ProviderError

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


_worker_database_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-worker-db")


def on_worker_database_thread(func: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """`func` as the worker's database work runs it: claims, checkpoint batches, final saves.

    On a SQLite file (WAL) the worker's writes run on a thread and connection of their own, so that
    they overlap the sends' database calls on asgiref's one thread instead of queueing behind them
    (the claim of reply 200 behind 199 sends): readers never block the writer, and each write waits
    for the other thread's (busy timeout, transactions begun IMMEDIATE) instead of failing. SQLite in
    memory with a shared cache fails a second writer at once ("database table is locked"), so there
    they stay on asgiref's thread; on PostgreSQL too (each pooled connection is its own writer; the
    checkpoint batches have their own thread there, chat.engine.checkpoints)."""
    if connection.vendor == "sqlite" and not connection.is_in_memory_db():
        return DatabaseSyncToAsync(func, thread_sensitive=False, executor=_worker_database_thread)
    return database_sync_to_async(func)


DATABASE_RETRY_SECONDS = 60.0  # a database restart or failover; longer than that, the call fails


async def with_database_retry(func: Callable[..., T], /, **kwargs: Any) -> T:
    """The claim and the final save must land: retry through a short database outage (about a minute;
    each attempt may itself wait up to the pool timeout for a connection)."""
    backoff = Backoff(base=0.25, cap=2.0)
    deadline = time.monotonic() + DATABASE_RETRY_SECONDS
    call = on_worker_database_thread(func)
    while time.monotonic() < deadline:
        try:
            return await call(**kwargs)
        except Exception:  # noqa: BLE001 - the database may be restarting; the last attempt raises
            logger.warning("database call %s for reply %s failed; retrying", func.__name__, kwargs.get("message_id"))
            await on_worker_database_thread(connections.close_all)()  # that thread's connection
            await backoff.sleep()
    return await call(**kwargs)


def retry_delay(attempt: int, error: ProviderError) -> float:
    """The provider's `retry-after` wins; otherwise the exponential backoff."""
    if error.retry_after is not None:
        return min(error.retry_after, settings.CHAT_RETRY_MAX_DELAY)
    return Backoff.delay_for(attempt, base=settings.CHAT_RETRY_BASE_DELAY, cap=settings.CHAT_RETRY_MAX_DELAY)


def timeout_error(now: float, started: float, total_deadline: float, first_token_at: float | None) -> ProviderError:
    if now >= total_deadline - 0.01:
        limit = settings.CHAT_TIMEOUT_TOTAL
        return ProviderError("timeout", f"The reply took longer than the {limit:g} s limit and was stopped.")
    if first_token_at is None:
        limit = settings.CHAT_TIMEOUT_FIRST_TOKEN
        return ProviderError("timeout", f"The model did not start answering within {limit:g} s.")
    limit = settings.CHAT_TIMEOUT_IDLE
    return ProviderError("timeout", f"The model stopped sending text for more than {limit:g} s.")
