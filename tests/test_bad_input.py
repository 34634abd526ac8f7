"""Bad input is refused cleanly on both transports: a documented error code in the usual shape, nothing
written, the same answer on SQLite and PostgreSQL. Requests go through the real middleware with CSRF
checks on, as a browser's or curl's would."""

import orjson
import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from chat import services
from chat.models import Conversation, Message
from tests.engine_fixtures import TEST_MODEL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

CSRF_TOKEN = "k" * 32


@pytest.fixture
async def user(make_user):
    return await database_sync_to_async(make_user)()


@pytest.fixture
async def conversation(user):
    return await database_sync_to_async(services.conversation_create)(owner=user, model=TEST_MODEL, title="Kept")


@pytest.fixture
async def client(user):
    """A logged-in client that enforces CSRF and sends a valid token, like the chat page's script."""
    client = AsyncClient(enforce_csrf_checks=True, raise_request_exception=False)
    await client.aforce_login(user)
    client.cookies["csrftoken"] = CSRF_TOKEN
    return client


async def request(client, method, path, body, content_type="application/json"):
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return await getattr(client, method)(path, raw, content_type=content_type, headers={"X-CSRFToken": CSRF_TOKEN})


@database_sync_to_async
def rows():
    return Conversation.objects.count(), Message.objects.count()


@database_sync_to_async
def stored(conversation):
    return Conversation.objects.values("title", "model", "system_prompt").get(pk=conversation.pk)


def refused(response, status, code):
    assert response["Content-Type"] == "application/json"
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    return response.json()["error"]["message"]


# --- wrong types ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [1, 1.5, True, ["x"], {}, 0, False, []], ids=repr)
async def test_a_model_that_is_not_a_string_is_refused_as_invalid(client, conversation, model):
    before = await rows()
    created = await request(client, "post", "/api/conversations", {"model": model})
    assert "`model`" in refused(created, 400, "invalid")
    patched = await request(client, "patch", f"/api/conversations/{conversation.pk}", {"model": model})
    assert "`model`" in refused(patched, 400, "invalid")
    assert await rows() == before
    assert (await stored(conversation))["model"] == TEST_MODEL


@pytest.mark.parametrize("value", ["abc", "1", 1.0, True, None, [1], {"id": 1}], ids=repr)
@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe", "send", "cancel"])
async def test_a_conversation_id_that_is_not_an_integer_is_invalid_not_missing(connect, user, kind, value):
    before = await rows()
    async with connect(user) as ws:
        await ws.send({"type": kind, "conversation": value, "client_id": "c", "content": "hi"})
        error = await ws.receive_type("error")
    assert error["code"] == "invalid" and "`conversation`" in error["message"]
    assert await rows() == before


# --- NUL characters ------------------------------------------------------------------------------


@pytest.mark.cluster  # PostgreSQL cannot store a NUL, SQLite can: both must refuse it
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/conversations", {"title": "a\x00b"}, "title"),
        ("/api/conversations", {"system_prompt": "be\x00kind"}, "system_prompt"),
        ("/api/conversations/{pk}", {"title": "a\x00b"}, "title"),
        ("/api/conversations/{pk}", {"system_prompt": "\x00"}, "system_prompt"),
        ("/api/conversations/{pk}/messages", {"client_id": "c", "content": "hi\x00there"}, "content"),
        ("/api/conversations/{pk}/messages", {"client_id": "c\x00", "content": "hi"}, "client_id"),
    ],
)
async def test_a_nul_character_is_refused_as_invalid_naming_the_field(client, conversation, path, body, field):
    before = await rows()
    method = "patch" if path.endswith("{pk}") else "post"
    response = await request(client, method, path.format(pk=conversation.pk), body)
    assert f"`{field}`" in refused(response, 400, "invalid")
    assert await rows() == before
    assert await stored(conversation) == {"title": "Kept", "model": TEST_MODEL, "system_prompt": ""}


@pytest.mark.cluster
async def test_a_nul_character_in_a_websocket_message_is_refused_as_invalid(connect, user, conversation):
    async with connect(user) as ws:
        error = await ws.send_message(conversation.pk, "hi\x00there")
    assert error["code"] == "invalid" and "`content`" in error["message"]
    assert await rows() == (1, 0)


# --- sizes and encodings -------------------------------------------------------------------------


async def test_the_websocket_frame_limit_counts_utf8_bytes_not_characters(connect, user, settings):
    assert settings.CHAT_WS_MAX_FRAME_BYTES == 262_144
    frame = '{"type": "ping", "pad": "' + "\U0001f600" * 200_000 + '"}'
    assert len(frame) < 262_144 < 800_000 <= len(frame.encode())
    async with connect(user) as ws:
        await ws.send_raw(frame)
        error = await ws.receive_type("error")
        await ws.send({"type": "ping"})
        assert (await ws.receive())["type"] == "pong"
    assert error["code"] == "frame_too_large"


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
async def test_a_3_mb_body_is_refused_with_413_frame_too_large(client, conversation, content_type):
    body = orjson.dumps({"client_id": "c", "content": "x" * 3_000_000})
    response = await request(client, "post", f"/api/conversations/{conversation.pk}/messages", body, content_type)
    refused(response, 413, "frame_too_large")
    assert await rows() == (1, 0)


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data; boundary=", "multipart/form-data; boundary=\x7f", "multipart/form-data"]
)
async def test_a_multipart_body_with_a_bad_boundary_is_refused_as_bad_json(client, conversation, content_type):
    body = b'--x\r\nContent-Disposition: form-data; name="content"\r\n\r\nhi\r\n--x--\r\n'
    response = await request(client, "post", f"/api/conversations/{conversation.pk}/messages", body, content_type)
    refused(response, 400, "bad_json")
    assert await rows() == (1, 0)


async def test_a_well_formed_multipart_body_is_refused_as_bad_json(client, conversation):
    body = b'--x\r\nContent-Disposition: form-data; name="content"\r\n\r\nhi\r\n--x--\r\n'
    path = f"/api/conversations/{conversation.pk}/messages"
    response = await request(client, "post", path, body, "multipart/form-data; boundary=x")
    refused(response, 400, "bad_json")


# --- CSRF ----------------------------------------------------------------------------------------


async def test_a_csrf_failure_on_the_api_answers_the_json_error_shape(client, conversation):
    client.cookies.pop("csrftoken")
    response = await client.post(
        f"/api/conversations/{conversation.pk}/messages",
        orjson.dumps({"client_id": "c", "content": "hi"}),
        content_type="application/json",
    )
    assert "X-CSRFToken" in refused(response, 403, "csrf_failed")
    assert await rows() == (1, 0)


async def test_a_csrf_failure_on_a_page_still_answers_djangos_page():
    response = await AsyncClient(enforce_csrf_checks=True).post("/accounts/login/", {"username": "a", "password": "b"})
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


async def test_a_frame_with_a_lone_surrogate_is_counted_without_crashing_the_socket(connect, user, settings):
    settings.CHAT_WS_MAX_FRAME_BYTES = 64
    async with connect(user) as ws:
        await ws.send_raw('{"type": "ping", "pad": "' + "\ud800" * 40 + '"}')
        error = await ws.receive_type("error")
        await ws.send({"type": "ping"})
        assert (await ws.receive())["type"] == "pong"
    assert error["code"] == "frame_too_large"


# --- routes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/conversations/abc", "/api/nothing-here", "/api/conversations/1/unknown", "/api/"]
)
async def test_an_unknown_api_route_answers_the_json_not_found_shape(client, path):
    refused(await client.get(path), 404, "not_found")
    refused(await request(client, "post", path, {}), 404, "not_found")
