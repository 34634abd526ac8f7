"""A database outage, or PostgreSQL out of connections, answers clearly on every transport: 503
`unavailable` with `Retry-After` on the API, a plain 503 page on pages and the admin, close 4503 on a
new socket. Never a 500 and never a traceback, whatever DEBUG says."""

import asyncio

import orjson
import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.signals import user_logged_in
from django.db import OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import AsyncClient, Client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

# What psycopg reports when every PostgreSQL connection slot is taken; Django raises it as OperationalError.
TOO_MANY_CLIENTS = "connection failed: FATAL:  sorry, too many clients already"


@pytest.fixture
def cut_database(monkeypatch):
    """Call it to take the database away: every connection is closed and every new one is refused."""

    def refuse(self):
        raise OperationalError(TOO_MANY_CLIENTS)

    def cut():
        connections.close_all()
        monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", refuse)

    return cut


@pytest.fixture
def logged_in(make_user, cut_database):
    """A staff user's logged-in test client (and its conversation id), then the database goes away."""
    from chat import services
    from tests.engine_fixtures import TEST_MODEL

    user = make_user()
    user.is_staff = user.is_superuser = True
    user.save()
    conversation = services.conversation_create(owner=user, model=TEST_MODEL)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    cut_database()
    return client, conversation.pk


def assert_no_traceback(body: bytes) -> None:
    for leak in (b"Traceback", b"OperationalError", b"too many clients", b"ensure_connection"):
        assert leak not in body


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/conversations", None),
        ("post", "/api/conversations", {"title": "x"}),
        ("get", "/api/conversations/{pk}", None),
        ("patch", "/api/conversations/{pk}", {"title": "y"}),
        ("post", "/api/conversations/{pk}/messages", {"client_id": "c", "content": "hi"}),
        ("post", "/api/conversations/{pk}/cancel", {}),
        ("get", "/api/conversations/{pk}/events", None),
    ],
)
async def test_the_api_answers_503_unavailable_with_retry_after_while_the_database_is_down(
    logged_in, settings, debug, method, path, body
):
    settings.DEBUG = debug
    sync_client, pk = logged_in
    client = AsyncClient(raise_request_exception=False)
    client.cookies = sync_client.cookies
    kwargs = {"content_type": "application/json"} if body is not None else {}
    payload = () if body is None else (orjson.dumps(body),)
    response = await getattr(client, method)(path.format(pk=pk), *payload, **kwargs)
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "unavailable"
    assert int(response["Retry-After"]) > 0
    assert_no_traceback(response.content)


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/"),
        ("get", "/c/{pk}/"),
        ("get", "/accounts/login/"),
        ("post", "/accounts/logout/"),
        ("get", "/admin/"),
        ("get", "/admin/chat/conversation/"),
    ],
)
def test_a_page_answers_a_plain_503_page_while_the_database_is_down(logged_in, settings, debug, method, path):
    settings.DEBUG = debug
    client, pk = logged_in
    response = getattr(client, method)(path.format(pk=pk))
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert int(response["Retry-After"]) > 0
    assert b"try again" in response.content.lower()
    assert_no_traceback(response.content)


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
def test_a_database_lost_before_the_session_is_saved_answers_the_503_page(make_user, cut_database, settings, debug):
    settings.DEBUG = debug
    user = make_user()
    # The login itself succeeds; the database goes away before the session middleware saves the session.
    user_logged_in.connect(cut_when_logged_in := lambda **kwargs: cut_database(), weak=False)
    try:
        response = Client(raise_request_exception=False).post(
            "/accounts/login/", {"username": user.username, "password": "pw"}
        )
    finally:
        user_logged_in.disconnect(cut_when_logged_in)
    assert response.status_code == 503
    assert_no_traceback(response.content)


async def test_a_new_socket_is_accepted_then_closed_with_4503_while_the_database_is_down(logged_in, settings):
    from config.asgi import application

    settings.DEBUG = True
    client, _ = logged_in
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    async with asyncio.timeout(10):
        closed = await communicator.receive_output(timeout=10)
    assert closed == {"type": "websocket.close", "code": 4503, "reason": "unavailable, retry"}
    await communicator.wait(timeout=5)


async def test_an_sse_stream_that_loses_the_database_mid_stream_ends_with_unavailable_not_a_traceback(
    make_user, monkeypatch, settings
):
    from chat import services, sessions
    from tests.engine_fixtures import TEST_MODEL

    settings.CHAT_SESSION_CHECK_SECONDS = 0.01  # the stream re-checks its session at once, meeting the outage
    settings.CHAT_SSE_HEARTBEAT_SECONDS = 0.05  # and does not wait long for a frame before it does
    user = await asyncio.to_thread(make_user)
    conversation = await asyncio.to_thread(services.conversation_create, owner=user, model=TEST_MODEL)
    client = AsyncClient(raise_request_exception=False)
    await client.aforce_login(user)

    def refuse(**kwargs):
        raise OperationalError(TOO_MANY_CLIENTS)

    response = await client.get(f"/api/conversations/{conversation.pk}/events")
    assert response.status_code == 200
    stream = aiter(response.streaming_content)
    first = await anext(stream)
    assert b"event: snapshot" in first
    monkeypatch.setattr(sessions, "session_user_is", refuse)
    rest = b"".join([chunk async for chunk in stream])

    assert b"event: error" in rest and b'"code":"unavailable"' in rest
    assert_no_traceback(rest)
