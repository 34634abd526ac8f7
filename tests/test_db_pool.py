"""The database pool: a process holds at most its configured number of PostgreSQL connections, however
many sockets, streams and requests it serves, and every one of them hands its connection back."""

import asyncio
import sys
import threading
import traceback
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import psycopg
import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections

from chat import services
from tests.engine_fixtures import TEST_MODEL, ChatSocket, session_cookie_for
from tests.fake_upstream import Scenario
from tests.harness.waiting import wait_for
from tests.test_model_limits import settings_from

pytestmark = [pytest.mark.cluster_only, pytest.mark.timeout(600)]

USERS = 150
TABS = 2  # sockets per user, 300 in all: one tab sends, both follow the reply
EVENT_STREAMS = 30  # SSE streams held open meanwhile: more than a pool holds
READINESS_PROBES = 20  # /readyz runs its database check off the request's thread
HTTP_AT_ONCE = 5  # requests in flight together, well within the pool
REPLY_TOKENS = 40


def test_each_process_gets_a_pool_sized_from_the_environment(monkeypatch):
    built = settings_from(
        monkeypatch,
        DATABASE_URL="postgres://chat@db.internal:5432/streamchat",
        CHAT_DB_POOL_MIN_SIZE="1",
        CHAT_DB_POOL_MAX_SIZE="4",
        CHAT_DB_POOL_TIMEOUT="2.5",
        CHAT_DB_APPLICATION_NAME="streamchat-worker-1",
    )
    database = built["DATABASES"]["default"]
    assert database["CONN_MAX_AGE"] == 0  # each call hands its connection back to the pool
    assert database["OPTIONS"] == {
        "pool": {"min_size": 1, "max_size": 4, "timeout": 2.5},
        "application_name": "streamchat-worker-1",
    }


@pytest.mark.parametrize(
    "sizes",
    [
        {"CHAT_DB_POOL_MAX_SIZE": "0"},
        {"CHAT_DB_POOL_MIN_SIZE": "5", "CHAT_DB_POOL_MAX_SIZE": "4"},
        {"CHAT_DB_POOL_MIN_SIZE": "-1"},
        {"CHAT_DB_POOL_TIMEOUT": "0"},
    ],
)
def test_a_pool_that_could_not_serve_is_refused_at_start(monkeypatch, sizes):
    with pytest.raises(ImproperlyConfigured, match="The database pool needs 0 <= CHAT_DB_POOL_MIN_SIZE"):
        settings_from(monkeypatch, DATABASE_URL="postgres://chat@db.internal:5432/streamchat", **sizes)


class ConnectionCensus:
    """Counts the test database's backends by `application_name` from a connection of its own (not
    one of the pool's), in a thread, and keeps the highest count seen for each name."""

    def __init__(self) -> None:
        db = connection.settings_dict
        self.database = db["NAME"]
        self._connection = psycopg.connect(
            host=db["HOST"] or "127.0.0.1",
            port=db["PORT"] or 5432,
            user=db["USER"],
            password=db["PASSWORD"] or None,
            dbname=self.database,
            application_name="pool-census",
            autocommit=True,
        )
        self.highest: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pool-census", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rows = self._connection.execute(
                "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = %s GROUP BY 1",
                [self.database],
            ).fetchall()
            for name, count in rows:
                self.highest[name] = max(self.highest[name], count)
            self.samples += 1
            self._stop.wait(0.02)

    def __enter__(self) -> "ConnectionCensus":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self._connection.close()


class RealHttp(HttpCommunicator):
    """channels' HTTP test client without its mock: channels.testing turns database_sync_to_async's
    connection cleanup off while a test waits on the application; here it must run as under Daphne."""

    send_input = ApplicationCommunicator.send_input
    receive_output = ApplicationCommunicator.receive_output


class RealWebsocket(WebsocketCommunicator):
    """channels' WebSocket test client without that mock (see RealHttp)."""

    send_input = ApplicationCommunicator.send_input
    receive_output = ApplicationCommunicator.receive_output


def get(path: str, cookie: bytes) -> RealHttp:
    """A GET through the real ASGI application (Django's handler, its request threads and signals)."""
    from config.asgi import application

    return RealHttp(application, "GET", path, headers=[(b"host", b"localhost"), (b"cookie", cookie)])


async def requested(requests: list[RealHttp]) -> list[dict[str, Any]]:
    """The responses, a few requests at a time: a burst of them all at once would wait for the pool's
    connections, and on a slow machine past its timeout (which another test covers)."""
    at_once = asyncio.Semaphore(HTTP_AT_ONCE)

    async def one(request: RealHttp) -> dict[str, Any]:
        async with at_once:
            return await request.get_response(timeout=120)

    return await asyncio.gather(*(one(request) for request in requests))


async def open_tab(cookie: bytes) -> ChatSocket:
    """A logged-in WebSocket to the real ASGI application, past its `hello`."""
    from config.asgi import application

    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)]
    communicator = RealWebsocket(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect(timeout=60)
    assert connected, "the socket was refused"
    socket = ChatSocket(communicator)
    assert (await socket.receive(timeout=60))["type"] == "hello"
    return socket


async def body_until(stream: RealHttp, marker: bytes, timeout: float = 120) -> bytes:
    """Read a streamed response until its body holds `marker`."""
    body = b""
    async with asyncio.timeout(timeout):
        while marker not in body:
            message = await stream.receive_output(timeout)
            if message["type"] == "http.response.start":
                assert message["status"] == 200, message
            else:
                body += message.get("body", b"")
    return body


@database_sync_to_async
def tabs_and_conversations(count: int) -> list[tuple[Any, Any]]:
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"pool-{uuid.uuid4().hex[:12]}") for _ in range(count)
    )
    return [(user, services.conversation_create(owner=user, model=TEST_MODEL)) for user in users]


@database_sync_to_async
def reply_states(ids: list[int]) -> list[tuple[str, str]]:
    from chat.models import Message

    return list(Message.objects.filter(pk__in=ids).values_list("status", "content"))


class PoolLoans:
    """Who holds each connection of this process's pool: the thread and the call that took it, so a
    connection that never comes back names its holder."""

    def __init__(self) -> None:
        self.pool = connection.pool
        self.out: dict[int, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def _getconn(self, *args: Any, **kwargs: Any) -> Any:
        taken = type(self.pool).getconn(self.pool, *args, **kwargs)
        holder = f"thread {threading.current_thread().name} took it:\n" + "".join(traceback.format_stack(limit=25)[:-1])
        with self._lock:
            self.out[id(taken)] = (threading.get_ident(), holder)
        return taken

    def _putconn(self, conn: Any) -> None:
        with self._lock:
            self.out.pop(id(conn), None)
        type(self.pool).putconn(self.pool, conn)

    def __enter__(self) -> "PoolLoans":
        self.pool.getconn, self.pool.putconn = self._getconn, self._putconn
        return self

    def __exit__(self, *exc_info: object) -> None:
        del self.pool.getconn, self.pool.putconn

    def holders(self) -> str:
        """Each connection still out: who took it, and where its thread is now."""
        frames = sys._current_frames()
        with self._lock:
            out = list(self.out.values())
        return "\n\n".join(
            holder
            + ("now at:\n" + "".join(traceback.format_stack(frames[ident])) if ident in frames else "its thread ended")
            for ident, holder in out
        )


@pytest.fixture
def loans() -> Any:
    with PoolLoans() as tracked:
        yield tracked


def pool_in_use() -> int:
    """Connections of this process's pool that are handed out right now."""
    stats = connection.pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


async def release_what_earlier_tests_hold() -> int:
    """Hand back the connection the database thread still holds, and say how many stay out.

    Unlike a request or a consumer, test code's own ORM calls (fixtures, pytest-django's setup) close
    nothing, so the threads that ran them may still hold a connection of this process's pool.
    """
    await database_sync_to_async(connections.close_all)()
    return pool_in_use()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("engine")
async def test_three_hundred_sockets_with_replies_use_no_more_connections_than_the_pool_holds(
    upstream, cluster_worker, loans
):
    upstream.default = Scenario.slow(count=REPLY_TOKENS, delay=0.05)
    held_before = await release_what_earlier_tests_hold()
    people = await tabs_and_conversations(USERS)
    cookies = [await session_cookie_for(user) for user, _ in people]
    conversations = [conversation.pk for _, conversation in people]
    with ConnectionCensus() as census:
        async with AsyncExitStack() as stack:
            tabs = [[await open_tab(cookie) for _ in range(TABS)] for cookie in cookies]
            for ws in (ws for sockets in tabs for ws in sockets):
                stack.push_async_callback(ws.close)
            for conversation, ws in ((c, ws) for c, sockets in zip(conversations, tabs, strict=True) for ws in sockets):
                await ws.send({"type": "subscribe", "conversation": conversation})
                assert (await ws.receive_type("snapshot", timeout=60))["message"] is None
            followed_over_sse = zip(conversations[:EVENT_STREAMS], cookies[:EVENT_STREAMS], strict=True)
            streams = [get(f"/api/conversations/{c}/events", cookie) for c, cookie in followed_over_sse]
            for stream in streams:
                await stream.send_input({"type": "http.request", "body": b"", "more_body": False})
                await body_until(stream, b"event: snapshot")

            accepted = [await sockets[0].send_message(c, "Hi") for c, sockets in zip(conversations, tabs, strict=True)]
            assert [frame["type"] for frame in accepted] == ["accepted"] * USERS, accepted
            reply_ids = [frame["message"]["id"] for frame in accepted]
            # While the replies run, every user loads the conversation over HTTP and probes ask for readiness.
            pages = [get(f"/api/conversations/{c}", cookie) for c, cookie in zip(conversations, cookies, strict=True)]
            assert [answer["status"] for answer in await requested(pages)] == [200] * USERS
            # A probe's answer depends on its 3 s timeouts; what counts here is that it hands its connection back.
            await requested([get("/readyz", b"") for _ in range(READINESS_PROBES)])

            followed = await asyncio.gather(
                *(
                    ws.reply_text(reply, timeout=240)
                    for reply, sockets in zip(reply_ids, tabs, strict=True)
                    for ws in sockets
                )
            )
            for stream in streams:
                await body_until(stream, b"event: done", timeout=240)
                await stream.send_input({"type": "http.disconnect"})
                await stream.wait(timeout=30)

    print(f"highest connection counts seen, by application: {dict(census.highest)}")
    options = settings.DATABASES["default"].get("OPTIONS", {})
    assert "pool" in options, f"no connection pool; the highest connection counts seen: {dict(census.highest)}"
    # Every socket and stream is closed: each connection they borrowed is back in the pool, once what the
    # test's own ORM calls left on its threads (150 logins, the census) is handed back too.

    async def pool_is_back() -> bool:
        return await release_what_earlier_tests_hold() <= held_before

    try:
        await wait_for(pool_is_back, timeout=60)
    except TimeoutError:
        pytest.fail(f"{pool_in_use() - held_before} connection(s) never came back; taken by:\n{loans.holders()}")
    expected = "".join(f" t{i}" for i in range(REPLY_TOKENS))
    assert {(text, done["message"]["status"]) for text, done in followed} == {(expected, "complete")}
    assert set(await reply_states(reply_ids)) == {("complete", expected)}
    size = options["pool"]["max_size"]
    mine, worker = options["application_name"], f"streamchat-{cluster_worker.popen.pid}"
    assert census.samples > 10 and census.highest[mine] >= 1, census.highest
    assert census.highest[mine] <= size, census.highest
    # The worker started with this process's environment, so with the same pool size.
    assert 1 <= census.highest[worker] <= size, census.highest


def take_every_free_connection() -> list[Any]:
    """Empty this process's pool: take connections until it has its max size and none is left to take."""
    held = []
    while (stats := connection.pool.get_stats())["pool_size"] < stats["pool_max"] or stats["pool_available"]:
        held.append(connection.pool.getconn(timeout=60))
    return held


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("engine")
async def test_a_frame_that_finds_the_pool_empty_fails_unavailable_after_the_pool_timeout(make_user):
    user = await database_sync_to_async(make_user)()
    conversation = await database_sync_to_async(services.conversation_create)(owner=user, model=TEST_MODEL)
    ws = await open_tab(await session_cookie_for(user))
    await release_what_earlier_tests_hold()  # the consumer's database thread must need the pool
    held = await asyncio.to_thread(take_every_free_connection)
    try:
        await ws.send({"type": "subscribe", "conversation": conversation.pk})
        timeout = settings.DATABASES["default"]["OPTIONS"]["pool"]["timeout"]
        refused = await ws.receive_type("error", timeout=timeout + 60)
    finally:
        for held_connection in held:
            connection.pool.putconn(held_connection)
    assert refused["code"] == "unavailable", refused
    await ws.send({"type": "subscribe", "conversation": conversation.pk})
    assert (await ws.receive_type("snapshot"))["message"] is None
    await ws.close()
