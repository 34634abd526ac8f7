"""Live connections follow their login session: Origin and login are checked when a socket opens;
logout closes the session's sockets and SSE streams at once; expiry or a password change closes them
at the next periodic re-check."""

import asyncio

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.test import AsyncClient

from chat import services
from tests.engine_fixtures import TEST_MODEL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]


@pytest.fixture
async def user(make_user):
    return await database_sync_to_async(make_user)()


async def logged_in_client(user) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def open_socket(client: AsyncClient, origin: bytes = b"http://localhost") -> WebsocketCommunicator:
    from config.asgi import application

    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"origin", origin), (b"host", b"localhost"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, code = await communicator.connect(timeout=10)
    assert connected, code
    assert (await communicator.receive_json_from())["type"] == "hello"
    return communicator


async def closed_with(communicator: WebsocketCommunicator, timeout: float = 5) -> int:
    async with asyncio.timeout(timeout):
        while True:
            output = await communicator.receive_output(timeout=timeout)
            if output["type"] == "websocket.close":
                return output["code"]


# --- opening a socket ----------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.parametrize("origin", [b"http://evil.example", b"null", b"http://localhost.evil.example"])
async def test_a_socket_from_a_foreign_origin_is_refused_even_with_a_valid_session(user, origin):
    from config.asgi import application

    client = await logged_in_client(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"origin", origin), (b"host", b"localhost"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert not connected


async def test_a_socket_without_an_origin_header_is_refused(user):
    from config.asgi import application

    client = await logged_in_client(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"host", b"localhost"), (b"cookie", cookie)]
    )
    connected, _ = await communicator.connect(timeout=10)
    assert not connected


@pytest.mark.cluster
@pytest.mark.parametrize("cookie", [None, b"sessionid=not-a-session", b"sessionid="])
async def test_an_anonymous_socket_is_accepted_then_closed_with_4401(cookie):
    from config.asgi import application

    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")] + ([(b"cookie", cookie)] if cookie else [])
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    # Not refused at the handshake: that is an HTTP 403, the answer to a foreign Origin.
    assert connected
    assert await closed_with(communicator) == 4401


# --- logout, expiry, password change ---------------------------------------------------------------


@pytest.mark.cluster
async def test_logout_closes_the_sessions_sockets_at_once_and_leaves_other_sessions_open(user):
    client, other = await logged_in_client(user), await logged_in_client(user)
    first, second, elsewhere = await open_socket(client), await open_socket(client), await open_socket(other)
    response = await client.post("/accounts/logout/")
    assert response.status_code == 302
    assert await closed_with(first) == 4403
    assert await closed_with(second) == 4403
    await elsewhere.send_json_to({"type": "ping"})
    assert (await elsewhere.receive_json_from())["type"] == "pong"
    await elsewhere.disconnect()


async def test_an_expired_session_closes_its_socket_at_the_next_check(user, settings):
    settings.CHAT_SESSION_CHECK_SECONDS = 0.2
    client = await logged_in_client(user)
    socket = await open_socket(client)
    await sync_to_async(Session.objects.update)(expire_date="2000-01-01T00:00:00Z")
    assert await closed_with(socket, timeout=3) == 4403


async def test_a_password_change_elsewhere_closes_the_sockets_of_other_sessions(user, settings):
    settings.CHAT_SESSION_CHECK_SECONDS = 0.2
    socket = await open_socket(await logged_in_client(user))

    @database_sync_to_async
    def change_password():
        user.set_password("a-new-long-pass-phrase")
        user.save()

    await change_password()
    assert await closed_with(socket, timeout=3) == 4403


async def test_a_deactivated_user_is_closed_at_the_next_check(user, settings):
    settings.CHAT_SESSION_CHECK_SECONDS = 0.2
    socket = await open_socket(await logged_in_client(user))
    user.is_active = False
    await database_sync_to_async(user.save)()
    assert await closed_with(socket, timeout=3) == 4403


async def test_a_live_session_keeps_its_socket_across_checks(user, settings):
    settings.CHAT_SESSION_CHECK_SECONDS = 0.1
    socket = await open_socket(await logged_in_client(user))
    await asyncio.sleep(0.5)
    await socket.send_json_to({"type": "ping"})
    assert (await socket.receive_json_from())["type"] == "pong"
    await socket.disconnect()


# --- SSE -------------------------------------------------------------------------------------------


async def sse_until_end(response, timeout: float = 5) -> list[bytes]:
    chunks = []
    async with asyncio.timeout(timeout):
        async for chunk in response.streaming_content:
            chunks.append(chunk)
    return chunks


def session_ended_event(chunks: list[bytes]) -> dict:
    last = chunks[-1].decode()
    assert last.startswith("event: error\n"), last
    return orjson.loads(last.split("data: ", 1)[1])


async def test_logout_ends_the_sessions_sse_streams_at_once(user, settings):
    settings.CHAT_SSE_HEARTBEAT_SECONDS = 30
    client = await logged_in_client(user)
    conversation = await database_sync_to_async(services.conversation_create)(owner=user, model=TEST_MODEL)
    response = await client.get(f"/api/conversations/{conversation.pk}/events")
    assert response.status_code == 200
    stream = response.streaming_content.__aiter__()
    assert b"snapshot" in await anext(stream)
    logout = asyncio.ensure_future(client.post("/accounts/logout/"))
    async with asyncio.timeout(5):
        rest = [chunk async for chunk in stream]
    await logout
    assert session_ended_event(rest)["code"] == "session_ended"


async def test_an_expired_session_ends_its_sse_stream_at_the_next_check(user, settings):
    settings.CHAT_SSE_HEARTBEAT_SECONDS = 0.1
    settings.CHAT_SESSION_CHECK_SECONDS = 0.2
    client = await logged_in_client(user)
    conversation = await database_sync_to_async(services.conversation_create)(owner=user, model=TEST_MODEL)
    response = await client.get(f"/api/conversations/{conversation.pk}/events")
    await sync_to_async(Session.objects.update)(expire_date="2000-01-01T00:00:00Z")
    chunks = await sse_until_end(response)
    assert session_ended_event(chunks)["code"] == "session_ended"
