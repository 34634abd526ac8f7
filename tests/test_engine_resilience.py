"""chat/engine/resilience.py: on a SQLite file the worker's database calls run on a thread of their own,
beside the sends' calls on asgiref's one thread, not behind them."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from chat import services
from chat.engine.checkpoints import write_batch
from chat.engine.resilience import on_worker_database_thread, with_database_retry
from chat.models import Message
from tests.engine_helpers import pending_reply


@pytest.fixture
def on_a_sqlite_file(transactional_db) -> None:
    """The test database as the test runs it (a file since config/settings.py's TEST NAME)."""
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        pytest.skip("the worker's own database thread is for a SQLite file (WAL)")


class HeldThread:
    """asgiref's one database thread kept busy (a long send, say) until the test lets it go."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def hold(self) -> str:
        self.started.set()
        self.release.wait(timeout=30)
        return threading.current_thread().name

    async def __aenter__(self) -> "HeldThread":
        self.task = asyncio.ensure_future(database_sync_to_async(self.hold)())
        await asyncio.to_thread(self.started.wait, 30)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release.set()
        self.holder = await self.task


@pytest.mark.usefixtures("on_a_sqlite_file")
async def test_on_a_sqlite_file_the_workers_calls_run_on_its_own_thread_not_asgirefs():
    name = await on_worker_database_thread(lambda: threading.current_thread().name)()

    async with HeldThread() as held:
        pass

    assert name.startswith("chat-worker-db") and held.holder != name


@pytest.mark.usefixtures("on_a_sqlite_file", "engine")
async def test_on_a_sqlite_file_a_claim_checkpoint_and_final_save_land_while_asgirefs_thread_is_busy(make_user):
    owner = await database_sync_to_async(make_user)()
    reply = await database_sync_to_async(pending_reply)(owner)

    async with HeldThread():
        context = await with_database_retry(services.generation_begin, message_id=reply.pk, worker_id="w")
        progress = {"message_id": reply.pk, "parts": [("text", "Half")], "seq": 2, "lease_holder": context.lease_holder}
        outcomes = await on_worker_database_thread(write_batch)([progress])
        claimed = await on_worker_database_thread(Message.objects.get)(pk=reply.pk)

    assert outcomes == [services.Checkpoint.SAVED]
    assert claimed.status == Message.Status.STREAMING and claimed.content == "Half"
