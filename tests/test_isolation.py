"""Isolation between users: through every route and verb, another user's conversation or message
answers exactly like one that does not exist, and nothing of it is read, streamed or changed.

Alice owns the targets; Bob, logged in, attacks them with their real ids. Each test compares Bob's
answer for Alice's id with his answer for an id that does not exist, and checks the database is as it was.
"""

import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient, Client

from chat import services
from chat.models import Conversation, Message
from tests.engine_fixtures import TEST_MODEL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

MISSING = 987_654_321
SECRET_TITLE = "Alice's secret plans"
SECRET_TEXT = "the treasure is under the old oak"


def alice_world(make_user: Callable[..., Any]) -> dict[str, Any]:
    """Alice with a finished exchange, a running reply and a stopped one (each a real target)."""
    alice, bob = make_user("alice"), make_user("bob")
    done = services.conversation_create(owner=alice, model=TEST_MODEL, title=SECRET_TITLE, system_prompt=SECRET_TEXT)
    asked = Message.objects.create(conversation=done, role="user", content=f"Where? {SECRET_TEXT}", client_id="a1")
    reply = Message.objects.create(conversation=done, parent=asked, role="assistant", content=SECRET_TEXT)
    running = services.conversation_create(owner=alice, model=TEST_MODEL, title=SECRET_TITLE)
    asked = Message.objects.create(conversation=running, role="user", content=SECRET_TEXT)
    active = Message.objects.create(
        conversation=running, parent=asked, role="assistant", status="pending", content=SECRET_TEXT
    )
    stopped = services.conversation_create(owner=alice, model=TEST_MODEL, title=SECRET_TITLE)
    asked = Message.objects.create(conversation=stopped, role="user", content=SECRET_TEXT)
    Message.objects.create(
        conversation=stopped, parent=asked, role="assistant", status="cancelled", content=SECRET_TEXT
    )
    own = services.conversation_create(owner=bob, model=TEST_MODEL, title="Bob's own")
    return {
        "alice": alice,
        "bob": bob,
        "done": done,
        "reply": reply,
        "running": running,
        "active": active,
        "stopped": stopped,
        "own": own,
    }


def database_state() -> list[tuple]:
    conversations = Conversation.objects.order_by("pk").values_list("pk", "owner_id", "title", "model", "system_prompt")
    messages = Message.objects.order_by("pk").values_list(
        "pk", "conversation_id", "role", "status", "content", "cancel_requested", "superseded_at"
    )
    return [*conversations, *messages]


@pytest.fixture
def world(make_user) -> dict[str, Any]:
    return alice_world(make_user)


@pytest.fixture
def bob_client(world) -> Client:
    client = Client()
    client.force_login(world["bob"])
    return client


def answer(response) -> tuple[int, Any]:
    body = response.content
    return response.status_code, orjson.loads(body) if body and response["Content-Type"].startswith(
        "application/json"
    ) else body


def assert_like_missing(client: Client, method: str, url_of: Callable[[int], str], foreign: int, body: Any = None):
    before = database_state()
    kwargs = {"data": orjson.dumps(body).decode(), "content_type": "application/json"} if body is not None else {}
    foreign_answer = answer(getattr(client, method)(url_of(foreign), **kwargs))
    missing_answer = answer(getattr(client, method)(url_of(MISSING), **kwargs))
    assert foreign_answer == missing_answer
    assert foreign_answer[0] == 404
    assert SECRET_TEXT.encode() not in repr(foreign_answer).encode()
    assert database_state() == before


# --- pages ---------------------------------------------------------------------------------------


def test_the_conversation_page_of_another_user_is_a_404_like_a_missing_one(world, bob_client):
    assert_like_missing(bob_client, "get", lambda pk: f"/c/{pk}/", world["done"].pk)


def test_the_home_page_lists_only_the_users_own_conversations(world, bob_client):
    page = bob_client.get("/").content.decode()
    assert "Bob&#x27;s own" in page or "Bob's own" in page
    assert "secret plans" not in page and SECRET_TEXT not in page


# --- JSON endpoints --------------------------------------------------------------------------------


def test_the_api_lists_only_the_users_own_conversations(world, bob_client):
    listed = bob_client.get("/api/conversations").json()["conversations"]
    assert [c["id"] for c in listed] == [world["own"].pk]


def test_reading_another_users_conversation_answers_like_a_missing_one(world, bob_client):
    assert_like_missing(bob_client, "get", lambda pk: f"/api/conversations/{pk}", world["done"].pk)


def test_renaming_another_users_conversation_answers_like_a_missing_one(world, bob_client):
    body = {"title": "pwned", "system_prompt": "pwned", "model": TEST_MODEL}
    assert_like_missing(bob_client, "patch", lambda pk: f"/api/conversations/{pk}", world["done"].pk, body)


def test_deleting_another_users_conversation_answers_like_a_missing_one(world, bob_client):
    assert_like_missing(bob_client, "delete", lambda pk: f"/api/conversations/{pk}", world["done"].pk)


def test_sending_into_another_users_conversation_answers_like_a_missing_one(world, bob_client):
    body = {"client_id": "b1", "content": "hello"}
    assert_like_missing(bob_client, "post", lambda pk: f"/api/conversations/{pk}/messages", world["done"].pk, body)


def test_replaying_another_users_client_id_answers_like_a_missing_one(world, bob_client):
    body = {"client_id": "a1", "content": "what was the reply?"}
    assert_like_missing(bob_client, "post", lambda pk: f"/api/conversations/{pk}/messages", world["done"].pk, body)


def test_regenerating_another_users_reply_answers_like_a_missing_one(world, bob_client):
    body = {"client_id": "b2"}
    assert_like_missing(bob_client, "post", lambda pk: f"/api/conversations/{pk}/regenerate", world["done"].pk, body)


def test_editing_another_users_message_answers_like_a_missing_one(world, bob_client):
    body = {"client_id": "b3", "content": "edited"}
    assert_like_missing(bob_client, "post", lambda pk: f"/api/conversations/{pk}/edit", world["done"].pk, body)


def test_switching_in_another_users_conversation_answers_like_a_missing_one(world, bob_client):
    body = {"message": world["reply"].pk}
    assert_like_missing(bob_client, "post", lambda pk: f"/api/conversations/{pk}/switch", world["done"].pk, body)


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("switch", {}),
        ("regenerate", {"client_id": "b5"}),
        ("edit", {"client_id": "b6", "content": "edited"}),
    ],
)
def test_naming_another_users_message_in_ones_own_conversation_answers_like_a_missing_one(
    world, bob_client, action, body
):
    """Bob's own conversation, Alice's message id (a reply or a question): exactly like an id nobody has."""
    url = f"/api/conversations/{world['own'].pk}/{action}"
    before = database_state()

    def post(message_id: int) -> tuple[int, Any]:
        data = orjson.dumps({**body, "message": message_id}).decode()
        return answer(bob_client.post(url, data=data, content_type="application/json"))

    for target in (world["reply"], world["reply"].parent):
        foreign = post(target.pk)
        assert foreign == post(MISSING)
        assert foreign[0] == 404
        assert SECRET_TEXT not in repr(foreign)
    assert database_state() == before


def test_continuing_another_users_reply_answers_like_a_missing_one(world, bob_client):
    body = {"client_id": "b4"}
    assert_like_missing(bob_client, "post", lambda pk: f"/api/conversations/{pk}/continue", world["stopped"].pk, body)


def test_cancelling_another_users_running_reply_answers_like_a_missing_one(world, bob_client):
    assert_like_missing(bob_client, "post", lambda pk: f"/api/conversations/{pk}/cancel", world["running"].pk, {})


def test_anonymous_requests_to_the_api_are_refused_without_detail(world):
    client = Client()
    for url in ("/api/conversations", f"/api/conversations/{world['done'].pk}"):
        response = client.get(url)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


# --- SSE -------------------------------------------------------------------------------------------


async def test_streaming_another_users_conversation_over_sse_answers_like_a_missing_one(world):
    client = AsyncClient()
    await client.aforce_login(world["bob"])
    foreign = await client.get(f"/api/conversations/{world['running'].pk}/events")
    missing = await client.get(f"/api/conversations/{MISSING}/events")
    assert (foreign.status_code, foreign.json()) == (missing.status_code, missing.json())
    assert foreign.status_code == 404


async def test_resuming_with_another_users_message_id_over_sse_gives_only_the_users_own_conversation(world):
    client = AsyncClient()
    await client.aforce_login(world["bob"])
    response = await client.get(
        f"/api/conversations/{world['own'].pk}/events", headers={"Last-Event-ID": f"{world['active'].pk}:0"}
    )
    first = await anext(response.streaming_content)
    await response.streaming_content.aclose()
    assert b"snapshot" in first and SECRET_TEXT.encode() not in first
    data = orjson.loads(first.split(b"data: ", 1)[1])
    assert data == {"type": "snapshot", "conversation": world["own"].pk, "message": None}


# --- WebSocket: frames naming foreign ids inside an authorised connection ----------------------------

FRAMES = {
    "subscribe": lambda pk: {"type": "subscribe", "conversation": pk},
    "subscribe-after": lambda pk: {"type": "subscribe", "conversation": pk, "after": {"message": 1, "seq": 0}},
    "unsubscribe": lambda pk: {"type": "unsubscribe", "conversation": pk},
    "send": lambda pk: {"type": "send", "conversation": pk, "client_id": uuid.uuid4().hex, "content": "hi"},
    "send-replay": lambda pk: {"type": "send", "conversation": pk, "client_id": "a1", "content": "hi"},
    "regenerate": lambda pk: {"type": "regenerate", "conversation": pk, "client_id": uuid.uuid4().hex},
    "retry": lambda pk: {"type": "retry", "conversation": pk, "client_id": uuid.uuid4().hex},
    "edit": lambda pk: {"type": "edit", "conversation": pk, "client_id": uuid.uuid4().hex, "content": "x"},
    "continue": lambda pk: {"type": "continue", "conversation": pk, "client_id": uuid.uuid4().hex},
    "cancel": lambda pk: {"type": "cancel", "conversation": pk},
    "switch": lambda pk: {"type": "switch", "conversation": pk, "message": 1},
}
TARGET = {"continue": "stopped", "cancel": "running"}


def _strip(frame: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in frame.items() if k not in {"conversation", "ref"}}


@pytest.mark.cluster
@pytest.mark.parametrize("kind", list(FRAMES))
async def test_a_websocket_frame_naming_another_users_conversation_answers_like_a_missing_one(
    kind, world, connect, upstream
):
    target = world[TARGET.get(kind, "done")]
    before = await database_sync_to_async(database_state)()
    async with connect(world["bob"]) as ws:
        await ws.send(FRAMES[kind](target.pk))
        foreign = await ws.receive()
        await ws.send(FRAMES[kind](MISSING))
        missing = await ws.receive()
        await ws.send({"type": "ping"})
        assert (await ws.receive())["type"] == "pong", "no frame of Alice's conversation may follow"
    assert foreign["type"] == "error" and foreign["code"] == "not_found"
    assert _strip(foreign) == _strip(missing)
    assert SECRET_TEXT not in repr(ws.received)
    assert await database_sync_to_async(database_state)() == before
    assert upstream.requests == []


@pytest.mark.cluster
async def test_frames_of_another_users_live_reply_never_reach_a_socket_that_tried_to_follow_it(
    world, connect, upstream
):
    from tests.fake_upstream import Scenario

    upstream.script(Scenario.text(SECRET_TEXT, delay=0.01))
    async with connect(world["alice"]) as alice, connect(world["bob"]) as bob:
        await bob.send({"type": "subscribe", "conversation": world["done"].pk})
        assert (await bob.receive())["code"] == "not_found"
        accepted = await alice.send_message(world["done"].pk, "again", client_id="a-new")
        assert accepted["type"] == "accepted"
        text, _ = await alice.reply_text(accepted["message"]["id"])
        assert text == SECRET_TEXT
        await bob.send({"type": "ping"})
        assert (await bob.receive())["type"] == "pong"
    assert SECRET_TEXT not in repr(bob.received)


async def test_subscribing_to_the_users_own_conversation_with_a_foreign_position_gives_only_its_own_state(
    world, connect
):
    async with connect(world["bob"]) as ws:
        after = {"message": world["active"].pk, "seq": 0}
        await ws.send({"type": "subscribe", "conversation": world["own"].pk, "after": after})
        snapshot = await ws.receive()
    assert snapshot == {"type": "snapshot", "conversation": world["own"].pk, "message": None}


# --- admin for non-staff ----------------------------------------------------------------------------


def _admin_urls(world: dict[str, Any]) -> list[str]:
    conversation, message = world["done"].pk, world["reply"].pk
    return [
        "/admin/",
        "/admin/chat/conversation/",
        f"/admin/chat/conversation/{conversation}/change/",
        f"/admin/chat/conversation/{conversation}/delete/",
        "/admin/chat/conversation/usage/",
        "/admin/chat/message/",
        f"/admin/chat/message/{message}/change/",
        "/admin/chat/transcriptview/",
        f"/admin/chat/conversation/?q={SECRET_TEXT.split()[1]}",
    ]


@pytest.mark.parametrize("index", range(9))
def test_a_non_staff_user_is_sent_to_the_admin_login_from_every_admin_page(world, bob_client, index):
    url = _admin_urls(world)[index]
    response = bob_client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url
    assert SECRET_TEXT.encode() not in response.content


@pytest.mark.parametrize("action", ["export_json", "export_markdown", "delete_selected"])
def test_a_non_staff_user_cannot_export_or_delete_through_admin_actions(world, bob_client, action):
    before = database_state()
    data = {"action": action, "_selected_action": [world["done"].pk], "post": "yes"}
    response = bob_client.post("/admin/chat/conversation/", data)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert SECRET_TEXT.encode() not in response.content
    assert database_state() == before


def test_a_deactivated_staff_member_is_sent_to_the_admin_login(world):
    world["bob"].is_staff = True
    world["bob"].is_active = False
    world["bob"].save()
    client = Client()
    client.force_login(world["bob"])
    response = client.get(f"/admin/chat/conversation/{world['done'].pk}/change/")
    assert response.status_code == 302
