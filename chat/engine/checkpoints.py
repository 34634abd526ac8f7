"""The worker's checkpoint writer: the checkpoints every running reply asks for at one moment, saved in
one transaction on one thread.

A reply checkpoints about once a second; at 200 replies that was 200 thread hops and 200 commits a
second, each queued behind the claims and final saves on the worker's one database thread. Each reply
still asks for its own checkpoint (Generation._checkpoint) and gets its own outcome back (saved, stop
requested, lease lost, budget exceeded); the writer only gathers those asked for within a tenth of a
second (BATCH_SECONDS) and writes them together. A batch that fails (the database away) fails every checkpoint in it,
each reported by its reply as before and retried a second later.

On PostgreSQL the batches run on a thread (and connection) of their own, like the lease renewals
(chat.engine.worker), so that checkpoints never queue behind claims and final saves. On SQLite, which
takes one writer at a time, they run on the worker's database thread with its claims and final saves
(chat.engine.resilience.on_worker_database_thread: its own thread on a file, asgiref's in memory).
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.db import DatabaseSyncToAsync
from django.db import connection, transaction

from chat import services
from chat.engine.resilience import on_worker_database_thread
from chat.per_loop import PerLoop

Progress = Mapping[str, Any]  # the keyword arguments of services.generation_checkpoint

_checkpoint_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-checkpoints")


def write_batch(batch: Sequence[Progress]) -> list[services.Checkpoint | Exception]:
    """Every checkpoint of the batch in one transaction (one UPDATE: services.generation_checkpoints),
    each reply's outcome in the batch's order. A database error fails the whole batch (raised); any
    other error fails its own checkpoint only (its outcome is the exception), as when each checkpoint
    ran alone."""
    with transaction.atomic():
        return services.generation_checkpoints(batch)


def _on_database_thread() -> Callable[[Sequence[Progress]], Awaitable[list[services.Checkpoint | Exception]]]:
    if connection.vendor == "sqlite":
        return on_worker_database_thread(write_batch)
    return DatabaseSyncToAsync(write_batch, thread_sensitive=False, executor=_checkpoint_thread)


# Batches start at most this often: the checkpoints asked for in between wait for the next one. A reply
# checkpoints once a second, so a lone reply never waits; 200 make about 1 / BATCH_SECONDS batches a second.
BATCH_SECONDS = 0.1


class CheckpointWriter:
    """Gathers the checkpoints asked for while a batch is being written, or within BATCH_SECONDS of the
    last batch's start, and writes them as the next batch. `hurry()` cuts the wait short: a reply that
    ended waits for its last checkpoint before its final save (and its last frames)."""

    def __init__(
        self,
        write: Callable[[Sequence[Progress]], Awaitable[list[services.Checkpoint | Exception]]],
        *,
        batch_seconds: float = BATCH_SECONDS,
    ) -> None:
        self._write = write
        self.batch_seconds = batch_seconds
        self._waiting: list[tuple[Progress, asyncio.Future[services.Checkpoint]]] = []
        self._writing: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()
        self._last_batch_at = float("-inf")
        self.batches = 0  # written so far (for tests and the benchmark)

    def hurry(self) -> None:
        """Write the checkpoints waiting now without waiting for more."""
        self._hurry.set()

    async def _gather(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_batch_at + self.batch_seconds - loop.time()
        if wait > 0 and not self._hurry.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._hurry.wait()
        self._hurry.clear()
        self._last_batch_at = loop.time()

    async def save(self, progress: Progress) -> services.Checkpoint:
        """This reply's checkpoint, written with the others of its moment; raises what the batch raised."""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[services.Checkpoint] = loop.create_future()
        self._waiting.append((progress, outcome))
        if self._writing is None or self._writing.done():
            self._writing = loop.create_task(self._write_all())
        return await outcome

    async def _write_all(self) -> None:
        while self._waiting:
            try:
                await self._gather()
            except BaseException:
                for _, outcome in self._waiting:
                    outcome.cancel()
                self._waiting = []
                raise
            batch, self._waiting = self._waiting, []
            try:
                outcomes = await self._write([progress for progress, _ in batch])
            except Exception as exc:  # noqa: BLE001 - each reply reports it as its own failed checkpoint
                for _, outcome in batch:
                    if not outcome.done():
                        outcome.set_exception(exc)
                continue
            except BaseException:
                for _, outcome in batch + self._waiting:
                    outcome.cancel()
                self._waiting = []
                raise
            finally:
                self.batches += 1
            for (_, outcome), result in zip(batch, outcomes, strict=True):
                if outcome.done():  # its reply's checkpoint task was cancelled meanwhile
                    continue
                if isinstance(result, Exception):
                    outcome.set_exception(result)
                else:
                    outcome.set_result(result)


_writers: PerLoop[CheckpointWriter] = PerLoop(lambda: CheckpointWriter(_on_database_thread()))


def checkpoint_writer() -> CheckpointWriter:
    """This event loop's writer (one per worker process; embedded, one per server loop)."""
    return _writers.get()
